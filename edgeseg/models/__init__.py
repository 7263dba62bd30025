"""Model registry: plain dicts from names to builders; unknown names list the valid ones."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch.nn as nn

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.models.base import ModelConfig, SegModel
from edgeseg.models.checkpoint import (
    Checkpoint,
    TrainingState,
    load_checkpoint,
    load_file,
    strict_load,
)
from edgeseg.models.meta import ModelMeta
from edgeseg.models.msa import parse_scales

SCALE_OPTIONS = ("train_scales", "infer_scales")


def _encoder(cfg: ModelConfig, variant: str):
    from edgeseg.models.efficientnet_lite import EfficientNetLite

    return EfficientNetLite(cfg.options.get("drop_connect", 0.2), variant)


def _lraspp(variant: str):
    def build(cfg: ModelConfig) -> SegModel:
        from edgeseg.models.parts import LRASPP, ClassifierHead

        enc = _encoder(cfg, variant)
        dec = LRASPP(enc.out_channels, enc.reductions, cfg.options.get("inter", 128))
        return SegModel(cfg, enc, dec, ClassifierHead(dec.out_channels, cfg.num_classes))

    build.__doc__ = f"EfficientNet-{variant.capitalize()} + Lite R-ASPP" + (" (the default)." if variant == "lite0" else ".")
    return build


def _fpn(variant: str):
    def build(cfg: ModelConfig) -> SegModel:
        from edgeseg.models.parts import ClassifierHead, LiteFPN

        enc = _encoder(cfg, variant)
        dec = LiteFPN(enc.out_channels, enc.reductions, cfg.options.get("width", 64))
        return SegModel(cfg, enc, dec, ClassifierHead(dec.out_channels, cfg.num_classes))

    build.__doc__ = f"EfficientNet-{variant.capitalize()} + a small FPN on strides 8-32."
    return build


def _lite0_dupsample(cfg: ModelConfig) -> SegModel:
    """EfficientNet-Lite0 + DUpsampling decoder (options: stride, channels, finetune_w)."""
    from edgeseg.models.dupsample import DUpsampleFusion, DUpsampleHead

    stride = int(cfg.options.get("stride", 16))
    enc = _encoder(cfg, "lite0")
    dec = DUpsampleFusion(enc.out_channels, enc.reductions, stride, int(cfg.options.get("width", 128)))
    head = DUpsampleHead(dec.out_channels, cfg.num_classes, stride, int(cfg.options.get("channels", 64)),
                         bool(cfg.options.get("finetune_w", False)))
    return SegModel(cfg, enc, dec, head)


def _lite0_lraspp_msa(cfg: ModelConfig) -> SegModel:
    """lite0-lraspp with hierarchical multi-scale attention (options: train_scales, infer_scales)."""
    from edgeseg.models.msa import AttentionHead, MultiScaleAttentionModel
    from edgeseg.models.parts import LRASPP, ClassifierHead

    enc = _encoder(cfg, "lite0")
    dec = LRASPP(enc.out_channels, enc.reductions, cfg.options.get("inter", 128))
    return MultiScaleAttentionModel(cfg, enc, dec, ClassifierHead(dec.out_channels, cfg.num_classes),
                                    AttentionHead(dec.out_channels, int(cfg.options.get("attention_width", 64))),
                                    cfg.options.get("train_scales", (0.5, 1.0)), cfg.options.get("infer_scales", (0.5, 1.0)))


def _tiny_msa(cfg: ModelConfig) -> SegModel:
    """tiny with multi-scale attention, for tests."""
    from edgeseg.models.msa import AttentionHead, MultiScaleAttentionModel
    from edgeseg.models.parts import ClassifierHead, LastFeature, TinyEncoder

    enc = TinyEncoder()
    dec = LastFeature(enc.out_channels, enc.reductions)
    return MultiScaleAttentionModel(cfg, enc, dec, ClassifierHead(dec.out_channels, cfg.num_classes, dropout=0.0),
                                    AttentionHead(dec.out_channels, 8), cfg.options.get("train_scales", (0.5, 1.0)),
                                    cfg.options.get("infer_scales", (0.5, 1.0)))


def _tiny(cfg: ModelConfig) -> SegModel:
    """Three strided convolutions: for fast tests, not for accuracy."""
    from edgeseg.models.parts import ClassifierHead, LastFeature, TinyEncoder

    enc = TinyEncoder()
    dec = LastFeature(enc.out_channels, enc.reductions)
    return SegModel(cfg, enc, dec, ClassifierHead(dec.out_channels, cfg.num_classes, dropout=0.0))


MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    **{f"{v}-{d}": make(v) for v in ("lite0", "lite1", "lite2") for d, make in (("lraspp", _lraspp), ("fpn", _fpn))},
    "lite0-dupsample": _lite0_dupsample,
    "lite0-lraspp-msa": _lite0_lraspp_msa,
    "tiny-msa": _tiny_msa,
    "tiny": _tiny,
}
# Chosen by measurement (benchmarks/RESULTS.md, section 6). lite0-fpn scored 2.7 mIoU more on
# CamVid at 120x90 (3 seeds), but needs decoder blocks in float to stay within 0.5 mIoU at INT8
# (LR-ASPP: full INT8 within 0.3) and converged slower in the 4-epoch quickstart.
DEFAULT_MODEL = "lite0-lraspp"


# The options (--model-opt KEY=VALUE) each architecture reads, with the type each value must have.
_NATIVE_OPTIONS = {"upscale_width": int, "upscale_input": int, "refine_radius": int, "guide_channels": int, "guide_kernel": int, "guide_width": int}
# The stage each of those options shapes, as a test of the model config.
_STAGE_OPTIONS = {"upscale_width": lambda c: c.upscale > 1, "upscale_input": lambda c: c.upscale > 1, **{k: (lambda c: c.refine != "none")
                                                               for k in ("refine_radius", "guide_channels", "guide_kernel", "guide_width")}}
MODEL_OPTIONS: dict[str, dict[str, type]] = {
    **{f"{v}-lraspp": {"drop_connect": float, "inter": int, **_NATIVE_OPTIONS} for v in ("lite0", "lite1", "lite2")},
    **{f"{v}-fpn": {"drop_connect": float, "width": int, **_NATIVE_OPTIONS} for v in ("lite0", "lite1", "lite2")},
    "lite0-dupsample": {"drop_connect": float, "stride": int, "width": int, "channels": int, "finetune_w": bool},
    "lite0-lraspp-msa": {"drop_connect": float, "inter": int, "attention_width": int, "train_scales": list, "infer_scales": list},
    "tiny-msa": {"train_scales": list, "infer_scales": list},
    "tiny": dict(_NATIVE_OPTIONS),
}
MAX_STAGE_CHANNELS = 256  # the native stages are meant to be light; wider ones are a typo, not a model
# The bounds of every numeric option (each value of a list), with what it means: one table for the
# check when a config is made and for the builders.
OPTION_BOUNDS: dict[str, tuple[float, float, str]] = {
    "drop_connect": (0.0, 0.9, "the encoder's drop-connect rate"),
    "inter": (1, 1024, "LR-ASPP's channels"), "width": (1, 1024, "the decoder's channels"), "channels": (1, 1024, "DUpsampling's channels"),
    "stride": (2, 64, "DUpsampling's output stride"), "attention_width": (1, 1024, "the attention head's channels"),
    "upscale_width": (1, MAX_STAGE_CHANNELS, "the up-sampler's channels"),
    "upscale_input": (0, MAX_STAGE_CHANNELS, "the stride-1 stage's channels (0: none)"),
    "refine_radius": (1, 8, "the box filters' radius"), "guide_channels": (0, 1, "0 (one guide per class) or 1 (one shared guide)"),
    "guide_kernel": (1, 5, "1, 3 or 5"), "guide_width": (0, MAX_STAGE_CHANNELS, "the guide's hidden channels (0: linear in the colour)"),
}


def check_model_options(name: str, options: dict) -> None:
    """Refuse an option the architecture does not read, or a value of the wrong kind or outside its
    bounds (OPTION_BOUNDS), by name."""
    import math

    known = MODEL_OPTIONS.get(name)
    if known is None:
        return  # an architecture registered at run time declares no options here
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"--model-opt {key}: '{name}' has no such option; it takes: {', '.join(sorted(known)) or 'none'}")
        kind = known[key]
        values = list(value) if kind is list and isinstance(value, (list, tuple)) else [value]
        whole = kind is int
        ok = (isinstance(value, bool) if kind is bool else
              all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (not whole or float(v).is_integer())
                  for v in values))
        if key in SCALE_OPTIONS:  # checked where every option that takes scales is
            parse_scales(value, f"--model-opt {key}")
            continue
        if not ok:
            raise ConfigError(f"--model-opt {key}={value!r}: expected {'a list of numbers' if kind is list else kind.__name__}")
        if key in OPTION_BOUNDS:
            low, high, meaning = OPTION_BOUNDS[key]
            for v in values:
                if not low <= v <= high:
                    raise ConfigError(f"--model-opt {key}={v:g}: expected {meaning}, {'a whole number' if whole else 'a number'} "
                                      f"from {low:g} to {high:g}")


def register(name: str, builder: Callable[[ModelConfig], nn.Module]) -> None:
    MODELS[name] = builder


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; expected one of: {', '.join(sorted(MODELS))}")
    if cfg.num_classes < 1:
        raise ConfigError(f"a model needs at least one class, got {cfg.num_classes}")
    for key, needs in _STAGE_OPTIONS.items():  # an option of a stage the model does not have would do nothing
        if key in cfg.options and not needs(cfg):
            flag = "--upscale 2 or 4" if key.startswith("upscale_") else "--refine guided"
            raise ConfigError(f"--model-opt {key}: applies only with {flag}")
    model = MODELS[cfg.name](cfg)
    if cfg.upscale != 1 or cfg.refine != "none":
        attach_native_stages(model, cfg)
    return model


def _stage_option(cfg: ModelConfig, key: str, default: int) -> int:
    """A native stage's ``--model-opt`` whole number, checked against OPTION_BOUNDS."""
    value = cfg.options.get(key, default)
    check_model_options("tiny", {key: value})  # the bounds and kind, whatever the architecture
    return int(value)


