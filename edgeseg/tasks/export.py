"""The export job: for each format a request asks for (edgeseg.export.formats, in table order),
build it aside, prove on real images that it still segments like the checkpoint, then put it in
place. A file under its final name is always one that passed its check: a failed check leaves
the previous file where it was (the rejected one beside it as ``<stem>.rejected<suffix>``), and
a kill at any instant leaves only a staging folder behind, which the next export in that folder
removes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from edgeseg.data import DataSource
from edgeseg.errors import CheckFailed, ConfigError
from edgeseg.export.formats import FORMATS, Build, Format, Gate, Request
from edgeseg.fileio import FolderLock, check_replaceable, move_in, parse_json, replace_problem, report_json, sha256_file, write_json_atomic
from edgeseg.models.meta import PROPS_KEY
from edgeseg.runtime.registry import EXPORTED_SUFFIXES
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.tasks.parity import compare_runners, parity_failures

logger = logging.getLogger(__name__)

STAGE_PREFIX = ".edgeseg-stage-"


def verify_parity(model_path: Path, checkpoint: Path, meta, gate: Gate, source: DataSource = DataSource(), ref_device: str = "cpu",
                  report_path: Path | None = None, final_path: Path | None = None, scales=None, tta: str = "none",
                  progress: bool = True) -> dict:
    """Run ``model_path`` (as ``gate.spec`` says) and the checkpoint on ``gate.images`` real images of
    ``source``; the parity report, judged against the gate's thresholds, written to ``report_path``."""
    from edgeseg import runtime

    ref = runtime.load(checkpoint, RunnerSpec(device=ref_device, scales=scales, tta=tta))
    ds = source.open(meta.dataset, ref.meta.dataset_root)
    indices = list(range(min(gate.images, len(ds))))
    runner = runtime.load(model_path, gate.spec)
    parity = compare_runners(runner, ref, ds, indices=indices, progress=progress)["parity"]
    parity.update(model=str(final_path or model_path), backend=runner.backend, ran=runner.describe(), dataset=ds.info.name,
                  split=source.split, images=[ds.sample_name(i) for i in indices],
                  thresholds={"min_pixel_agreement": gate.min_agreement,
                              ("max_loss_miou" if gate.one_sided else "max_abs_delta_miou"): gate.max_delta_miou})
    parity["failures"] = parity_failures(parity, gate.min_agreement, gate.max_delta_miou, gate.one_sided)
    parity["passed"] = not parity["failures"]
    if report_path is not None:
        write_json_atomic(report_path, parity)
    return parity


def export_model(request: Request, source: DataSource = DataSource(), progress: bool = True) -> dict:
    """Write and check every format ``request`` asks for; returns each format's files, details and
    parity reports. Raises CheckFailed (exit 1) at the first format that misses its thresholds."""
    if request.checkpoint.suffix.lower() in EXPORTED_SUFFIXES:
        raise ConfigError(f"--model {request.checkpoint}: export starts from a training checkpoint (best.pt or last.pt), not from an "
                          f"exported model; give the checkpoint {request.checkpoint.name} was exported from")
    _preflight(request, source)
    out = request.out_dir
    with FolderLock(out, "export folder"):
        # a link, pipe or device under a name export writes is never replaced, --exist-ok or not
        check_replaceable(out / name for name in _export_names() | {_rejected_name(n) for n in _export_names()})
        if not request.job.exist_ok:
            _refuse_foreign_files(out)
        _clean_up_earlier_runs(out)
        build = Build(request, stage=out, meta=None, data=source, progress=progress)
        result = {"out": str(out), "formats": {}}
        for fmt in FORMATS.values():
            if not fmt.requested(request):
                continue
            result["formats"][fmt.name] = _one_format(fmt, build)
            if fmt.name == "onnx" and "onnx" in build.replaced:
                _drop_derived(out)  # built from the model.onnx just replaced
    return result


def _preflight(request: Request, source: DataSource) -> None:
    """What can be refused before anything is written: a missing package, no calibration images."""
    from edgeseg.models import load_checkpoint

    ckpt = load_checkpoint(request.checkpoint)
    if request.job.verify:  # the checks run the checkpoint there: a device this machine lacks is refused before the build
        from edgeseg.runtime.torch_runner import resolve_device

        resolve_device(request.job.device)
    for fmt in FORMATS.values():
        if fmt.preflight is not None and fmt.requested(request):
            fmt.preflight(request)
    ckpt.check_weights(str(request.checkpoint))
    if request.int8 is not None:
        from edgeseg.export.int8 import calibration_dataset

        if request.int8.calib_array:
            from edgeseg.calibration.dataset import calibration_set_from_array

            calibration_set_from_array(Path(request.int8.calib_array), ckpt.meta)
        else:
            calibration_dataset(ckpt.meta, request.int8, source, ckpt.meta.dataset_root)
    if request.job.verify or request.int8 is not None:  # parity and INT8 sensitivity score labelled images with the model's classes
        from edgeseg.runtime.scoring import check_classes

        check_classes(ckpt.meta, source.open(ckpt.meta.dataset, ckpt.meta.dataset_root))


