"""What ``edgeseg export`` can write: one row per format (its files, the format it is built
from, its builder, and the checks it must pass with their budgets), and the export job's
own options. ``edgeseg.tasks.export`` runs one loop over the rows a request asks for: build
aside, check, then put in place.

A new format is its builder module, one row here, and its test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeseg.errors import ConfigError
from edgeseg.export.int8 import Int8Options
from edgeseg.export.onnx_export import OnnxOptions
from edgeseg.export.trt_build import TrtOptions
from edgeseg.fileio import parse_json
from edgeseg.records import changed_flags, check_fields, opt
from edgeseg.runtime.spec import RunnerSpec

logger = logging.getLogger(__name__)

# The budgets, named once.
FP32_MIN_AGREEMENT = 99.9  # percent of pixels an FP32 export must agree on with its checkpoint
FP32_MAX_DELTA_MIOU = 0.1  # mIoU points an FP32 export may differ by, either way
FP16_MAX_LOSS_MIOU = 0.5  # mIoU points an FP16 engine may lose
DEFAULT_PRECISION_MAX_LOSS_MIOU = 0.5  # OpenVINO's default (bf16) precision: above this loss, a warning


@dataclass(frozen=True)
class ExportOptions:
    """The export job: which formats, and how each is checked against the checkpoint."""

    verify: bool = opt(True, flag="--no-verify", invert=True, help="Skip the parity checks on real images.")
    verify_images: int = opt(32, needs="verify", low=1, high=1_000_000, help="Images for the parity checks.")
    min_agreement: float = opt(FP32_MIN_AGREEMENT, needs="verify", low=0.0, high=100.0, help="Minimum pixel agreement of FP32 exports (percent).")
    max_delta_miou: float = opt(FP32_MAX_DELTA_MIOU, needs="verify", low=0.0, high=100.0, help="Maximum |delta mIoU| of FP32 exports (points).")
    device: str = opt("cpu", needs="verify", help="Where checkpoints and ONNX models run for the checks: cpu or cuda[:N].")
    exist_ok: bool = opt(False, help="Replace files under export's names that edgeseg did not write, and where this export replaces "
                                     "model.onnx, remove the formats the folder holds that were built from the earlier one and are "
                                     "not rebuilt now (INT8 model, IR, engine); without it such an export is refused before anything "
                                     "is replaced.")
    formats: tuple[str, ...] = opt(("onnx",), cli=False)  # the rows of FORMATS to write (onnx always)

    def __post_init__(self):
        check_fields(self)
        object.__setattr__(self, "formats", tuple(dict.fromkeys(("onnx",) + tuple(self.formats))))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"export formats {unknown}: expected some of {', '.join(FORMATS)}")
        if self.device == "auto":
            object.__setattr__(self, "device", "cpu")
        RunnerSpec(device=self.device)  # the device's spelling, checked once


def refuse_unused_options(wanted, fp16: bool, job, int8, trt, source) -> None:
    """An export's options that would have no effect, refused by name: ``job``, ``int8`` and ``trt``
    are (record, names given on the command line); ``source`` the DataSource."""
    (job, _), (int8_opts, int8_given), (trt_opts, trt_given) = job, int8, trt
    if fp16 and "tensorrt" not in wanted:
        raise ConfigError("--fp16 applies to TensorRT engines; add --trt")
    for record, given, flag, on in ((int8_opts, int8_given, "--int8", "int8" in wanted), (trt_opts, trt_given, "--trt", "tensorrt" in wanted)):
        unused = [] if on else changed_flags(record, given)
        if unused:
            raise ConfigError(f"{unused[0]}: applies only with {flag}; add {flag} or leave {unused[0]} out")
    unused = [] if job.verify or "int8" in wanted else changed_flags(source)
    if unused:  # the data set serves the parity checks and INT8 calibration, and neither runs
        raise ConfigError(f"{unused[0]}: has no effect with --no-verify and without --int8; leave one of them out")


@dataclass(frozen=True)
class Request:
    """Everything one export needs: the job's options and each format's own."""

    checkpoint: Path
    out_dir: Path | None = None  # default: the checkpoint's folder
    job: ExportOptions = field(default_factory=ExportOptions)
    onnx: OnnxOptions = field(default_factory=OnnxOptions)
    int8: Int8Options | None = None
    trt: TrtOptions | None = None

    def __post_init__(self):
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out_dir", Path(self.out_dir) if self.out_dir is not None else self.checkpoint.parent)
        if self.wants("int8") and self.int8 is None:
            object.__setattr__(self, "int8", Int8Options())
        if self.wants("tensorrt") and self.trt is None:
            object.__setattr__(self, "trt", TrtOptions())
        if self.trt is not None and self.trt.precision == "int8" and not self.wants("int8"):
            raise ConfigError("--trt --int8 needs the INT8 step: give --int8 with calibration data (--dataset/--data)")
        if self.trt is not None and self.trt.int8_mode != "auto" and self.trt.precision != "int8":
            raise ConfigError(f"--int8-mode {self.trt.int8_mode}: applies only with --trt --int8; add --int8 or leave --int8-mode out")
        if self.trt is not None and self.trt.max_batch != TrtOptions().max_batch and not self.onnx.dynamic_batch:
            raise ConfigError("--max-batch: applies only with --dynamic-batch (a fixed-batch engine takes batch 1); "
                              "add --dynamic-batch or leave --max-batch out")
        if self.trt is not None and self.trt.precision == "int8" and self.int8.target != "tensorrt":
            raise ConfigError(f"--trt --int8 builds from the TensorRT placement; drop --int8-target {self.int8.target} "
                              "(the CPU placement is for ONNX Runtime and OpenVINO)")

    def wants(self, name: str) -> bool:
        return name in self.job.formats


@dataclass(frozen=True)
class Gate:
    """One check of a format against the checkpoint: thresholds, the images it scores, how the model
    runs, and whether a miss fails the export (or is only reported)."""

    report: str  # file name of its parity report
    min_agreement: float
    max_delta_miou: float
    one_sided: bool  # the delta is a budget for losing mIoU
    images: int
    spec: RunnerSpec = RunnerSpec()
    what: str = ""
    advisory: bool = False


@dataclass(frozen=True)
class Format:
    name: str
    files: tuple[str, ...]  # the files it writes, model file first (optional extras may be absent)
    source: str | None  # the format whose model it is built from
    build: Callable[["Build"], dict]
    gates: Callable[[Request], list[Gate]]
    optional_files: tuple[str, ...] = ()
    also_needs: tuple[str, ...] = ()  # other formats that must be asked for too (openvino-int8: int8)
    flag: str | None = None  # the command-line flag that asks for it (None: always written, or follows from others)
    help: str = ""
    preflight: Callable[[Request], object] | None = None  # refuses, before anything is written, what it lacks (its package)
    reports: tuple[str, ...] = ()  # every parity report its gates may write (they describe its model file)

    def requested(self, r: Request) -> bool:
        return (r.wants(self.name) or bool(self.also_needs)) and all(r.wants(n) for n in self.also_needs)

    @property
    def model_file(self) -> str:
        return self.files[0]


@dataclass
class Build:
    """What a builder gets: the request, the folder it writes into (``stage``), the final paths of
    the formats already in place, and the checkpoint's model description."""

    request: Request
    stage: Path
    meta: object
    source_paths: dict[str, Path] = field(default_factory=dict)
    replaced: set[str] = field(default_factory=set)  # formats whose earlier model file this run replaced with another
    progress: bool = True
    data: object = None  # the DataSource the checks and calibration read

    def path(self, name: str) -> Path:
        return self.stage / name


