"""The export job: write model.onnx, then prove on real images that it still segments like
the checkpoint (parity.json beside it); INT8 and TensorRT steps hang off the same path."""

from __future__ import annotations

import logging
from pathlib import Path

from edgeseg.errors import CheckFailed, ConfigError
from edgeseg.export.onnx_export import OnnxOptions, export_onnx
from edgeseg.fileio import replaced_only_if_verified, sha256_file, write_json_atomic
from edgeseg.tasks.parity import (
    DEFAULT_MAX_DELTA_MIOU,
    DEFAULT_MIN_AGREEMENT,
    compare_runners,
    parity_failures,
)

logger = logging.getLogger(__name__)


def verify_parity(model_path: Path, checkpoint: Path, meta, dataset=None, data=None, split="val", n_images=32,
                  min_agreement=DEFAULT_MIN_AGREEMENT, max_delta_miou=DEFAULT_MAX_DELTA_MIOU,
                  device: str = "cpu", progress: bool = True, report_path: Path | None = None, scales=None, engine=None,
                  tta: str | None = None, one_sided: bool = False) -> dict:
    """Run the exported model and the checkpoint on ``n_images`` real images; write the report.

    ``engine`` (runtime.EngineOptions): how the exported model runs (e.g. OpenVINO at f32).
    ``one_sided``: ``max_delta_miou`` bounds the mIoU *lost* (a budget for INT8 and reduced precision)."""
    from edgeseg import runtime
    from edgeseg.data import resolve_dataset
    from edgeseg.runtime.torch_runner import TorchRunner

    ref = TorchRunner.from_checkpoint(checkpoint, device="cpu" if device == "auto" else device, scales=scales, tta=tta)
    ds = resolve_dataset(meta.dataset, dataset, data, split, False, ref.meta.extra.get("dataset_root"))
    indices = list(range(min(n_images, len(ds))))
    runner = runtime.load(model_path, device=device, **(engine.kwargs() if engine else {}))
    report = compare_runners(runner, ref, ds, indices=indices, progress=progress)
    parity = report["parity"]
    if getattr(runner, "precision_report", None):
        parity["precision"] = runner.precision_report  # what OpenVINO ran
    parity.update(model=str(model_path), backend=runner.backend, dataset=ds.info.name, split=split, images=[ds.sample_name(i) for i in indices],
                  thresholds={"min_pixel_agreement": min_agreement, ("max_loss_miou" if one_sided else "max_abs_delta_miou"): max_delta_miou})
    parity["failures"] = parity_failures(parity, min_agreement, max_delta_miou, one_sided)
    parity["passed"] = not parity["failures"]
    if report_path is not None:
        write_json_atomic(report_path, parity)
    return parity


