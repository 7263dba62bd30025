"""The one description of a model: its architecture (``ModelConfig``), the classes of its data
set (``DatasetInfo``), and how a file of it is run (input layout, outputs).

A checkpoint, an ONNX model, an OpenVINO IR and a TensorRT engine's fingerprint all carry it,
written by ``to_plain`` and read by ``ModelMeta.read`` (edgeseg.schema). Files written before
this record existed (edgeseg 0.1.0: flat ``edgeseg.<field>`` keys) are read by
``_from_flat`` below, and tested on files that version wrote (tests/fixtures/v0_1_0).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace

from edgeseg import __version__
from edgeseg.data.base import IGNORE_INDEX, MAX_CLASSES, DatasetInfo, default_palette
from edgeseg.errors import ModelFileError
from edgeseg.fileio import is_integer, is_number, parse_json
from edgeseg.limits import size_problem
from edgeseg.models.base import DEFAULT_MEAN, DEFAULT_STD, ModelConfig
from edgeseg.records import from_plain, to_plain

META_FORMAT = "edgeseg-meta-v2"
PROPS_KEY = "edgeseg.meta"  # the ONNX metadata_props key (and IR rt_info / fingerprint entry) holding the record
INPUT_LAYOUTS = ("nchw", "nhwc-uint8")
MODEL_OUTPUTS = ("logits", "labels")


@dataclass(frozen=True)
class ModelMeta:
    model: ModelConfig
    data: DatasetInfo
    label_mode: str = "soft"
    dataset_kind: str = ""  # the --dataset it was trained with (synthetic, camvid, folder ...)
    dataset_root: str | None = None  # where the training data lived (checkpoints only)
    input_layout: str = "nchw"  # or "nhwc-uint8" (normalisation inside the graph)
    outputs: tuple[str, ...] = ("logits",)
    labels_size: tuple[int, int] | None = None  # (width, height) of an in-graph label output
    source_sha256: str = ""
    edgeseg_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.model.res is None or len(self.model.res) != 2:
            raise ModelFileError(f"model description: the network resolution is not recorded ({self.model.res})")
        for what, size in (("network resolution", self.model.res), ("native resolution", self.model.native_res),
                           ("label output size", self.labels_size)):
            problem = None if size is None else (size_problem(*size) if len(size) == 2 else f"{size} is not a width and a height")
            if problem:
                raise ModelFileError(f"model description: its {what} {problem}; the file is damaged")
        if self.model.num_classes != self.data.num_classes:
            raise ModelFileError(f"model description: the model predicts {self.model.num_classes} classes but names "
                                 f"{self.data.num_classes} ({', '.join(self.data.class_names[:6])}); the file is damaged")
        if self.input_layout not in INPUT_LAYOUTS:
            raise ModelFileError(f"model description: input layout '{self.input_layout}'; expected one of {', '.join(INPUT_LAYOUTS)}")
        problem = description_problem(self.model, self.data)
        if problem:
            raise ModelFileError(f"model description: {problem}; the file is damaged or not edgeseg's")

    # -- what the rest of edgeseg reads
    @property
    def res(self) -> tuple[int, int]:
        return tuple(self.model.res)

    @property
    def native_res(self) -> tuple[int, int] | None:
        return tuple(self.model.native_res) if self.model.refine != "none" and self.model.native_res else None

    @property
    def input_res(self) -> tuple[int, int]:
        """(width, height) of the image the model takes: the native frame or the network resolution."""
        return self.native_res or self.res

    @property
    def kernel(self) -> str:
        return self.model.kernel

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.model.mean)

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.model.std)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data.class_names)

    @property
    def palette(self):
        return tuple(self.data.palette)

    @property
    def ignore_index(self) -> int:
        return self.data.ignore_index

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def dataset(self) -> str:
        """The data set kind to read for this model: the one it was trained with, else its data set's name."""
        return self.dataset_kind or self.data.name

    @property
    def model_name(self) -> str:
        return self.model.name

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The model input's shape: NHWC uint8 frames or normalised NCHW float32."""
        w, h = self.input_res
        return (batch, h, w, 3) if self.input_layout == "nhwc-uint8" else (batch, 3, h, w)

    @property
    def input_dtype(self):
        import numpy as np

        return np.uint8 if self.input_layout == "nhwc-uint8" else np.float32

    def with_(self, **changes) -> "ModelMeta":
        return replace(self, **changes)

    def with_res(self, res: tuple[int, int]) -> "ModelMeta":
        return replace(self, model=replace(self.model, res=tuple(res)))

    # -- one writer, one reader
    def to_plain(self) -> dict:
        return {"format": META_FORMAT, **to_plain(self)}

    def to_props(self) -> dict[str, str]:
        """ONNX ``metadata_props``: one key holding the record as JSON."""
        return {PROPS_KEY: json.dumps(self.to_plain(), sort_keys=True)}

    @classmethod
    def read(cls, plain: dict, where: str) -> "ModelMeta":
        """The record from plain data written by :meth:`to_plain`."""
        with naming(where):
            return from_plain(cls, {k: v for k, v in plain.items() if k != "format"}, where)

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> "ModelMeta | None":
        """From ONNX ``metadata_props`` (or an IR's / fingerprint's copy of them); ``None`` when the
        file has no edgeseg metadata. Reads both this format and edgeseg 0.1.0's flat keys."""
        try:
            if PROPS_KEY in props:
                return cls.read(parse_json(props[PROPS_KEY]), where)
            flat = {k[len("edgeseg."):]: parse_json(v) for k, v in props.items() if k.startswith("edgeseg.")}
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: edgeseg metadata is damaged ({exc}); re-export the model") from None
        with naming(where):
            return _from_flat(flat, where) if flat else None

    @classmethod
    def foreign(cls, num_classes: int, res: tuple[int, int], input_layout: str, outputs: tuple[str, ...]) -> "ModelMeta":
        """What can be assumed of an ONNX model without edgeseg metadata."""
        names = tuple(f"class{i}" for i in range(num_classes))
        return cls(ModelConfig("", num_classes, res=tuple(res)), DatasetInfo("", names, default_palette(num_classes)),
                   input_layout=input_layout, outputs=outputs)


