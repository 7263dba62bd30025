"""A test double of the ``tensorrt`` Python module for TensorRT 8.5, 10.x and 11.x.

It implements the API surface edgeseg uses, per generation, as the TensorRT Python
API reference and the 10.x -> 11.x migration guide describe it:

- 8.5: NetworkDefinitionCreationFlag.EXPLICIT_BATCH (required by the ONNX parser),
  BuilderFlag.FP16/INT8, ``config.int8_calibrator`` and the IInt8*Calibrator classes,
  the binding API (``num_bindings``, ``binding_is_input``, ``execute_async_v2``) next to
  named tensors (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``);
  ArgMax-style INT64 tensors become INT32.
- 10.x: EXPLICIT_BATCH deprecated and ignored, STRONGLY_TYPED opt-in (FP16/INT8 flags are
  an error on a strongly typed network), calibrators deprecated but present, binding API
  removed, INT64 kept.
- 11.x: no EXPLICIT_BATCH, STRONGLY_TYPED always on, no FP16/INT8 builder flags, no
  calibrators or ``int8_calibrator``, no ``platform_has_fast_fp16``.

Calls are recorded in ``module.calls``. A "plan" is a small header plus the ONNX model;
an execution context runs it with onnxruntime on *host* memory addresses, so the real
runner code (``set_tensor_address`` / bindings with ``data_ptr()``) runs unchanged.
"""

from __future__ import annotations

import atexit
import ctypes
import enum
import json
import os
import types

import numpy as np

GENERATIONS = {"8.5": "8.5.2.2", "10": "10.3.0.26", "11": "11.0.0.9"}
MAGIC = b"FAKETRT1"

# With EDGESEG_TRT_RECORD=FILE, every part of the tensorrt API that code touches through the double
# (module names, enum members, methods and attributes of its classes) is written to FILE at exit, as
# [generation major, owner, name] rows; tests/test_trt_bindings.py holds them against the real bindings.
RECORD = os.environ.get("EDGESEG_TRT_RECORD")
TOUCHED: set[tuple[int, str, str]] = set()
CALLS: set[tuple] = set()  # (major, owner, method, positional argument kinds, keyword names)
_REAL_NAME: dict[type, str] = {}  # the double's classes -> the real classes they stand for
if RECORD:
    atexit.register(lambda: open(RECORD, "w").write(json.dumps({"touched": sorted(TOUCHED),
                                                                  "calls": sorted([list(c[:3]) + [list(c[3]), list(c[4])] for c in CALLS])})))


def _kind(value) -> str:
    """How an argument looks to a pybind signature: a builtin type, an enum's name or a TensorRT class."""
    if value is None:
        return "None"
    if isinstance(value, enum.Enum):
        return type(value).__name__
    for cls in type(value).__mro__:
        if cls in _REAL_NAME:
            return _REAL_NAME[cls]
    for t in (bool, int, float, str, bytes, bytearray, memoryview, tuple, list, dict):
        if isinstance(value, t):
            return t.__name__
    return type(value).__name__


class _RecordingEnumType(enum.EnumType):
    def __getattribute__(cls, name):
        if RECORD and not name.startswith("_"):
            members = type.__getattribute__(cls, "_member_map_")
            if name in members and _from_edgeseg():
                TOUCHED.add((type.__getattribute__(cls, "_major"), type.__getattribute__(cls, "__name__"), name))
        return super().__getattribute__(name)


def _enum(major: int, name: str, members: dict[str, int]):
    """An IntEnum whose member accesses are recorded (values as in the real bindings)."""
    ns = _RecordingEnumType.__prepare__(name, (enum.IntEnum,))
    for key, value in members.items():
        ns[key] = value
    cls = _RecordingEnumType(name, (enum.IntEnum,), ns)
    type.__setattr__(cls, "_major", major)
    return cls


def _from_edgeseg(depth: int = 2) -> bool:
    """Whether the access comes from edgeseg's code (not from the double or the tests)."""
    import sys

    return sys._getframe(depth).f_globals.get("__name__", "").startswith("edgeseg.")