def _drop_stale_irs(out_dir: Path) -> None:
    """An IR converted from an ONNX model that has since changed (or gone) no longer matches it."""
    from edgeseg.optional import available

    if not available("openvino"):
        return
    from edgeseg.export.openvino_ir import stale_irs

    for xml in stale_irs(out_dir):
        for f in (xml, xml.with_suffix(".bin")):
            f.unlink(missing_ok=True)
        logger.info(f"removed {xml.name} and its .bin: converted from an earlier {xml.stem}.onnx (export with --openvino for a new one)")


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path | None = None,
    options: OnnxOptions = OnnxOptions(),
    verify: bool = True,
    dataset: str | None = None,
    data: str | None = None,
    split: str = "val",
    n_verify: int = 32,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_delta_miou: float = DEFAULT_MAX_DELTA_MIOU,
    device: str = "cpu",
    int8=None,
    trt=None,
    progress: bool = True,
    openvino: bool = False,
) -> dict:
    """FP32 ONNX (always), INT8 Q/DQ (``int8``: Int8Options), a TensorRT engine (``trt``: TrtOptions)
    and OpenVINO IR of each ONNX model (``openvino``), each followed by a parity check on real
    images unless ``verify`` is off."""
    checkpoint = Path(checkpoint)
    if checkpoint.suffix.lower() in (".onnx", ".engine", ".plan", ".trt", ".xml"):
        raise ConfigError(f"--model {checkpoint}: export starts from a training checkpoint (best.pt or last.pt), not from an "
                          f"exported model; give the checkpoint {checkpoint.name} was exported from")
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent
    if openvino:
        from edgeseg.optional import require

        require("openvino", "--openvino")
    if int8 is not None:
        int8.check()
        if not int8.calib_array:  # fail before writing anything when there is nothing to calibrate on
            from edgeseg.export.int8 import calibration_dataset
            from edgeseg.models import load_checkpoint
            from edgeseg.runtime.meta import meta_from_checkpoint

            ckpt = load_checkpoint(checkpoint)
            calibration_dataset(meta_from_checkpoint(ckpt), int8, dataset, data, ckpt.card.dataset_root)
    if trt is not None:
        trt.check()
        if trt.precision == "int8" and int8 is None:
            raise ConfigError("--trt --int8 needs the INT8 step: give --int8 with calibration data (--dataset/--data)")
        if trt.precision == "int8" and int8.target != "tensorrt":
            raise ConfigError(f"--trt --int8 builds from the TensorRT placement; drop --int8-target {int8.target} "
                              "(the CPU placement is for ONNX Runtime and OpenVINO)")
    try:
        previous_onnx = sha256_file(out_dir / "model.onnx") if (out_dir / "model.onnx").is_file() else None
        with replaced_only_if_verified(out_dir / "model.onnx"), replaced_only_if_verified(out_dir / "parity.json"):
            onnx_path, meta = export_onnx(checkpoint, out_dir / "model.onnx", options)
            native = f", network {meta.res[0]}x{meta.res[1]} inside the graph" if meta.native_res else ""
            logger.info(f"wrote {onnx_path} (opset {options.opset}, input {meta.input_res[0]}x{meta.input_res[1]} {meta.input_layout}{native}, "
                        f"outputs {', '.join(meta.outputs)})")
            result = {"onnx": str(onnx_path), "meta": {"res": list(meta.res), "outputs": list(meta.outputs), "input_layout": meta.input_layout}}
            saved_root = _saved_root(checkpoint)
            check = dict(dataset=dataset, data=data, split=split, n_images=n_verify, device=device, progress=progress, scales=options.scales,
                         tta=options.tta)
            if verify:
                parity = verify_parity(onnx_path, checkpoint, meta, min_agreement=min_agreement, max_delta_miou=max_delta_miou,
                                       report_path=out_dir / "parity.json", **check)
                result["parity"] = parity
                logger.info(_parity_line("onnxruntime FP32", parity) + f"; wrote {out_dir / 'parity.json'}")
                if not parity["passed"]:
                    raise CheckFailed(f"{onnx_path} fails parity with {checkpoint.name}: {'; '.join(parity['failures'])} "
                                      f"(the new one is {onnx_path.stem}.rejected.onnx, its report parity.rejected.json; any previous {onnx_path.name} is kept)")
        # Artefacts derived from model.onnx (INT8, engine) are restored after a failed check only if
        # model.onnx is the one they were derived from; otherwise the stale ones are dropped.
        same_onnx = previous_onnx == sha256_file(onnx_path)
        if int8 is not None:
            from edgeseg.export.int8 import export_int8

            with replaced_only_if_verified(out_dir / "model.int8.onnx", same_onnx), \
                    replaced_only_if_verified(out_dir / "parity.int8.json", same_onnx):
                report = export_int8(onnx_path, meta, out_dir, int8, dataset, data, split, saved_root, progress)
                result["int8"] = report
                if verify:
                    # One verdict: the gate scores the very images the budget search scored (the first
                    # --sensitivity-images of the split), so the two cannot contradict each other.
                    parity = verify_parity(out_dir / "model.int8.onnx", checkpoint, meta, min_agreement=0.0, max_delta_miou=int8.budget, one_sided=True,
                                           report_path=out_dir / "parity.int8.json", **{**check, "n_images": int8.sensitivity_images})
                    result["int8_parity"] = parity
                    logger.info(_parity_line("onnxruntime INT8 Q/DQ", parity) + f"; wrote {out_dir / 'parity.int8.json'}")
                    interval = parity.get("delta_miou_interval")
                    if parity["passed"] and interval and interval[0] < -int8.budget:
                        logger.warning(f"INT8 is within --int8-budget {int8.budget} on these {parity['n_images']} images, but the 95% "
                                       f"interval of its mIoU change is {interval[0]:+.2f}..{interval[1]:+.2f}: score more images "
                                       "(--sensitivity-images) for a firmer verdict")
                    if not parity["passed"]:
                        raise CheckFailed(f"{out_dir / 'model.int8.onnx'} loses more than --int8-budget {int8.budget} mIoU: "
                                          f"{'; '.join(parity['failures'])} (see int8_report.json; the previous model.int8.onnx is kept)")
        if openvino:
            _write_and_check_irs(result, onnx_path, out_dir, int8, checkpoint, verify, same_onnx, min_agreement, max_delta_miou, check, meta)
        if trt is not None:
            with replaced_only_if_verified(out_dir / "model.engine", same_onnx), replaced_only_if_verified(out_dir / "model.engine.json", same_onnx), \
                    replaced_only_if_verified(out_dir / "parity.engine.json", same_onnx):
                _build_and_check_engine(result, onnx_path, out_dir, trt, int8, meta, checkpoint, verify, max_delta_miou, min_agreement, check)
        return result
    finally:
        _drop_stale_irs(out_dir)