def _build_onnx(b: Build) -> dict:
    from edgeseg.export.onnx_export import export_onnx

    path, meta = export_onnx(b.request.checkpoint, b.path("model.onnx"), b.request.onnx)
    b.meta = meta
    native = f", network {meta.res[0]}x{meta.res[1]} inside the graph" if meta.native_res else ""
    logger.info(f"wrote {b.request.out_dir / 'model.onnx'} (opset {b.request.onnx.opset}, input {meta.input_res[0]}x{meta.input_res[1]} "
                f"{meta.input_layout}{native}, outputs {', '.join(meta.outputs)})")
    return {"meta": {"res": list(meta.res), "outputs": list(meta.outputs), "input_layout": meta.input_layout}}


def _build_int8(b: Build) -> dict:
    from edgeseg.export.int8 import export_int8

    return export_int8(b.source_paths["onnx"], b.meta, b.stage, b.request.int8, b.data, b.meta.dataset_root or _saved_root(b),
                       b.progress, cache_dir=b.request.out_dir / "calibration", final_dir=b.request.out_dir)


def _saved_root(b: Build):
    from edgeseg.models import load_checkpoint

    return load_checkpoint(b.request.checkpoint).meta.dataset_root


def _build_ir(source: str, file: str):
    def build(b: Build) -> dict:
        from edgeseg.export.openvino_ir import write_ir

        xml = write_ir(b.source_paths[source], b.path(file))
        logger.info(f"wrote {b.request.out_dir / file} and {xml.with_suffix('.bin').name} (OpenVINO IR of {b.source_paths[source].name})")
        return {}

    return build


def _build_engine(b: Build) -> dict:
    from edgeseg.export.trt_build import build_engine

    r = b.request
    int8 = r.trt.precision == "int8"
    engine = build_engine(b.source_paths["onnx"], b.path("model.engine"), r.trt, qdq_path=b.source_paths.get("int8"),
                          calib_cache=r.out_dir / "calibration.cache" if int8 else None, meta=b.meta,
                          calibration_sha256=_calibration_sha(r.out_dir) if int8 else None)
    return {"fingerprint": engine["fingerprint"]}


