"""``edgeseg eval``: score a model file (any backend) at native resolution, and with
a reference, report parity in task terms."""

from __future__ import annotations

from edgeseg.data import resolve_dataset
from edgeseg.runtime.scoring import evaluate


def evaluate_model(model, dataset=None, data=None, split="val", skip_bad=False, reference=None, batch=1, limit=None,
                   device="auto", providers=None, strict=False, progress=True, scales=None, engine=None, tta=None) -> dict:
    """``engine`` (runtime.EngineOptions) sets the model's backend, threads and precision; the
    reference runs on the backend of its file type, with the same threads."""
    from edgeseg import runtime

    engine = engine or runtime.EngineOptions()
    runner = runtime.load(model, device=device, providers=providers, strict=strict, scales=scales, tta=tta,
                          **engine.kwargs()).activate()  # fail fast on a broken model
    ref_runner = None
    if reference is not None:
        ref_backend = runtime.backend_for(reference)
        # A checkpoint reference runs with the test-time augmentation the exported model has in its graph.
        ref_tta = ((tta if tta not in (None, "none") else None) or runner.meta.extra.get("tta")) if ref_backend == "torch" else None
        ref_runner = runtime.load(reference, device=device, providers=providers if ref_backend == "onnxruntime" else None,
                                  threads=engine.threads, tta=ref_tta).activate()
    # A checkpoint remembers where its data set lives; an ONNX model or engine does not.
    saved_root = runner.meta.extra.get("dataset_root") or (ref_runner.meta.extra.get("dataset_root") if ref_runner else None)
    ds = resolve_dataset(runner.meta.dataset, dataset, data, split, skip_bad, saved_root)
    indices = list(range(min(limit, len(ds)))) if limit else None
    if ref_runner is None:
        with runner:
            summary, cm = evaluate(runner, ds, batch, indices, progress)
        summary["confusion"] = cm.mat.tolist()  # rows: label, columns: prediction
    else:
        from edgeseg.tasks.parity import compare_runners

        report = compare_runners(runner, ref_runner, ds, indices=indices, batch=batch, progress=progress)
        summary = report["model"]
        summary["parity"] = {**report["parity"], "reference_model": str(reference)}
    summary.update(model=str(model), dataset=ds.info.name, split=split, skipped=ds.skipped)
    if getattr(runner, "precision_report", None):
        summary["precision"] = runner.precision_report  # what OpenVINO ran
    return summary


def format_eval(result: dict) -> str:
    """The eval result as printed: a header, per-class IoU (with the reference's and the change
    when parity was checked), the summary line and the parity line."""
    from edgeseg.metrics import format_table

    parity = result.get("parity")
    columns = ["IoU"] + (["ref IoU", "delta"] if parity else [])
    rows = {}
    for name, iou in result["per_class"].items():
        rows[name] = {"IoU": iou}
        if parity:
            rows[name]["delta"] = parity["per_class_delta"].get(name)
            rows[name]["ref IoU"] = parity["reference_per_class"].get(name)
    rows["mIoU"] = {"IoU": result["miou"]}
    if parity:
        rows["mIoU"].update({"ref IoU": parity["reference_miou"], "delta": parity["delta_miou"]})
    backend = result["backend"]
    if result.get("precision"):
        prec = result["precision"]
        backend += f" ({prec['inference_precision']}; convolutions: " + ", ".join(f"{n} {k}" for k, n in prec["convolutions"].items()) + ")"
    lines = [f"{backend} on {result['dataset']}/{result['split']}: {result['n_images']} images, "
             f"model input {result['res'][0]}x{result['res'][1]}, scored at native resolution",
             format_table(rows, columns),
             f"mIoU {result['miou']:.2f}  pixel accuracy {result['pixel_acc']:.2f}"]
    if parity:
        diff = "n/a" if parity["max_abs_logit_diff"] is None else f"{parity['max_abs_logit_diff']:.3g}"
        lines.append(f"parity vs {parity['reference']}: pixel agreement {parity['pixel_agreement']:.4f}%, "
                     f"delta mIoU {parity['delta_miou']:+.3f}, max |logit diff| {diff}")
    return "\n".join(lines)