@contextlib.contextmanager
def naming(where: str):
    """A description refused as it is made ("model description: ...") names the file it came from."""
    try:
        yield
    except ModelFileError as exc:
        if str(exc).startswith("model description:"):
            raise ModelFileError(f"{where}: {exc}") from None
        raise


def description_problem(model: ModelConfig, data: DatasetInfo) -> str | None:
    """What in a model description could not be run as it says, or None: every field the runners,
    pre- and post-processing and the label writers read (class count, palette, void value,
    kernel, normalisation, output options)."""
    from edgeseg.data.resample import KERNELS
    from edgeseg.models.native import REFINES, UPSCALES

    n = model.num_classes
    if not is_integer(n) or not 1 <= n <= MAX_CLASSES:
        return f"{n} classes; expected 1 to {MAX_CLASSES} (label masks are 8-bit)"
    if not is_integer(data.ignore_index) or not n <= data.ignore_index <= 255:
        return f"void value {data.ignore_index} is {'a class' if is_integer(data.ignore_index) and 0 <= data.ignore_index < n else 'not a label value'}; expected {n} to 255"
    if len(data.palette) < n or any(len(c) != 3 or any(not is_integer(v) or not 0 <= v <= 255 for v in c) for c in data.palette):
        return f"a palette of {len(data.palette)} colours for {n} classes, or a colour that is not three values 0 to 255"
    if model.kernel not in KERNELS:
        return f"resampling kernel '{model.kernel}'; expected one of {', '.join(KERNELS)}"
    if model.refine not in REFINES or model.upscale not in UPSCALES:
        return f"refine '{model.refine}', upscale {model.upscale}; expected refine in {', '.join(REFINES)} and upscale in {UPSCALES}"
    for what, values in (("mean", model.mean), ("std", model.std)):
        if len(values) != 3 or any(not is_number(v) for v in values):
            return f"input {what} {tuple(values)}; expected three finite numbers"
    if any(v <= 0 for v in model.std):
        return f"input std {tuple(model.std)}; expected three numbers above 0"
    return None


def _stated_int(value) -> int:
    """An integer a file states (true, 2.9 and "3" are not): else ValueError, which the reader names."""
    if not is_integer(value):
        raise ValueError(f"expected an integer, found {value!r}")
    return value


def _from_flat(d: dict, where: str) -> ModelMeta:
    """edgeseg 0.1.0's ONNX metadata: one ``edgeseg.<field>`` key per field of its flat record."""
    try:
        names = tuple(str(n) for n in d["class_names"])
        res = tuple(int(v) for v in d["res"])
        extra = dict(d.get("extra", {}))
        native = tuple(d["native_res"]) if d.get("native_res") else None
        model = ModelConfig(str(d.get("model_name", "")), len(names), mean=tuple(d.get("mean", DEFAULT_MEAN)), std=tuple(d.get("std", DEFAULT_STD)),
                            refine="guided" if native else "none", res=res, native_res=native, kernel=str(d.get("kernel", "area")))
        data = DatasetInfo(str(d.get("dataset", "")), names, tuple(tuple(_stated_int(v) for v in c) for c in d["palette"]),
                           _stated_int(d.get("ignore_index", IGNORE_INDEX)))
        return ModelMeta(model, data, label_mode=str(d.get("label_mode", "soft")), dataset_root=extra.pop("dataset_root", None),
                         input_layout=str(d.get("input_layout", "nchw")), outputs=tuple(d.get("outputs", ("logits",))),
                         labels_size=tuple(d["labels_size"]) if d.get("labels_size") else None,
                         source_sha256=str(d.get("source_sha256", "")), edgeseg_version=str(d.get("edgeseg_version", "")), extra=extra)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: edgeseg metadata is damaged ({exc}); re-export the model") from None