def _write_and_check_irs(result, onnx_path, out_dir, int8, checkpoint, verify, same_onnx, min_agreement, max_delta_miou, check, meta):
    """model.xml/.bin from model.onnx and, with INT8, model.int8.xml/.bin, each checked against the checkpoint.

    The FP32 IR is held to the FP32 thresholds at f32; where OpenVINO's default precision differs
    here (bf16 on CPUs with AVX-512 BF16 or AMX), it is scored at that too and a loss over 0.5 mIoU is reported
    (the file is right; the precision is the user's choice). The INT8 IR runs at the default
    precision, as deployed, against --int8-budget."""
    from edgeseg.export.openvino_ir import write_ir
    from edgeseg.runtime import EngineOptions

    check = {**check, "device": "cpu"}  # OpenVINO runs on the CPU whatever --device the ONNX checks used
    todo = [("model", onnx_path, "f32", min_agreement, max_delta_miou, False, "openvino FP32 IR (f32)")]
    if int8 is not None:
        todo.append(("model.int8", out_dir / "model.int8.onnx", "auto", 0.0, int8.budget, True, "openvino INT8 IR"))
    for stem, source, precision, agreement, budget, one_sided, what in todo:
        xml, report = out_dir / f"{stem}.xml", out_dir / f"parity.{stem.replace('model', 'openvino')}.json"
        with replaced_only_if_verified(xml, same_onnx), replaced_only_if_verified(xml.with_suffix(".bin"), same_onnx), \
                replaced_only_if_verified(report, same_onnx):
            write_ir(source, xml)
            result.setdefault("openvino", []).append(str(xml))
            logger.info(f"wrote {xml} and {xml.with_suffix('.bin').name} (OpenVINO IR of {source.name})")
            if not verify:
                continue
            n = int8.sensitivity_images if stem == "model.int8" else check["n_images"]
            parity = verify_parity(xml, checkpoint, meta, min_agreement=agreement, max_delta_miou=budget, report_path=report,
                                   engine=EngineOptions(precision=precision), one_sided=one_sided, **{**check, "n_images": n})
            result[f"{stem.replace('model', 'openvino')}_parity"] = parity
            ran = parity.get("precision", {}).get("inference_precision", "?")
            logger.info(_parity_line(f"{what}, ran {ran}", parity) + f"; wrote {report}")
            if not parity["passed"]:
                raise CheckFailed(f"{xml} fails parity with {checkpoint.name}: {'; '.join(parity['failures'])} "
                                  f"(the new one is {stem}.rejected.xml; any previous {xml.name} is kept)")
        if verify and stem == "model":
            _check_default_precision(result, xml, checkpoint, meta, out_dir, check)


def _check_default_precision(result, xml, checkpoint, meta, out_dir, check, budget: float = 0.5):
    """Score the FP32 IR at OpenVINO's default precision when that is not f32 on this machine."""
    from edgeseg.runtime.ov_runner import default_precision

    default = default_precision()
    if default == "f32":
        return
    report = out_dir / "parity.openvino.default.json"
    parity = verify_parity(xml, checkpoint, meta, min_agreement=0.0, max_delta_miou=budget, report_path=report, one_sided=True, **check)
    result["openvino.default_parity"] = parity
    logger.info(_parity_line(f"openvino FP32 IR at its default precision ({default})", parity) + f"; wrote {report}")
    if not parity["passed"]:
        logger.warning(f"{xml.name} at OpenVINO's default precision ({default}) loses more than {budget} mIoU here; "
                       "run it with --ov-precision f32")


def _build_and_check_engine(result, onnx_path, out_dir, trt, int8, meta, checkpoint, verify, max_delta_miou, min_agreement, check):
    """Build model.engine and prove it against the checkpoint (the caller keeps the previous engine on failure)."""
    from edgeseg.export.trt_build import build_engine

    engine = build_engine(onnx_path, out_dir / "model.engine", trt, qdq_path=out_dir / "model.int8.onnx" if int8 else None,
                          calib_cache=out_dir / "calibration.cache" if int8 else None, meta=meta,
                          calibration_sha256=result.get("int8", {}).get("calibration_sha256"))
    result["engine"] = str(engine["engine"])
    if verify:
        budget = int8.budget if trt.precision == "int8" else (0.5 if trt.precision == "fp16" else max_delta_miou)
        parity = verify_parity(engine["engine"], checkpoint, meta, min_agreement=0.0 if trt.precision != "fp32" else min_agreement,
                               max_delta_miou=budget, report_path=out_dir / "parity.engine.json", one_sided=trt.precision != "fp32",
                               **{**check, "device": "auto"})
        result["engine_parity"] = parity
        logger.info(_parity_line(f"TensorRT {trt.precision}", parity) + f"; wrote {out_dir / 'parity.engine.json'}")
        if not parity["passed"]:
            raise CheckFailed(f"{engine['engine']} fails parity with {checkpoint.name}: {'; '.join(parity['failures'])}")
    return result


def _saved_root(checkpoint: Path):
    from edgeseg.models import load_checkpoint

    return load_checkpoint(checkpoint).card.dataset_root


def _parity_line(what: str, p: dict) -> str:
    diff = "" if p["max_abs_logit_diff"] is None else f", max |logit diff| {p['max_abs_logit_diff']:.3g}"
    ci = p.get("delta_miou_interval")
    diff = (f", 95% interval {ci[0]:+.2f}..{ci[1]:+.2f}" if ci else "") + diff
    return (f"{what} vs checkpoint on {p['n_images']} {p['dataset']}/{p['split']} images: pixel agreement {p['pixel_agreement']:.4f}%, "
            f"mIoU {p['model_miou']:.2f} vs {p['reference_miou']:.2f} (delta {p['delta_miou']:+.3f}){diff}")
