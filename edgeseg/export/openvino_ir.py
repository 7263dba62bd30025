"""OpenVINO IR (``.xml`` + ``.bin``) from an exported ONNX model, carrying edgeseg's metadata.

The ONNX model's ``edgeseg.*`` metadata goes into the IR's rt_info, with the SHA-256 of the
weights file, so a runner can refuse a ``.bin`` that is not the one written with its ``.xml``.
A Q/DQ model converts to FakeQuantize operations, which OpenVINO's CPU plugin runs as INT8.
Both files are written beside their final names and moved into place, weights first: a crash
in between leaves a pair whose hashes disagree, which the runner reports, not a silent mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.fileio import sha256_file
from edgeseg.optional import require
from edgeseg.runtime.ov_runner import RT_BIN_SHA, RT_META

# The SHA-256 of the ONNX model an IR was converted from: an IR whose source has since changed is stale.
RT_SOURCE = ["edgeseg", "source_onnx_sha256"]



def write_ir(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert ``onnx_path`` to ``xml_path`` (and its ``.bin``); returns the .xml path."""
    ov = require("openvino", "OpenVINO IR export")
    import onnx

    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props if p.key.startswith("edgeseg.")}
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # the converter raises its own exception types
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ModelFileError(f"{onnx_path}: OpenVINO cannot convert the model ({lines[-1][:200]})") from None
    model.set_rt_info(json.dumps(props, sort_keys=True), RT_META)
    model.set_rt_info(sha256_file(onnx_path), RT_SOURCE)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.stem}.") as tmp:
        tmp_xml = Path(tmp) / "model.xml"
        # Weights are written as they are (no FP16 compression): the FP32 IR must match the ONNX model.
        _save(ov, model, tmp_xml)
        model.set_rt_info(sha256_file(tmp_xml.with_suffix(".bin")), RT_BIN_SHA)
        _save(ov, model, tmp_xml)  # same weights, now with their hash in the .xml
        if sha256_file(tmp_xml.with_suffix(".bin")) != model.get_rt_info(RT_BIN_SHA).astype(str):
            raise ModelFileError(f"{xml_path}: OpenVINO wrote different weights on a second save; cannot record their hash")
        for f in (tmp_xml.with_suffix(".bin"), tmp_xml):  # files made by open(): mode 0666 less the umask
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(f, xml_path.with_suffix(f.suffix))
    return xml_path


def _save(ov, model, xml: Path) -> None:
    try:
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except RuntimeError as exc:  # a full disk or an unwritable folder reaches us as OpenVINO's RuntimeError
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
        raise OSError(f"cannot write the OpenVINO IR ({lines[-1][:200]})") from None


def stale_irs(out_dir: Path) -> list[Path]:
    """The IRs in ``out_dir`` (model.xml, model.int8.xml) whose source ONNX model is gone or has changed."""
    stale = []
    for xml in (out_dir / "model.xml", out_dir / "model.int8.xml"):
        if not xml.is_file():
            continue
        source = xml.with_suffix(".onnx")
        recorded = _source_sha(xml)
        if not source.is_file() or recorded != sha256_file(source):
            stale.append(xml)
    return stale


def _source_sha(xml: Path) -> str | None:
    """The source hash recorded in an IR's .xml, read as text (no weights needed)."""
    import re

    match = re.search(r'<source_onnx_sha256 value="([0-9a-f]{64})"', xml.read_text(errors="replace"))
    return match.group(1) if match else None
