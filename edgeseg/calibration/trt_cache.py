"""TensorRT implicit-INT8 calibration caches (TensorRT 8.5-10.x) from edgeseg's activation ranges.

Format (one header, then one line per tensor)::

    TRT-8501-EntropyCalibration2
    input: 3c010204
    relu6_3: 3d2a1f0e

The value is the per-tensor scale ``amax / 127`` as the hexadecimal bit pattern of
an IEEE-754 float32, most significant byte first, without padding. The header
number is the TensorRT version (8501 for 8.5.1, 100300 for 10.3.0).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from edgeseg.errors import ModelFileError
from edgeseg.fileio import atomic_path, write_bytes_atomic

ALGORITHM = "EntropyCalibration2"  # read back through IInt8EntropyCalibrator2


def scale_to_hex(scale: float) -> str:
    return format(struct.unpack(">I", struct.pack(">f", float(scale)))[0], "x")


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text.strip().zfill(8)))[0]


def cache_text(ranges: dict, version_tag: int) -> str:
    lines = [f"TRT-{version_tag}-{ALGORITHM}"]
    for name in sorted(ranges):
        lo, hi = ranges[name]
        amax = max(abs(float(lo)), abs(float(hi)))
        lines.append(f"{name}: {scale_to_hex(amax / 127.0)}")
    return "\n".join(lines) + "\n"


def write_trt_cache(ranges: dict, path: Path, version_tag: int) -> Path:
    write_bytes_atomic(path, cache_text(ranges, version_tag).encode())
    return path


def read_trt_cache(path: Path) -> tuple[str, dict[str, float]]:
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read calibration cache ({exc})") from None
    if not lines or not lines[0].startswith("TRT-"):
        raise ModelFileError(f"{path}: not a TensorRT calibration cache (expected a 'TRT-<version>-<algorithm>' header)")
    scales = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        try:
            scales[name.strip()] = hex_to_scale(value)
        except ValueError:
            raise ModelFileError(f"{path}:{n}: expected '<tensor>: <hex scale>', got '{line}'") from None
        if not sep:
            raise ModelFileError(f"{path}:{n}: expected '<tensor>: <hex scale>', got '{line}'")
    return lines[0], scales


def with_header(cache: bytes, version_tag: int) -> bytes:
    """The same scales under this TensorRT's version header (TensorRT skips caches it finds incompatible)."""
    text = cache.decode()
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return f"TRT-{version_tag}-{ALGORITHM}\n{body}".encode()


def make_calibrator(api, cache_path: Path, inputs: np.ndarray | None = None, device: str = "cuda"):
    """An IInt8EntropyCalibrator2 that hands TensorRT the cache at ``cache_path`` (no data needed),
    or, given ``inputs``, calibrates on the device and writes the cache there."""
    base = api.calibrator_base()
    version_tag = api.version_tag

    class EdgesegCalibrator(base):
        def __init__(self):
            base.__init__(self)  # TensorRT requires the base initialiser
            self.cache_path = Path(cache_path)
            self.inputs = inputs
            self.index = 0
            self._alive = None  # keeps the current device buffer alive until the next call
            self.batches_served = 0

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            if self.inputs is None or self.index >= len(self.inputs):
                return None
            import torch

            # implicit calibration reads float32 batches whatever the network input's type (a uint8 model's too)
            x = torch.from_numpy(np.ascontiguousarray(self.inputs[self.index : self.index + 1])).to(device=device, dtype=torch.float32)
            self._alive = x
            self.index += 1
            self.batches_served += 1
            return [int(x.data_ptr())]

        def read_calibration_cache(self):
            if self.inputs is not None or not self.cache_path.is_file():
                return None
            return with_header(self.cache_path.read_bytes(), version_tag)

        def write_calibration_cache(self, cache):
            data = bytes(cache)
            with atomic_path(self.cache_path) as tmp:
                tmp.write_bytes(data)

    return EdgesegCalibrator()
