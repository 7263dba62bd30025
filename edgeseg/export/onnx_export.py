"""Checkpoint -> ONNX with edgeseg metadata, optional uint8 NHWC input and in-graph argmax."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.fileio import atomic_path, sha256_file
from edgeseg.limits import check_size
from edgeseg.models import ModelMeta, load_checkpoint, model_from_checkpoint
from edgeseg.models.tta import TTA_MODES
from edgeseg.records import check_fields, opt

OUTPUT_CHOICES = ("logits", "labels", "both")
MIN_OPSET, MAX_OPSET = 13, 23
# errors of writing the model file (a full disk, a quota, a read-only or failing device): said of the output
WRITE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EIO", "EROFS", "EACCES") if hasattr(errno, n))


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = opt(17, low=MIN_OPSET, high=MAX_OPSET, help="ONNX opset (17 suits TensorRT 8.5 and newer).")
    dynamic_batch: bool = opt(False, help="Make the batch dimension dynamic.")
    output: str = opt("logits", choices=OUTPUT_CHOICES, help="Graph outputs: float logits, in-graph argmax labels (uint8), or both.")
    output_size: tuple[int, int] | None = opt(None, help="Up-sample the label output to WxH inside the graph.")
    input_format: str = opt("float", choices=("float", "uint8"), flag="--input",
                            help="float: normalised NCHW float32; uint8: NHWC uint8 with normalisation inside the graph.")
    slim: bool = opt(True, cli=False)  # run onnxslim when it is installed
    scales: str | None = opt(None, help="Inference scales of a multi-scale attention model, e.g. 0.5,1.0,2.0.")
    tta: str = opt("none", choices=TTA_MODES, help="Test-time augmentation in the graph: flip averages the scores of the image and "
                                                   "its mirror image (about 2x the time).")

    def __post_init__(self):
        check_fields(self)
        if self.output_size is not None:
            object.__setattr__(self, "output_size", check_size(*self.output_size, "--output-size"))
        if self.output_size is not None and self.output == "logits":
            raise ConfigError("--output-size applies to the label output; add --output labels or both")
        if self.scales is not None:
            from edgeseg.models.msa import parse_scales

            parse_scales(self.scales, "--scales")


class ExportWrapper(nn.Module):
    """The deployed graph: [uint8 NHWC -> normalised NCHW] -> model -> logits and/or uint8 labels."""

    def __init__(self, model: nn.Module, meta: ModelMeta, options: OnnxOptions):
        super().__init__()
        self.model = model
        self.uint8_input = options.input_format == "uint8"
        self.emit_logits = options.output in ("logits", "both")
        self.emit_labels = options.output in ("labels", "both")
        self.labels_size = None if options.output_size is None else (options.output_size[1], options.output_size[0])
        self.register_buffer("mean", torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor):
        if self.uint8_input:
            # TensorRT 8.x accepts uint8 only at the graph edge, converted straight to float
            x = (x.to(torch.float32).permute(0, 3, 1, 2) - self.mean) * self.inv_std
        logits = self.model(x)
        outs = []
        if self.emit_logits:
            outs.append(logits)
        if self.emit_labels:
            scores = logits
            if self.labels_size is not None and tuple(self.labels_size) != tuple(logits.shape[-2:]):
                scores = F.interpolate(logits, size=self.labels_size, mode="bilinear", align_corners=False)
            # via float: TensorRT 8.x casts to uint8 from float only (its ArgMax gives int32)
            outs.append(scores.argmax(1).to(torch.float32).to(torch.uint8))
        return tuple(outs) if len(outs) > 1 else outs[0]


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs progress and warnings for packages we do not use; keep the CLI clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "torch._guards", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def export_module(module: nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool, output_names: list[str]) -> None:
    """torch.export-based ONNX export at opset >= 18, then down-converted to ``opset``."""
    import onnx

    from edgeseg.export.opset import downgrade, prune_unused

    module = module.eval()
    kwargs = {}
    if dynamic_batch:
        # An example batch of 1 would be specialised; trace with 2 and mark the dimension dynamic.
        example = torch.cat([example, example])
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    with _quiet_exporter():
        torch.onnx.export(
            module, (example,), str(path), dynamo=True, opset_version=max(opset, 18), input_names=["input"],
            output_names=output_names, external_data=False, optimize=True, verbose=False, **kwargs,
        )
    model = onnx.load(str(path))
    model = prune_unused(downgrade(model, opset))  # onnxruntime warns about each unused initializer
    onnx.save(model, str(path))


def _slim(path: Path) -> bool:
    from edgeseg.optional import available

    if not available("onnxslim"):
        return False
    import onnxslim

    with _quiet_exporter():
        slimmed = onnxslim.slim(str(path))
    if slimmed is not None:
        import onnx

        onnx.save(slimmed, str(path))
    return True


def export_onnx(checkpoint: str | Path, out: str | Path, options: OnnxOptions = OnnxOptions()) -> tuple[Path, ModelMeta]:
    """Write ``out`` (an .onnx file) from an edgeseg checkpoint; returns its path and metadata."""
    import onnx

    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, str(checkpoint), scales=options.scales, tta=options.tta).eval()
    if not getattr(model, "exportable", True):
        raise ConfigError(f"model '{model.config.name}' is not exportable")
    meta = ckpt.meta.with_(source_sha256=sha256_file(checkpoint), dataset_root=None)
    outputs = {"logits": ["logits"], "labels": ["labels"], "both": ["logits", "labels"]}[options.output]
    out_res = model.config.output_res or tuple(meta.res)  # above the input size for --upscale / --refine models
    labels_size = tuple(options.output_size) if options.output_size else (tuple(out_res) if "labels" in outputs else None)
    meta = meta.with_(
        input_layout="nhwc-uint8" if options.input_format == "uint8" else "nchw",
        outputs=tuple(outputs),
        labels_size=labels_size,
        extra={"opset": options.opset, "dynamic_batch": options.dynamic_batch, "source": checkpoint.name,
               **({"scales": list(model.infer_scales)} if hasattr(model, "infer_scales") else {}),
               **({"tta": options.tta} if options.tta != "none" else {})},
    )
    w, h = meta.input_res
    example = torch.zeros((1, h, w, 3), dtype=torch.uint8) if options.input_format == "uint8" else torch.zeros((1, 3, h, w))
    wrapper = ExportWrapper(model, meta, options)
    with atomic_path(out) as tmp:
        try:
            export_module(wrapper, example, tmp, options.opset, options.dynamic_batch, outputs)
        except (ConfigError, OSError):
            raise  # an output that cannot be written (a full disk) is said of the output, by the command line
        except Exception as exc:  # the exporter's own errors are long; keep the first line
            cause, seen = exc.__cause__, set()
            while cause is not None and not isinstance(cause, OSError) and id(cause) not in seen:
                seen.add(id(cause))
                cause = cause.__cause__
            if isinstance(cause, OSError) and cause.errno in WRITE_ERRNOS:  # a write the exporter wrapped: said of the output
                raise cause from None
            raise ModelFileError(f"{checkpoint}: ONNX export failed: {str(exc).strip().splitlines()[0][:200]}") from None
        slimmed = options.slim and _slim(tmp)
        proto = onnx.load(str(tmp))
        meta = meta.with_(extra={**meta.extra, "onnxslim": bool(slimmed)})
        onnx.helper.set_model_props(proto, meta.to_props())
        proto.producer_name = "edgeseg"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return out, meta
