"""The one bound on every size that reaches an allocation: frames (images, video frames,
labels), ``--res``, ``--output-size``, a model file's recorded resolutions.

A size is accepted when both sides are whole numbers from 1 to ``MAX_SIDE`` and it has at most
``MAX_PIXELS`` pixels; anything else is refused in one line, before memory is asked for.
"""

from __future__ import annotations

from edgeseg.errors import ConfigError

MAX_SIDE = 16384
MAX_PIXELS = 100_000_000  # 100 MP: also the decompression-bomb bound on image headers


def size_problem(width, height) -> str | None:
    """Why ``width x height`` is refused, or None when it is accepted."""
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError, OverflowError):
        return f"{width}x{height} is not a size in whole pixels"
    if w != width or h != height:
        return f"{width}x{height} is not a size in whole pixels"
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        return f"{w}x{h}: width and height must be within 1..{MAX_SIDE}"
    if w * h > MAX_PIXELS:
        return f"{w}x{h} is {w * h / 1e6:.0f} MP, above the {MAX_PIXELS // 1_000_000} MP limit"
    return None


def check_size(width, height, where: str, error=ConfigError) -> tuple[int, int]:
    """``(width, height)`` when accepted; else ``error`` naming ``where`` (an option or a file)."""
    problem = size_problem(width, height)
    if problem is not None:
        raise error(f"{where}: {problem}")
    return int(width), int(height)