def _record_class(cls, major: int, real_name: str) -> None:
    """Record what edgeseg reads and writes on instances of ``cls``: the double's API, not the
    attributes edgeseg's own subclasses (loggers, calibrators) add."""
    own = {n for n in dir(cls) if not n.startswith("_")}
    get, set_ = cls.__getattribute__, cls.__setattr__

    def ours(self, name):
        return not name.startswith("_") and (name in own or type(self) is cls)

    def getattribute(self, name):
        value = get(self, name)  # probes of missing names (hasattr) raise here and are not recorded
        if ours(self, name) and _from_edgeseg():
            TOUCHED.add((major, real_name, name))
            if callable(value) and name in own and not isinstance(value, type):
                method = value

                def recorded(*args, **kwargs):
                    CALLS.add((major, real_name, name, tuple(_kind(a) for a in args), tuple(sorted(kwargs))))
                    return method(*args, **kwargs)

                return recorded
        return value

    def setattr_(self, name, value):
        if ours(self, name) and _from_edgeseg():
            TOUCHED.add((major, real_name, name))
        set_(self, name, value)

    cls.__getattribute__ = getattribute
    cls.__setattr__ = setattr_


class _RecordingModule(types.ModuleType):
    def __getattribute__(self, name):
        value = super().__getattribute__(name)
        if RECORD and not name.startswith("_") and name not in ("calls", "FAKE_DEVICE", "generation") and _from_edgeseg():
            TOUCHED.add((int(types.ModuleType.__getattribute__(self, "__version__").split(".")[0]), "tensorrt", name))
        return value