def attach_native_stages(model: nn.Module, cfg: ModelConfig) -> None:
    """Add the up-sampler (``--upscale``) and the guided refinement (``--refine``) of ``cfg``."""
    from edgeseg.models.native import REFINES, UPSCALES, GuidedRefine, UpscaleHead

    if cfg.upscale not in UPSCALES:
        raise ConfigError(f"--upscale: expected one of {', '.join(map(str, UPSCALES))}; got {cfg.upscale}")
    if cfg.refine not in REFINES:
        raise ConfigError(f"--refine: expected one of {', '.join(REFINES)}; got '{cfg.refine}'")
    if type(model) is not SegModel:
        raise ConfigError(f"--upscale/--refine: model '{cfg.name}' has its own output stage; use lite0-lraspp, lite0-fpn or tiny")
    if cfg.upscale > 1:
        enc = model.encoder
        width = _stage_option(cfg, "upscale_width", 16)
        inputs = _stage_option(cfg, "upscale_input", 0)
        model.upsampler = UpscaleHead(cfg.num_classes, enc.out_channels, enc.reductions, cfg.upscale, width, inputs)
    if cfg.refine == "guided":
        if not cfg.res or not cfg.native_res:
            raise ConfigError("--refine guided: the model config needs the network and native resolutions")
        (w, h), (nw, nh) = cfg.res, cfg.native_res
        if nw < w * cfg.upscale or nh < h * cfg.upscale:
            raise ConfigError(
                f"--upscale {cfg.upscale}: the output {w * cfg.upscale}x{h * cfg.upscale} exceeds the native frame {nw}x{nh}; "
                "use a smaller --upscale or --res")
        radius = _stage_option(cfg, "refine_radius", 1)
        gw = _stage_option(cfg, "guide_width", 8)
        channels = _stage_option(cfg, "guide_channels", 0)
        gk = _stage_option(cfg, "guide_kernel", 1)
        if gk not in (1, 3, 5):
            raise ConfigError(f"--model-opt guide_kernel={gk}: expected 1, 3 or 5")
        if gw == 0 and gk > 1:
            raise ConfigError(f"--model-opt guide_kernel={gk}: needs a hidden guide stage; guide_width=0 has none")
        model.refiner = GuidedRefine(cfg.num_classes, cfg.kernel, radius, width=gw, guide_channels=channels, guide_kernel=gk)