def _one_format(fmt: Format, b: Build) -> dict:
    r = b.request
    out = r.out_dir
    stage = Path(tempfile.mkdtemp(dir=out, prefix=STAGE_PREFIX))
    b.stage = stage
    try:
        entry = {"files": [str(out / f) for f in fmt.files], "details": fmt.build(b), "parity": {}}
        before = sha256_file(out / fmt.model_file) if (out / fmt.model_file).is_file() else None
        changed = before != sha256_file(stage / fmt.model_file)  # (each hashed once: the checks below and export_model use it)
        if fmt.source is None and before is not None and changed:
            _refuse_to_strand(out, fmt, r)
        if r.job.verify:
            for gate in fmt.gates(r):
                parity = verify_parity(stage / fmt.model_file, r.checkpoint, b.meta, gate, b.data, r.job.device, None,
                                       out / fmt.model_file, r.onnx.scales, r.onnx.tta, b.progress)
                write_json_atomic(stage / gate.report, report_json(parity, "edgeseg export"))
                entry["parity"][gate.report] = parity
                where = out / (gate.report if parity["passed"] or gate.advisory else _rejected_name(gate.report))
                logger.info(parity_line(gate.what, parity) + f"; wrote {where}")
                interval = parity.get("delta_miou_interval")
                if gate.one_sided and not gate.advisory and parity["passed"] and interval and interval[0] < -gate.max_delta_miou:
                    logger.warning(f"{fmt.model_file} is within its budget of {gate.max_delta_miou} mIoU on these {parity['n_images']} images, "
                                   f"but the 95% interval of its mIoU change is {interval[0]:+.2f}..{interval[1]:+.2f}: score more images "
                                   "(--sensitivity-images, --verify-images) for a firmer verdict")
                if not parity["passed"]:
                    if gate.advisory:
                        logger.warning(f"{fmt.model_file}: {gate.what} misses {'; '.join(parity['failures'])}; "
                                       f"run it with --ov-precision f32")
                        continue
                    _keep_rejected(stage, out, fmt, gate)
                    raise CheckFailed(f"{out / fmt.model_file} fails parity with {r.checkpoint.name}: {'; '.join(parity['failures'])} "
                                      f"(the new one is {_rejected_name(fmt.model_file)}, its report {_rejected_name(gate.report)}; "
                                      f"any previous {fmt.model_file} is kept)")
        _commit(stage, out, fmt)
        if before is not None and changed:
            b.replaced.add(fmt.name)
        for report in fmt.reports if changed else ():  # an earlier report not written again (--no-verify) described another model
            if report not in entry["parity"]:
                (out / report).unlink(missing_ok=True)
        for name in (fmt.model_file, *fmt.files[1:], *(gate.report for gate in fmt.gates(r))):  # an earlier run's rejects are stale now
            (out / _rejected_name(name)).unlink(missing_ok=True)
        b.source_paths[fmt.name] = out / fmt.model_file
        return entry
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, out: Path, fmt: Format) -> None:
    """Move the checked files into place, the model file last: a kill in between leaves a model
    whose companions (weights, fingerprint) disagree with it, which its runner refuses, never
    a silent mix."""
    staged = [p for p in stage.iterdir() if p.is_file()]
    model = stage / fmt.model_file
    move_in((path, out / path.name) for path in sorted(staged, key=lambda p: p == model))


def _rejected_name(name: str) -> str:
    path = Path(name)
    return f"{path.stem}.rejected{path.suffix}"


def _keep_rejected(stage: Path, out: Path, fmt: Format, gate: Gate) -> None:
    for name in (fmt.model_file, gate.report) + ((fmt.files[1],) if fmt.model_file.endswith(".xml") else ()):
        if (stage / name).is_file():
            os.replace(stage / name, out / _rejected_name(name))


def _derived_files(out: Path, fmt: Format) -> list[str]:
    return [f for f in fmt.files + fmt.optional_files + fmt.reports if (out / f).is_file()]


