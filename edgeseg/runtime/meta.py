"""What a deployed model carries besides weights: classes, normalisation, input size, kernel."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from edgeseg import __version__
from edgeseg.errors import ModelFileError
from edgeseg.models.base import DEFAULT_MEAN, DEFAULT_STD


@dataclass(frozen=True)
class ModelMeta:
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    res: tuple[int, int]  # model input (width, height)
    kernel: str = "area"
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    ignore_index: int = 255
    input_layout: str = "nchw"  # or "nhwc-uint8" (normalisation inside the graph)
    outputs: tuple[str, ...] = ("logits",)
    labels_size: tuple[int, int] | None = None  # (width, height) of an in-graph label output
    # Guided-refinement models take the native frame at this (width, height) and return scores there.
    native_res: tuple[int, int] | None = None
    model_name: str = ""
    dataset: str = ""
    label_mode: str = "soft"
    source_sha256: str = ""
    edgeseg_version: str = __version__
    extra: dict = field(default_factory=dict)

    @property
    def input_res(self) -> tuple[int, int]:
        """(width, height) of the image the model takes: the native frame or the network resolution."""
        return tuple(self.native_res) if self.native_res else tuple(self.res)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The model input's shape: NHWC uint8 frames or normalised NCHW float32."""
        w, h = self.input_res
        return (batch, h, w, 3) if self.input_layout == "nhwc-uint8" else (batch, 3, h, w)

    @property
    def input_dtype(self):
        import numpy as np

        return np.uint8 if self.input_layout == "nhwc-uint8" else np.float32

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_(self, **changes) -> "ModelMeta":
        return replace(self, **changes)

    def to_props(self) -> dict[str, str]:
        """ONNX ``metadata_props``: string keys to string (JSON) values."""
        d = asdict(self)
        return {f"edgeseg.{k}": json.dumps(v) for k, v in d.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> "ModelMeta | None":
        """Parse ``edgeseg.*`` metadata; ``None`` when the file has none."""
        ours = {k[len("edgeseg."):]: v for k, v in props.items() if k.startswith("edgeseg.")}
        if not ours:
            return None
        try:
            d = {k: json.loads(v) for k, v in ours.items()}
            return cls(
                class_names=tuple(d["class_names"]),
                palette=tuple(tuple(c) for c in d["palette"]),
                res=tuple(d["res"]),
                kernel=d.get("kernel", "area"),
                mean=tuple(d.get("mean", DEFAULT_MEAN)),
                std=tuple(d.get("std", DEFAULT_STD)),
                ignore_index=int(d.get("ignore_index", 255)),
                input_layout=d.get("input_layout", "nchw"),
                outputs=tuple(d.get("outputs", ("logits",))),
                labels_size=tuple(d["labels_size"]) if d.get("labels_size") else None,
                native_res=tuple(d["native_res"]) if d.get("native_res") else None,
                model_name=d.get("model_name", ""),
                dataset=d.get("dataset", ""),
                label_mode=d.get("label_mode", "soft"),
                source_sha256=d.get("source_sha256", ""),
                edgeseg_version=d.get("edgeseg_version", ""),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: edgeseg metadata is damaged ({exc}); re-export the model") from None


def meta_from_checkpoint(ckpt, source_sha256: str = "") -> ModelMeta:
    """The metadata of a :class:`~edgeseg.models.checkpoint.Checkpoint`'s model."""
    card = ckpt.card
    cfg = card.model_config
    return ModelMeta(
        class_names=card.class_names,
        palette=card.palette,
        res=tuple(card.res),
        kernel=card.kernel,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        ignore_index=card.ignore_index,
        native_res=cfg.input_res if cfg.refine != "none" else None,
        model_name=cfg.name,
        dataset=card.dataset,
        label_mode=card.label_mode,
        source_sha256=source_sha256,
        edgeseg_version=card.version,
        extra={"dataset_root": card.dataset_root},
    )