def load_pretrained(model: nn.Module, spec: str) -> str:
    """Apply ``--pretrained``: ``none``, ``imagenet`` (EfficientNet-Lite encoders) or a file.

    A file may hold a whole model (an edgeseg checkpoint or its state dict) or an
    encoder state dict in the lukemelas naming. Returns a one-line description.
    """
    if spec in (None, "", "none"):
        return "random initialisation"
    encoder = getattr(model, "encoder", None)
    if spec == "imagenet":
        from edgeseg.models.pretrained import imagenet_state_dict

        if not hasattr(encoder, "classifier_prefixes"):
            raise ConfigError(f"--pretrained imagenet needs an EfficientNet-Lite model (lite0-*, lite1-*, lite2-*); "
                              f"'{model.config.name}' has none")
        state, source = imagenet_state_dict(encoder.variant)
        strict_load(encoder, state, source, ignore_prefixes=encoder.classifier_prefixes)
        return f"ImageNet EfficientNet-{encoder.variant.capitalize()} weights from {source}"
    path = Path(spec)
    obj = load_file(path)
    state = obj["model"] if "model" in obj and isinstance(obj["model"], dict) else obj
    if any(k.startswith("encoder.") for k in state):
        strict_load(model, state, str(path))
        return f"whole-model weights from {path}"
    if encoder is None:
        raise ModelFileError(f"{path}: holds encoder weights but the model has no encoder")
    strict_load(encoder, state, str(path), ignore_prefixes=getattr(encoder, "classifier_prefixes", ()))
    return f"encoder weights from {path}"


