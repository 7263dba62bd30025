"""edgeseg: low-resolution soft-label training, export and parity checks for
semantic segmentation on edge devices.

Heavy optional packages (onnxruntime, tensorrt, tensorboard, av) are imported
by the modules that use them, never here.
"""

__version__ = "0.1.0"

from edgeseg.errors import EdgesegError  # noqa: E402

__all__ = ["__version__", "EdgesegError"]
