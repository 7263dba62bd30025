"""``edgeseg eval``: score a model file (any backend) at native resolution, and with
a reference, report parity in task terms."""

from __future__ import annotations

from edgeseg.data import DataSource
from edgeseg.data.base import check_labelled
from edgeseg.errors import ConfigError, DataError
from edgeseg.metrics import BOUNDARY_RATIO
from edgeseg.runtime.scoring import evaluate
from edgeseg.runtime.spec import RunnerSpec


def reference_spec(spec: RunnerSpec, reference, model_meta) -> RunnerSpec:
    """How a reference runs beside a model run with ``spec``: on the backend of its file type, with
    the same device and threads; a checkpoint reference with the test-time augmentation and the
    multi-scale inference scales that the exported model has in its graph."""
    from edgeseg import runtime

    backend = runtime.backend_for(reference)
    torch_ref = backend.name == "torch"
    tta = (spec.tta if spec.tta != "none" else model_meta.extra.get("tta", "none")) if torch_ref else "none"
    scales = model_meta.extra.get("scales") if torch_ref else None  # an exported multi-scale graph's fixed scales
    threads = spec.threads if "threads" in backend.options else None  # the model's --threads, where the reference's backend takes it
    return RunnerSpec(device=spec.device, providers=spec.providers if backend.name == "onnxruntime" else None, threads=threads,
                      tta=tta or "none", scales=tuple(scales) if scales else None)


def evaluate_model(model, spec: RunnerSpec = RunnerSpec(), source: DataSource = DataSource(), reference=None, batch: int = 1,
                   limit: int | None = None, progress: bool = True, boundary: float | None = BOUNDARY_RATIO) -> dict:
    """Score ``model`` (run as ``spec`` says) on ``source`` at native resolution: mIoU, per-class IoU
    and, with ``boundary`` (the band's width as a share of the image diagonal; None: not computed),
    boundary IoU; with ``reference``, also parity in task terms."""
    from edgeseg import runtime

    if reference is not None and boundary not in (None, BOUNDARY_RATIO):
        raise ConfigError("--boundary-band: parity with --reference scores mIoU, not boundaries; leave one of them out")
    runner = runtime.load(model, spec).activate()  # fail fast on a broken model
    ref_runner = None
    if reference is not None:
        ref_runner = runtime.load(reference, reference_spec(spec, reference, runner.meta)).activate()
    # A checkpoint remembers where its data set lives; an ONNX model or engine does not.
    saved_root = runner.meta.dataset_root or (ref_runner.meta.dataset_root if ref_runner else None)
    ds = source.open(runner.meta.dataset, saved_root)
    indices = list(range(min(limit, len(ds)))) if limit else None
    check_labelled(ds.subset(indices) if indices is not None else ds, "--split")
    if spec.strict:
        check_aspect(ds, indices, tuple(runner.meta.input_res))
    if ref_runner is None:
        with runner:
            summary, cm = evaluate(runner, ds, batch, indices, progress, boundary=boundary)
        summary["confusion"] = cm.mat.tolist()  # rows: label, columns: prediction
    else:
        from edgeseg.tasks.parity import compare_runners

        report = compare_runners(runner, ref_runner, ds, indices=indices, batch=batch, progress=progress)
        summary = report["model"]
        summary["parity"] = {**report["parity"], "reference_model": str(reference)}
    summary.update(model=str(model), dataset=ds.info.name, data=ds.root, split=source.split, skipped=ds.skipped, ran=runner.describe())
    return summary


def check_aspect(ds, indices, res: tuple[int, int]) -> None:
    """--strict: every scored image has the model input's aspect ratio (within 1 %, as predict checks)."""
    from edgeseg.runtime.processing import aspect_differs
    from edgeseg.data.base import frame_sizes

    sub = ds.subset(indices) if indices is not None else ds
    for w, h in sorted(frame_sizes(sub)):
        if aspect_differs((w, h), res):
            raise DataError(f"{ds.info.name}: {w}x{h} images have another aspect ratio than the model "
                            f"input {res[0]}x{res[1]} (--strict)")


def format_eval(result: dict) -> str:
    """The eval result as printed: a header, per-class IoU (with the reference's and the change
    when parity was checked), the summary line and the parity line."""
    from edgeseg.metrics import format_table

    parity = result.get("parity")
    boundary = result.get("boundary_iou")
    columns = ["IoU"] + (["boundary IoU"] if boundary else []) + (["ref IoU", "delta"] if parity else [])
    rows = {}
    for name, iou in result["per_class"].items():
        rows[name] = {"IoU": iou}
        if boundary:
            rows[name]["boundary IoU"] = boundary["per_class"].get(name)
        if parity:
            rows[name]["delta"] = parity["per_class_delta"].get(name)
            rows[name]["ref IoU"] = parity["reference_per_class"].get(name)
    rows["mIoU"] = {"IoU": result["miou"], **({"boundary IoU": boundary["mean"]} if boundary else {})}
    if parity:
        rows["mIoU"].update({"ref IoU": parity["reference_miou"], "delta": parity["delta_miou"]})
    backend = result["backend"]
    prec = (result.get("ran") or {}).get("precision_report")
    if prec:
        backend += f" ({prec['inference_precision']}; convolutions: " + ", ".join(f"{n} {k}" for k, n in prec["convolutions"].items()) + ")"
    where = f" ({result['data']})" if result.get("data") else ""
    lines = [f"{backend} on {result['dataset']}/{result['split']}{where}: {result['n_images']} images, "
             f"model input {result['res'][0]}x{result['res'][1]}, scored at native resolution",
             format_table(rows, columns),
             f"mIoU {result['miou']:.2f}  pixel accuracy {result['pixel_acc']:.2f}"
             + (f"  boundary IoU {boundary['mean']:.2f} (band {boundary['band_ratio']:g} of the image diagonal)" if boundary and boundary["mean"] is not None else "")]
    if parity:
        diff = "n/a" if parity["max_abs_logit_diff"] is None else f"{parity['max_abs_logit_diff']:.3g}"
        lines.append(f"parity vs {parity['reference']}: pixel agreement {parity['pixel_agreement']:.4f}%, "
                     f"delta mIoU {parity['delta_miou']:+.3f}, max |logit diff| {diff}")
    return "\n".join(lines)