def _calibration_sha(out_dir: Path) -> str | None:
    """The calibration set's hash in the INT8 report beside the engine (written by this export)."""
    import json

    from edgeseg.errors import ModelFileError
    from edgeseg.fileio import shape_problem

    report = out_dir / "int8_report.json"
    if not report.is_file():
        return None
    try:
        data = parse_json(report.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{report}: damaged ({exc}); export with --int8 again") from None
    problem = shape_problem(data, {"calibration_sha256": (str, type(None))})
    if problem:
        raise ModelFileError(f"{report}: damaged ({problem}); export with --int8 again")
    return data["calibration_sha256"]


def _onnx_gates(r: Request) -> list[Gate]:
    return [Gate("parity.json", r.job.min_agreement, r.job.max_delta_miou, False, r.job.verify_images, RunnerSpec(device=r.job.device),
                 "onnxruntime FP32")]


def _int8_gates(r: Request) -> list[Gate]:
    # One verdict: the gate scores the very images the budget search scored (the first
    # --sensitivity-images of the split), so the two cannot contradict each other.
    return [Gate("parity.int8.json", 0.0, r.int8.budget, True, r.int8.sensitivity_images, RunnerSpec(device=r.job.device),
                 "onnxruntime INT8 Q/DQ")]


def _ir_gates(r: Request) -> list[Gate]:
    """The FP32 IR is held to the FP32 thresholds at f32; where OpenVINO's default precision differs
    here (bf16 on CPUs with AVX-512 BF16 or AMX), it is also scored at that, and a loss above
    DEFAULT_PRECISION_MAX_LOSS_MIOU is reported (the file is right; the precision is the user's choice)."""
    from edgeseg.runtime.ov_runner import default_precision

    gates = [Gate("parity.openvino.json", r.job.min_agreement, r.job.max_delta_miou, False, r.job.verify_images,
                  RunnerSpec(device="cpu", precision="f32"), "openvino FP32 IR (f32)")]
    default = default_precision()
    if default != "f32":
        gates.append(Gate("parity.openvino.default.json", 0.0, DEFAULT_PRECISION_MAX_LOSS_MIOU, True, r.job.verify_images,
                          RunnerSpec(device="cpu"), f"openvino FP32 IR at its default precision ({default})", advisory=True))
    return gates


def _ir_int8_gates(r: Request) -> list[Gate]:
    # The INT8 IR runs at OpenVINO's default precision, as deployed, against --int8-budget.
    return [Gate("parity.openvino.int8.json", 0.0, r.int8.budget, True, r.int8.sensitivity_images, RunnerSpec(device="cpu"),
                 "openvino INT8 IR")]


def _engine_gates(r: Request) -> list[Gate]:
    precision = r.trt.precision
    spec = RunnerSpec(device="auto")
    if precision == "fp32":
        return [Gate("parity.engine.json", r.job.min_agreement, r.job.max_delta_miou, False, r.job.verify_images, spec, "TensorRT fp32")]
    budget = r.int8.budget if precision == "int8" else FP16_MAX_LOSS_MIOU
    return [Gate("parity.engine.json", 0.0, budget, True, r.job.verify_images, spec, f"TensorRT {precision}")]


def _require(module: str, purpose: str):
    from edgeseg.optional import require

    return require(module, purpose)


def _trt_api():
    from edgeseg.runtime.trt_api import TrtApi

    return TrtApi.load()


def _trt_preflight(r: Request) -> None:
    """TensorRT importable, and able to build what was asked: from TensorRT 11 networks are strongly
    typed, so an INT8 engine's float layers run in the ONNX model's precision (no FP16 fallback)."""
    api = _trt_api()
    if r.trt is not None and r.trt.fp16_fallback and not api.has_precision_flags:
        raise ConfigError(f"--fp16 with --int8: TensorRT {api.trt.__version__} builds strongly typed networks, whose float "
                          "layers keep the ONNX model's precision; leave --fp16 out")


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ("model.onnx",), None, _build_onnx, _onnx_gates, reports=("parity.json",)),
    Format("int8", ("model.int8.onnx", "int8_report.json"), "onnx", _build_int8, _int8_gates,
           optional_files=("calibration.cache", "calibration.cache.json"), flag="--int8", reports=("parity.int8.json",),
           help="Also write model.int8.onnx (Q/DQ, calibrated on the training split) and calibration.cache."),
    Format("openvino", ("model.xml", "model.bin"), "onnx", _build_ir("onnx", "model.xml"), _ir_gates, flag="--openvino",
           help='Also write OpenVINO IR of each ONNX model (model.xml/.bin, model.int8.xml/.bin), each with a parity check '
                '(needs: pip install "edgeseg[openvino]").', preflight=lambda r: _require("openvino", "--openvino"),
           reports=("parity.openvino.json", "parity.openvino.default.json")),
    Format("openvino-int8", ("model.int8.xml", "model.int8.bin"), "int8", _build_ir("int8", "model.int8.xml"), _ir_int8_gates,
           also_needs=("openvino", "int8"), reports=("parity.openvino.int8.json",)),
    Format("tensorrt", ("model.engine", "model.engine.json"), "onnx", _build_engine, _engine_gates, optional_files=("model.fp16.onnx",),
           flag="--trt", help="Build a TensorRT engine (model.engine and model.engine.json).", preflight=lambda r: _trt_preflight(r),
           reports=("parity.engine.json",)),
)}
# The formats a user asks for by flag (the others follow: onnx always, openvino-int8 from --openvino --int8).
FLAGS = {f.name: f.flag for f in FORMATS.values() if f.flag}