def model_from_checkpoint(ckpt, where: str = "checkpoint", scales=None, tta: str | None = None) -> nn.Module:
    """Rebuild the model of a :class:`~edgeseg.models.checkpoint.Checkpoint` and load its weights.

    ``scales`` replaces the inference scales of a multi-scale attention model; ``tta`` ("flip")
    wraps it in test-time augmentation (models/tta.py).
    """
    cfg = ckpt.meta.model
    if scales is not None:
        if not cfg.name.endswith("-msa"):
            raise ConfigError(f"--scales applies to multi-scale attention models (*-msa); {where} holds '{cfg.name}'")
        from dataclasses import replace

        cfg = replace(cfg, options={**cfg.options, "infer_scales": list(parse_scales(scales, "--scales"))})
    try:  # the file's architecture options, checked as the command line's are: refused naming the file
        check_model_options(cfg.name, cfg.options)
        model = build_model(cfg)
    except ConfigError as exc:
        raise ModelFileError(f"{where}: its model cannot be built as it describes ({exc})") from None
    strict_load(model, ckpt.weights, where)
    from edgeseg.models.tta import with_tta

    return with_tta(model, tta)


__all__ = [
    "Checkpoint",
    "DEFAULT_MODEL",
    "ModelMeta",
    "TrainingState",
    "MODELS",
    "ModelConfig",
    "SegModel",
    "build_model",
    "load_checkpoint",
    "load_pretrained",
    "model_from_checkpoint",
    "register",
]
