"""The export job: write model.onnx, then prove on real images that it still segments like
the checkpoint (parity.json beside it); INT8 and TensorRT steps hang off the same path."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgeseg.errors import CheckFailed
from edgeseg.export.onnx_export import OnnxOptions, export_onnx
from edgeseg.fileio import write_json_atomic
from edgeseg.runtime.compare import DEFAULT_MAX_DELTA_MIOU, DEFAULT_MIN_AGREEMENT, compare_runners, parity_failures


def verify_parity(model_path: Path, checkpoint: Path, meta, dataset, data, split, n_images, min_agreement, max_delta_miou,
                  device: str = "cpu", progress: bool = True, report_path: Path | None = None) -> dict:
    """Run the exported model and the checkpoint on ``n_images`` real images; write the report."""
    from edgeseg import runtime
    from edgeseg.evaluation import resolve_dataset
    from edgeseg.runtime.torch_runner import TorchRunner

    ref = TorchRunner.from_checkpoint(checkpoint, device="cpu" if device == "auto" else device)
    ds = resolve_dataset(meta, dataset, data, split, False, ref.meta.extra.get("dataset_root"))
    indices = list(range(min(n_images, len(ds))))
    runner = runtime.load(model_path, device=device)
    report = compare_runners(runner, ref, ds, indices=indices, progress=progress)
    parity = report["parity"]
    parity.update(model=str(model_path), dataset=ds.info.name, split=split,
                  thresholds={"min_pixel_agreement": min_agreement, "max_abs_delta_miou": max_delta_miou})
    parity["failures"] = parity_failures(parity, min_agreement, max_delta_miou)
    parity["passed"] = not parity["failures"]
    if report_path is not None:
        write_json_atomic(report_path, parity)
    return parity


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
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent
    onnx_path, meta = export_onnx(checkpoint, out_dir / "model.onnx", options)
    log(f"wrote {onnx_path} (opset {options.opset}, input {meta.res[0]}x{meta.res[1]} {meta.input_layout}, outputs {', '.join(meta.outputs)})")
    result = {"onnx": str(onnx_path), "meta": {"res": list(meta.res), "outputs": list(meta.outputs), "input_layout": meta.input_layout}}
    if verify:
        parity = verify_parity(onnx_path, checkpoint, meta, dataset, data, split, n_verify, min_agreement, max_delta_miou,
                               device, progress, out_dir / "parity.json")
        result["parity"] = parity
        log(_parity_line("onnxruntime FP32", parity) + f"; wrote {out_dir / 'parity.json'}")
        if not parity["passed"]:
            raise CheckFailed(f"{onnx_path} fails parity with {checkpoint.name}: {'; '.join(parity['failures'])} (kept the file for inspection)")
    return result


def _parity_line(what: str, p: dict) -> str:
    diff = "" if p["max_abs_logit_diff"] is None else f", max |logit diff| {p['max_abs_logit_diff']:.3g}"
    return (f"{what} vs checkpoint on {p['n_images']} {p['dataset']}/{p['split']} images: pixel agreement {p['pixel_agreement']:.4f}%, "
            f"mIoU {p['model_miou']:.2f} vs {p['reference_miou']:.2f} (delta {p['delta_miou']:+.3f}){diff}")
