"""What a deployed model carries besides weights: classes, normalisation, input size, kernel."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from edgeseg import __version__
from edgeseg.errors import ModelFileError


@dataclass(frozen=True)
class ModelMeta:
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    res: tuple[int, int]  # model input (width, height)
    kernel: str = "area"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
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
                mean=tuple(d.get("mean", (127.0,) * 3)),
                std=tuple(d.get("std", (128.0,) * 3)),
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


def meta_from_checkpoint(ckpt: dict, source_sha256: str = "") -> ModelMeta:
    cfg = ckpt["model_config"]
    n = int(cfg["num_classes"])
    names = tuple(ckpt.get("class_names") or [f"class{i}" for i in range(n)])
    palette = tuple(tuple(c) for c in ckpt.get("palette") or [])
    if len(palette) != n:
        from edgeseg.data.base import default_palette

        palette = default_palette(n)
    return ModelMeta(
        class_names=names,
        palette=palette,
        res=tuple(ckpt["res"]),
        kernel=ckpt.get("kernel", "area"),
        mean=tuple(cfg.get("mean", (127.0,) * 3)),
        std=tuple(cfg.get("std", (128.0,) * 3)),
        ignore_index=int(ckpt.get("ignore_index", 255)),
        native_res=tuple(cfg["native_res"]) if cfg.get("refine", "none") != "none" and cfg.get("native_res") else None,
        model_name=cfg["name"],
        dataset=ckpt.get("dataset", {}).get("name", ""),
        label_mode=ckpt.get("label_mode", "soft"),
        source_sha256=source_sha256,
        edgeseg_version=ckpt.get("version", ""),
        extra={"dataset_root": ckpt.get("dataset", {}).get("root")},
    )
