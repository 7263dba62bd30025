"""Every TensorRT version difference edgeseg cares about, in one place.

Supported: 8.5/8.6 (JetPack 5), 10.x (JetPack 6 and 7, desktop) and 11.x.
What differs (TensorRT Python API docs, migration guide 10.x -> 11.x):

- network flags: EXPLICIT_BATCH is required before 10, deprecated and ignored in 10,
  gone in 11; STRONGLY_TYPED exists from 10 (opt-in) and is always on in 11;
- precision: BuilderFlag.FP16/INT8 exist until 10.x and are removed in 11, where the
  ONNX model's own types decide (FP16 ONNX model, Q/DQ for INT8);
- implicit INT8 (calibrators, ``config.int8_calibrator``): deprecated in 10.1, removed in 11;
- workspace: ``set_memory_pool_limit`` (8.4+);
- I/O: the binding API (``num_bindings``, ``execute_async_v2``) until 8.6, removed in 10;
  named tensors (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``) from 8.5;
- DLA: configured the same way in every generation; available where ``builder.num_DLA_cores`` > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from edgeseg.errors import ConfigError, MissingDependencyError


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in text.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)  # type: ignore[return-value]


@dataclass(frozen=True)
class IOTensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: object  # trt.DataType
    index: int  # binding index


@dataclass
class TrtApi:
    trt: ModuleType

    @classmethod
    def load(cls) -> "TrtApi":
        try:
            import tensorrt
        except ImportError as exc:
            raise MissingDependencyError(
                f"TensorRT is not installed ({exc}); install it with: pip install \"edgeseg[trt]\" "
                "on a desktop GPU machine, or use the TensorRT that ships with JetPack on a Jetson"
            ) from None
        return cls(tensorrt)

    # ------------------------------------------------------------------ facts
    @property
    def version(self) -> tuple[int, int, int]:
        return parse_version(self.trt.__version__)

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def version_tag(self) -> int:
        """The number in a calibration cache header: 8501 for 8.5.1, 100300 for 10.3.0."""
        major, minor, patch = self.version
        return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch

    @property
    def has_precision_flags(self) -> bool:
        return hasattr(self.trt.BuilderFlag, "FP16") and hasattr(self.trt.BuilderFlag, "INT8")

    @property
    def supports_implicit_int8(self) -> bool:
        return hasattr(self.trt.BuilderFlag, "INT8") and hasattr(self.trt, "IInt8EntropyCalibrator2")

    @property
    def always_strongly_typed(self) -> bool:
        return self.major >= 11

    # ------------------------------------------------------------------ building
    def create_network(self, builder, strongly_typed: bool):
        flags = 0
        F = self.trt.NetworkDefinitionCreationFlag
        if self.major < 10:
            flags |= 1 << int(F.EXPLICIT_BATCH)
        elif strongly_typed and self.major == 10:
            if not hasattr(F, "STRONGLY_TYPED"):
                raise ConfigError(f"TensorRT {self.trt.__version__} has no strongly typed networks")
            flags |= 1 << int(F.STRONGLY_TYPED)
        return builder.create_network(flags)

    def set_workspace(self, config, nbytes: int) -> None:
        config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(nbytes))

    def allow_fp16(self, config) -> None:
        """Let the builder choose FP16 kernels (weakly typed networks only)."""
        if not self.has_precision_flags:
            raise ConfigError(f"TensorRT {self.trt.__version__} has no FP16 builder flag; build from an FP16 ONNX model instead")
        config.set_flag(self.trt.BuilderFlag.FP16)

    def allow_int8(self, config) -> None:
        """Weakly typed networks with Q/DQ (or a calibrator) need the INT8 flag; strongly typed ones must not set it."""
        if self.has_precision_flags:
            config.set_flag(self.trt.BuilderFlag.INT8)

    def set_calibrator(self, config, calibrator, profile=None) -> None:
        if not self.supports_implicit_int8:
            raise ConfigError(
                f"TensorRT {self.trt.__version__} removed implicit INT8 calibration; use --int8-mode explicit (Q/DQ model)"
            )
        config.set_flag(self.trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if profile is not None:  # a dynamic-batch network calibrates with this profile
            config.set_calibration_profile(profile)

    def set_dla(self, builder, config, core: int) -> None:
        """DLA where the device has DLA cores, whatever the version (11.4.1 restored it on Jetson AGX Orin;
        its networks are strongly typed, so the precision comes from the model, not from flags)."""
        available = int(getattr(builder, "num_DLA_cores", 0))
        if not 0 <= core < available:
            raise ConfigError(f"--dla {core}: this device has {available} DLA core(s)")
        config.default_device_type = self.trt.DeviceType.DLA
        config.DLA_core = core
        config.set_flag(self.trt.BuilderFlag.GPU_FALLBACK)

    def load_timing_cache(self, config, data: bytes) -> None:
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, False)

    def save_timing_cache(self, config) -> bytes:
        return bytes(config.get_timing_cache().serialize())

    def calibrator_base(self):
        if not self.supports_implicit_int8:
            raise ConfigError(f"TensorRT {self.trt.__version__} has no INT8 calibrators; use --int8-mode explicit")
        return self.trt.IInt8EntropyCalibrator2

    # ------------------------------------------------------------------ running
    def io_tensors(self, engine) -> list[IOTensor]:
        trt = self.trt
        out = []
        if hasattr(engine, "num_io_tensors"):
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                # The binding API (8.x) addresses tensors by binding index, which need not follow the I/O tensor order.
                index = engine.get_binding_index(name) if hasattr(engine, "get_binding_index") else i
                out.append(IOTensor(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                    tuple(engine.get_tensor_shape(name)), engine.get_tensor_dtype(name), index))
        else:  # before 8.5
            for i in range(engine.num_bindings):
                out.append(IOTensor(engine.get_binding_name(i), engine.binding_is_input(i),
                                    tuple(engine.get_binding_shape(i)), engine.get_binding_dtype(i), i))
        return out

    def use_tensor_api(self, context, requested: str = "auto") -> bool:
        """Named tensors + execute_async_v3 from 8.5.1 on; the binding API before, or on request (8.x)."""
        has_v3 = hasattr(context, "execute_async_v3") and hasattr(context, "set_tensor_address")
        has_v2 = hasattr(context, "execute_async_v2")
        if requested == "tensors" or (requested == "auto" and has_v3 and self.version >= (8, 5, 1)):
            if not has_v3:
                raise ConfigError(f"TensorRT {self.trt.__version__} has no named-tensor execution (execute_async_v3)")
            return True
        if not has_v2:
            raise ConfigError(f"TensorRT {self.trt.__version__} removed the binding API (execute_async_v2); it needs named tensors")
        return False

    def torch_dtype(self, dtype):
        import torch

        trt = self.trt
        table = {"FLOAT": torch.float32, "HALF": torch.float16, "INT8": torch.int8, "INT32": torch.int32,
                 "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8, "BF16": torch.bfloat16}
        for name, tdtype in table.items():
            if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
                return tdtype
        raise ConfigError(f"TensorRT tensor type {dtype} has no PyTorch equivalent")