def make_tensorrt(version: str, device: str = "Fake GPU", dla_cores: int = 0, binding_order: str = "io") -> types.ModuleType:
    """``binding_order="reversed"`` gives 8.x engines binding indices in the reverse of the I/O
    tensor order (real engines may differ in order, e.g. with several profiles)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.FAKE_DEVICE = device

    def record(*item):
        trt.calls.append(item)

    # ------------------------------------------------------------------ enums
    # Values as in the real bindings (8.6.1 standing in for 8.5, 10.13, 11.4); tests/test_trt_bindings.py checks them.
    data_types = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5}
    if major >= 10:
        data_types.update(BF16=7, INT64=8)
    DataType = _enum(major, "DataType", data_types)
    TensorIOMode = _enum(major, "TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})

    flags = {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1} if major < 10 else (
        {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3} if major == 10 else
        {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2})
    NetworkDefinitionCreationFlag = _enum(major, "NetworkDefinitionCreationFlag", flags)

    if major < 10:
        builder_flags = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "STRICT_TYPES": 4, "REFIT": 5, "DISABLE_TIMING_CACHE": 6,
                         "TF32": 7, "SPARSE_WEIGHTS": 8, "OBEY_PRECISION_CONSTRAINTS": 10, "PREFER_PRECISION_CONSTRAINTS": 11,
                         "DIRECT_IO": 12}
    elif major == 10:
        builder_flags = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
                         "SPARSE_WEIGHTS": 7, "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10, "DIRECT_IO": 11,
                         "FP8": 15, "BF16": 17, "INT4": 22}
    else:
        builder_flags = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
                         "DIRECT_IO": 11}
    BuilderFlag = _enum(major, "BuilderFlag", builder_flags)
    MemoryPoolType = _enum(major, "MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2})
    DeviceType = _enum(major, "DeviceType", {"GPU": 0, "DLA": 1})

    class _Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    Severity = _Severity

    class ILogger:
        Severity = _Severity

        def __init__(self):
            pass

        def log(self, severity, msg):
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (Severity(i) for i in range(5))

        def __init__(self, min_severity=Severity.WARNING):
            super().__init__()
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    # ------------------------------------------------------------------ helpers
    onnx_to_trt = {1: DataType.FLOAT, 10: DataType.HALF, 2: DataType.UINT8, 3: DataType.INT8, 6: DataType.INT32,
                   7: DataType.INT64 if major >= 10 else DataType.INT32, 9: DataType.BOOL}
    np_types = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
                DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}
    if major >= 10:
        np_types[DataType.INT64] = np.int64

    def nptype(dtype):
        if dtype not in np_types:
            raise TypeError(f"Could not resolve TensorRT datatype to an equivalent numpy datatype: {dtype}")
        return np_types[dtype]

    def volume(shape):
        return int(np.prod(shape))

    class HostMemory:
        def __init__(self, data: bytes):
            self._data = bytes(data)
            self.nbytes = len(self._data)

        def __bytes__(self):
            return self._data

        def __buffer__(self, flags):
            return memoryview(self._data)

    class ParserError:
        def __init__(self, text):
            self._text = text

        def desc(self):
            return self._text

        def __str__(self):
            return self._text

    # ------------------------------------------------------------------ network and parser
    class NetworkDefinition:
        def __init__(self, flags_value):
            self.flags = flags_value
            self.onnx = None
            self.io = None

        def get_flag(self, flag):
            return bool(self.flags & (1 << int(flag)))

        @property
        def strongly_typed(self):
            return major >= 11 or (major == 10 and self.get_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED))

        @property
        def num_inputs(self):
            return len([t for t in self.io or [] if t["input"]])

        def get_input(self, i):
            t = [t for t in self.io if t["input"]][i]
            return types.SimpleNamespace(name=t["name"], shape=tuple(t["shape"]), dtype=DataType(t["dtype"]))

    class OptimizationProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 - the TensorRT argument names
            record("profile.set_shape", name, tuple(min), tuple(opt), tuple(max))
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    max_opset = {8: 17, 10: 20, 11: 22}[major]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.errors = []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            record("parser.parse", path)
            if major < 10 and not self.network.get_flag(NetworkDefinitionCreationFlag.EXPLICIT_BATCH):
                self.errors.append(ParserError("ONNX parser only supports networks with an explicit batch dimension"))
                return False
            try:
                proto = onnx.load_model_from_string(bytes(model))
            except Exception as exc:  # noqa: BLE001 - the double reports any decode failure
                self.errors.append(ParserError(f"Failed to parse ONNX model: {exc}"))
                return False
            opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
            if opset > max_opset:
                self.errors.append(ParserError(f"Unsupported ONNX opset {opset} (this parser supports up to {max_opset})"))
                return False
            self.network.onnx = bytes(model)
            self.network.io = _io_of(proto)
            return True

        def parse_from_file(self, path: str) -> bool:
            with open(path, "rb") as fh:
                return self.parse(fh.read(), path)

    def _dims(value_info):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]

    def _io_of(proto):
        inits = {i.name for i in proto.graph.initializer}
        ins = [{"name": v.name, "input": True, "shape": _dims(v), "dtype": int(onnx_to_trt[v.type.tensor_type.elem_type])}
               for v in proto.graph.input if v.name not in inits]
        outs = [{"name": v.name, "input": False, "shape": _dims(v), "dtype": int(onnx_to_trt[v.type.tensor_type.elem_type])}
                for v in proto.graph.output]
        return ins + outs

    # ------------------------------------------------------------------ config
    class TimingCache:
        def __init__(self, data: bytes):
            self.data = bytes(data) or b"fake-timing-cache"

        def serialize(self):
            return HostMemory(self.data + b"+")

        def combine(self, other, ignore_mismatch):
            return True

        def reset(self):
            return True

    config_attrs = {"default_device_type", "DLA_core"} | ({"int8_calibrator"} if major < 11 else set())

    class BuilderConfig:
        def __init__(self):
            object.__setattr__(self, "_flags", set())
            object.__setattr__(self, "_pools", {})
            object.__setattr__(self, "_timing", None)
            object.__setattr__(self, "default_device_type", DeviceType.GPU)
            object.__setattr__(self, "DLA_core", -1)
            if major < 11:
                object.__setattr__(self, "int8_calibrator", None)

        def __setattr__(self, name, value):
            if name not in config_attrs:
                raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}'")
            record("config." + name, value if name != "int8_calibrator" else type(value).__name__)
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool, size):
            record("config.set_memory_pool_limit", MemoryPoolType(pool).name, int(size))
            self._pools[pool] = int(size)

        def get_memory_pool_limit(self, pool):
            return self._pools.get(pool, 0)

        def set_flag(self, flag):
            flag = BuilderFlag(flag)
            record("config.set_flag", flag.name)
            self._flags.add(flag)

        def clear_flag(self, flag):
            self._flags.discard(BuilderFlag(flag))

        def get_flag(self, flag):
            return BuilderFlag(flag) in self._flags

        def add_optimization_profile(self, profile):
            record("config.add_optimization_profile", dict(profile.shapes))
            object.__setattr__(self, "_profiles", getattr(self, "_profiles", []) + [profile])
            return len(self._profiles) - 1

        def create_timing_cache(self, data):
            record("config.create_timing_cache", len(bytes(data)))
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            record("config.set_timing_cache", bool(ignore_mismatch))
            object.__setattr__(self, "_timing", cache)
            return True

        def get_timing_cache(self):
            return self._timing

    if major < 11:  # deprecated in 10.1 with the calibrators, removed in 11
        def set_calibration_profile(self, profile):
            record("config.set_calibration_profile", dict(profile.shapes))

        BuilderConfig.set_calibration_profile = set_calibration_profile

    # ------------------------------------------------------------------ calibrators (8.5, 10.x)
    if major < 11:
        class IInt8Calibrator:
            def __init__(self):
                self._base_initialised = True

        class IInt8EntropyCalibrator2(IInt8Calibrator):
            pass

        class IInt8EntropyCalibrator(IInt8Calibrator):
            pass

        class IInt8MinMaxCalibrator(IInt8Calibrator):
            pass

        class IInt8LegacyCalibrator(IInt8Calibrator):
            pass

        trt.IInt8Calibrator = IInt8Calibrator
        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        trt.IInt8EntropyCalibrator = IInt8EntropyCalibrator
        trt.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator
        trt.IInt8LegacyCalibrator = IInt8LegacyCalibrator

    tag = (major * 1000 + int(version.split(".")[1]) * 100 + int(version.split(".")[2])) if major < 10 else \
        (major * 10000 + int(version.split(".")[1]) * 100 + int(version.split(".")[2]))

    def _run_calibrator(calib, network, logger):
        if not getattr(calib, "_base_initialised", False):
            raise RuntimeError("calibrator subclass did not call the base __init__")
        cached = calib.read_calibration_cache()
        record("calibrator.read_calibration_cache", cached is not None)
        if cached is not None:
            header = bytes(cached).split(b"\n", 1)[0].decode()
            if header != f"TRT-{tag}-EntropyCalibration2":
                logger.log(Severity.WARNING, f"calibration cache header '{header}' does not match; skipping it")
            else:
                return True
        names = [t["name"] for t in network.io if t["input"]]
        amax = 0.0
        n = 0
        while True:
            ptrs = calib.get_batch(names)
            if not ptrs:
                break
            meta = next(t for t in network.io if t["input"])
            shape = [1 if d < 0 else d for d in meta["shape"]]
            arr = _host_view(ptrs[0], shape, nptype(DataType(meta["dtype"])))
            amax = max(amax, float(np.abs(arr).max()))
            n += 1
        record("calibrator.get_batch", n)
        if n == 0:
            logger.log(Severity.ERROR, "Calibration failure occurred with no scaling factors detected")
            return False
        scale = format(np.array([amax / 127.0], ">f4").view(">u4")[0], "x")
        calib.write_calibration_cache(f"TRT-{tag}-EntropyCalibration2\n{names[0]}: {scale}\n".encode())
        record("calibrator.write_calibration_cache")
        return True

    # ------------------------------------------------------------------ builder
    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.num_DLA_cores = dla_cores

        if major < 11:
            @property
            def platform_has_fast_fp16(self):
                return True

            @property
            def platform_has_fast_int8(self):
                return True

        def create_network(self, flags=0):
            record("builder.create_network", int(flags))
            return NetworkDefinition(int(flags))

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            import onnx

            record("builder.build_serialized_network")
            if network.onnx is None:
                self.logger.log(Severity.ERROR, "Network has no layers")
                return None
            proto = onnx.load_model_from_string(network.onnx)
            has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
            names = {f.name for f in config._flags}
            dynamic = [t["name"] for t in network.io if t["input"] and -1 in t["shape"]]
            if dynamic and not getattr(config, "_profiles", None):
                self.logger.log(Severity.ERROR, "Network has dynamic or shape inputs, but no optimization profile has been defined.")
                return None
            if network.strongly_typed and names & {"FP16", "INT8", "BF16"}:
                self.logger.log(Severity.ERROR, "BuilderFlag::kFP16/kINT8 is not compatible with a strongly typed network")
                return None
            calib = getattr(config, "int8_calibrator", None)
            if has_qdq and calib is not None:
                self.logger.log(Severity.ERROR, "Calibration and Q/DQ layers cannot be combined")
                return None
            if has_qdq and not network.strongly_typed and "INT8" not in names:
                self.logger.log(Severity.ERROR, "Network has Q/DQ layers but INT8 is not enabled")
                return None
            if "INT8" in names and not has_qdq:
                if calib is None:
                    self.logger.log(Severity.ERROR, "INT8 requested without Q/DQ layers or a calibrator")
                    return None
                if not _run_calibrator(calib, network, self.logger):
                    return None
            if config.default_device_type == DeviceType.DLA and "GPU_FALLBACK" not in names:
                self.logger.log(Severity.ERROR, "DLA without GPU fallback cannot run Resize")
                return None
            header = {"version": version, "device": trt.FAKE_DEVICE, "io": network.io, "flags": sorted(names),
                      "strongly_typed": network.strongly_typed}
            return HostMemory(MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)

    # ------------------------------------------------------------------ runtime
    def _host_view(ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(int(ptr))).view(dtype).reshape(shape)

    class Engine:
        def __init__(self, header, onnx_bytes):
            self.io = header["io"]
            self.bindings = list(reversed(self.io)) if binding_order == "reversed" else list(self.io)
            self.onnx = onnx_bytes
            self._session = None

        # named tensors (8.5 and newer)
        @property
        def num_io_tensors(self):
            return len(self.io)

        def get_tensor_name(self, i):
            return self.io[i]["name"]

        def _t(self, name):
            return next(t for t in self.io if t["name"] == name)

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if self._t(name)["input"] else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return tuple(self._t(name)["shape"])

        def get_tensor_dtype(self, name):
            return DataType(self._t(name)["dtype"])

        def create_execution_context(self):
            return Context(self)

        def _onnx_session(self):
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
            return self._session

    if major < 10:  # the binding API: deprecated in 8.5, removed in 10.0
        def _num_bindings(self):
            return len(self.io)

        Engine.num_bindings = property(_num_bindings)
        Engine.get_binding_name = lambda self, i: self.bindings[i]["name"]
        Engine.get_binding_index = lambda self, name: next(i for i, t in enumerate(self.bindings) if t["name"] == name)
        Engine.binding_is_input = lambda self, i: self.bindings[i]["input"]
        Engine.get_binding_shape = lambda self, i: tuple(self.bindings[i]["shape"])
        Engine.get_binding_dtype = lambda self, i: DataType(self.bindings[i]["dtype"])

    class Context:
        def __init__(self, engine):
            self.engine = engine
            self.addresses = {}
            self.shapes = {t["name"]: tuple(t["shape"]) for t in engine.io if t["input"]}

        def set_input_shape(self, name, shape):
            record("context.set_input_shape", name, tuple(shape))
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            t = self.engine._t(name)
            if t["input"]:
                return self.shapes[name]
            batch = next(iter(self.shapes.values()))[0]
            return tuple(batch if (i == 0 and d < 0) else d for i, d in enumerate(t["shape"]))

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = int(ptr)
            return True

        def _run(self, addresses):
            inp = next(t for t in self.engine.io if t["input"])
            shape = self.shapes[inp["name"]]
            x = _host_view(addresses[inp["name"]], shape, nptype(DataType(inp["dtype"]))).copy()
            sess = self.engine._onnx_session()
            outs = sess.run(None, {inp["name"]: x})
            for t, value in zip([t for t in self.engine.io if not t["input"]], outs):
                view = _host_view(addresses[t["name"]], value.shape, nptype(DataType(t["dtype"])))
                np.copyto(view, value.astype(view.dtype))
            return True

        def execute_async_v3(self, stream_handle):
            record("context.execute_async_v3", int(stream_handle))
            missing = [t["name"] for t in self.engine.io if t["name"] not in self.addresses]
            if missing:
                return False
            return self._run(self.addresses)

    if major < 10:
        def execute_async_v2(self, bindings, stream_handle):
            record("context.execute_async_v2", int(stream_handle))
            return self._run({t["name"]: bindings[i] for i, t in enumerate(self.engine.bindings)})

        def set_binding_shape(self, i, shape):
            self.shapes[self.engine.bindings[i]["name"]] = tuple(shape)
            return True

        def get_binding_shape(self, i):
            return self.get_tensor_shape(self.engine.bindings[i]["name"])

        Context.execute_async_v2 = execute_async_v2
        Context.set_binding_shape = set_binding_shape
        Context.get_binding_shape = get_binding_shape

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(Severity.ERROR, "Serialization assertion magicTagRead == kMAGIC_TAG failed.")
                return None
            head, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
            header = json.loads(head)
            if header["version"] != version:
                self.logger.log(Severity.ERROR, f"The engine plan file is not compatible with this version of TensorRT, "
                                                f"expecting library version {version} got {header['version']}, please rebuild.")
                return None
            if header["device"] != trt.FAKE_DEVICE:
                self.logger.log(Severity.ERROR, "The engine plan file is generated on an incompatible device, please rebuild.")
                return None
            return Engine(header, onnx_bytes)

    for name, obj in list(locals().items()):
        if name in {"DataType", "TensorIOMode", "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType",
                    "ILogger", "Logger", "Builder", "OnnxParser", "Runtime", "nptype", "volume"}:
            setattr(trt, name, obj)
    trt.IBuilderConfig = BuilderConfig
    trt.ICudaEngine = Engine
    trt.IExecutionContext = Context
    if RECORD:
        real_names = {"Builder": Builder, "IBuilderConfig": BuilderConfig, "INetworkDefinition": NetworkDefinition,
                      "IOptimizationProfile": OptimizationProfile, "OnnxParser": OnnxParser, "ITimingCache": TimingCache,
                      "IHostMemory": HostMemory, "ParserError": ParserError, "ICudaEngine": Engine, "IExecutionContext": Context,
                      "Runtime": Runtime, "Logger": Logger, "ILogger": ILogger}
        if major < 11:
            real_names["IInt8EntropyCalibrator2"] = trt.IInt8EntropyCalibrator2
        for real_name, cls in real_names.items():
            _REAL_NAME[cls] = real_name
            _record_class(cls, major, real_name)
        trt.__class__ = _RecordingModule
    return trt


# The double's classes under the real bindings' names (for the conformance test).
def double_classes(trt) -> dict:
    """Real class name -> the double's class, for every class a double module exposes or returns."""
    return {name: obj for name, obj in vars(trt).items() if isinstance(obj, type) and not issubclass(obj, enum.Enum)}