def _refuse_to_strand(out: Path, fmt: Format, r: Request) -> None:
    """A new model.onnx that differs from the one in ``out`` makes what was built from that one
    stale: formats rebuilt in this run replace theirs; the others (an engine built on its device,
    say) are removed only with --exist-ok, else the export is refused before anything is replaced."""
    if r.job.exist_ok:
        return
    stranded = [f for other in FORMATS.values() if other.source is not None and not other.requested(r) for f in _derived_files(out, other)]
    if stranded:
        raise ConfigError(f"{out}: holds {', '.join(stranded[:4])}{' ...' if len(stranded) > 4 else ''} built from the earlier "
                          f"{fmt.model_file}, which this export replaces with another; export them again in this run (their flags), "
                          "give --exist-ok to remove them, or use another --out")


def _drop_derived(out: Path) -> None:
    """Remove the formats built from an earlier model.onnx (rebuilt later in this run where asked for),
    with their reports."""
    for fmt in FORMATS.values():
        if fmt.source is None:
            continue
        present = _derived_files(out, fmt)
        for f in present:
            (out / f).unlink()
        if present:
            logger.info(f"removed {', '.join(present)}: built from an earlier model.onnx")


def _export_names() -> set[str]:
    return {f for fmt in FORMATS.values() for f in fmt.files + fmt.optional_files + fmt.reports}


def _clean_up_earlier_runs(out: Path) -> None:
    """Staging folders of an export that was killed, and the ``.<file>.previous`` copies that
    edgeseg 0.1.0 kept of a file of its own being replaced (the last checked one: put back)."""
    for stale in out.glob(STAGE_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    for name in _export_names():
        previous = out / f".{name}.previous"
        if previous.is_file():
            os.replace(previous, out / name)


# What marks a model file as edgeseg's (ONNX metadata, an IR's rt_info and an engine's fingerprint all
# hold it): the record's key, or edgeseg 0.1.0's flat version key.
MODEL_MARKS = (PROPS_KEY.encode(), b"edgeseg.edgeseg_version")


def _marked(path: Path) -> bool:
    """Whether ``path`` carries edgeseg's model record, searched in its bytes without parsing it."""
    keep = max(len(m) for m in MODEL_MARKS)
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if any(m in tail + chunk for m in MODEL_MARKS):
                return True
            tail = chunk[-keep:]
    return False


def _ours_report(path: Path) -> bool:
    """A parity report edgeseg wrote: marked (since 2026-12-07), or of a parity report's shape before."""
    if replace_problem(path, "json") is None:
        return True
    try:
        obj = parse_json(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and {"pixel_agreement", "delta_miou", "passed"} <= obj.keys()


def _refuse_foreign_files(out: Path) -> None:
    """Export writes, replaces and removes files of fixed names in ``out``: without --exist-ok, one of
    those names held by a file edgeseg did not write (a model without edgeseg's record, a JSON file
    that is not a parity report) is refused before anything is written, never replaced or deleted."""
    foreign = []
    for fmt in FORMATS.values():
        present = [f for f in fmt.files + fmt.optional_files if (out / f).exists()]
        mark = next(f for f in fmt.files if Path(f).suffix in (".onnx", ".xml", ".json"))  # the file holding the record
        if present and not ((out / mark).is_file() and _marked(out / mark)):
            foreign += present
        rejected = [_rejected_name(f) for f in fmt.files if Path(f).suffix in (".onnx", ".xml", ".bin")]
        foreign += [f for f in rejected if (out / f).exists() and not (Path(f).suffix == ".bin" or _marked(out / f))]
        reports = list(fmt.reports) + [_rejected_name(f) for f in fmt.reports]
        foreign += [f for f in reports if (out / f).exists() and not ((out / f).is_file() and _ours_report(out / f))]
    if foreign:
        raise ConfigError(f"{out}: holds {', '.join(foreign[:4])}{' ...' if len(foreign) > 4 else ''} under the names export writes, "
                          "not written by edgeseg (no edgeseg model record or report mark); export replaces only its own files: "
                          "give --exist-ok to replace them, or use another --out")


def parity_line(what: str, p: dict) -> str:
    diff = "" if p["max_abs_logit_diff"] is None else f", max |logit diff| {p['max_abs_logit_diff']:.3g}"
    ci = p.get("delta_miou_interval")
    diff = (f", 95% interval {ci[0]:+.2f}..{ci[1]:+.2f}" if ci else "") + diff
    ran = (p.get("ran") or {}).get("precision_report")
    what = f"{what}, ran {ran['inference_precision']}" if ran else what
    return (f"{what} vs checkpoint on {p['n_images']} {p['dataset']}/{p['split']} images: pixel agreement {p['pixel_agreement']:.4f}%, "
            f"mIoU {p['model_miou']:.2f} vs {p['reference_miou']:.2f} (delta {p['delta_miou']:+.3f}){diff}")
