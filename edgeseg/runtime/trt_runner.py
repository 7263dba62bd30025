"""TensorRT runner: named tensors + ``execute_async_v3`` (8.5.1 and newer) or bindings +
``execute_async_v2`` (8.x), device buffers as torch CUDA tensors, one CUDA stream.

Engines are tied to a TensorRT version and a GPU; the fingerprint written beside
the engine is checked first so that a mismatch reads as "rebuild on the target"
rather than as a deserialisation failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.models.meta import ModelMeta
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.trt_api import TrtApi


def host_array(buf) -> np.ndarray:
    """A device buffer as a numpy array; bfloat16 (which numpy lacks) as float32."""
    import torch

    if buf.dtype == torch.bfloat16:
        buf = buf.float()
    return buf.cpu().numpy()


class TrtRunner(BaseRunner):
    backend = "tensorrt"
    default_device = "cuda"  # where I/O buffers live; the tests' TensorRT double runs on host memory

    def __init__(self, path: Path, meta: ModelMeta, fingerprint: dict, device: str = "cuda", api_mode: str = "auto"):
        super().__init__(meta, f"tensorrt:{Path(path).name}")
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.device = device
        self.api_mode = api_mode  # auto | tensors | bindings

    @classmethod
    def from_file(cls, path: str | Path, spec=None, api_mode: str = "auto", check: bool = True) -> "TrtRunner":
        """``spec``: a RunnerSpec (its device: auto or cuda[:N]); ``check=False`` skips the fingerprint's
        TensorRT and GPU check (tests of what TensorRT itself does with a foreign engine)."""
        from edgeseg.runtime import fingerprint

        device = getattr(spec, "device", "auto")
        device = cls.default_device if device == "auto" else device
        path = Path(path)
        fp = fingerprint.read_fingerprint(path)
        meta = ModelMeta.from_props(fp.get("meta", {}), str(path))
        if meta is None:
            raise ModelFileError(f"{path}: its fingerprint has no model metadata; rebuild with 'edgeseg export --trt'")
        fingerprint.check_engine_file(path, fp)
        if check:
            fingerprint.check_fingerprint(path, fp, TrtApi.load().trt.__version__, fingerprint.gpu_info())
        return cls(path, meta, fp, device, api_mode)

    def activate_impl(self) -> None:
        import torch

        self.api = TrtApi.load()
        trt = self.api.trt
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("TensorRT engines need a CUDA GPU visible to PyTorch")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"{self.path}: TensorRT {trt.__version__} cannot deserialise this engine; rebuild it on this machine")
        self.context = self.engine.create_execution_context()
        self.tensors = self.api.io_tensors(self.engine)
        self.use_v3 = self.api.use_tensor_api(self.context, self.api_mode)
        self.stream = torch.cuda.Stream() if self.device.startswith("cuda") else None
        self.inputs = [t for t in self.tensors if t.is_input]
        self.outputs = [t for t in self.tensors if not t.is_input]
        if len(self.inputs) != 1:
            raise ModelFileError(f"{self.path}: expected one input tensor, found {len(self.inputs)}")
        batch = self.inputs[0].shape[0]
        self.fixed_batch = batch if batch > 0 else None
        self.max_batch = int(self.fingerprint.get("build_options", {}).get("max_batch", 1))

    def _output_shape(self, t, batch: int) -> tuple[int, ...]:
        if self.use_v3:
            shape = tuple(self.context.get_tensor_shape(t.name))
        else:
            shape = tuple(self.context.get_binding_shape(t.index))
        return tuple(batch if (i == 0 and d < 0) else d for i, d in enumerate(shape))

    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import contextlib

        import torch

        inp = self.inputs[0]
        if -1 in inp.shape and x.shape[0] > self.max_batch:
            raise ConfigError(f"{self.path.name}: engine built for batches up to {self.max_batch}; got {x.shape[0]} (rebuild with --max-batch)")
        # copies and allocations on the engine's stream, so TensorRT never reads a buffer still being filled
        on_stream = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with on_stream:
            return self._execute(x, inp)

    def _execute(self, x: np.ndarray, inp) -> dict[str, np.ndarray]:
        import torch

        x_dev = torch.from_numpy(x).to(self.device).to(self.api.torch_dtype(inp.dtype)).contiguous()
        if -1 in inp.shape:
            ok = (self.context.set_input_shape(inp.name, tuple(x.shape)) if self.use_v3
                  else self.context.set_binding_shape(inp.index, tuple(x.shape)))
            if ok is False:  # the bindings report a shape outside the optimisation profile this way, not by raising
                raise ConfigError(f"{self.path.name}: TensorRT refused input shape {tuple(x.shape)} for '{inp.name}' "
                                  "(outside the engine's optimisation profile; rebuild with a larger --max-batch)")
        outs = {t.name: torch.empty(self._output_shape(t, x.shape[0]), dtype=self.api.torch_dtype(t.dtype), device=self.device)
                for t in self.outputs}
        handle = self.stream.cuda_stream if self.stream is not None else 0
        if self.use_v3:
            for name, buf in [(inp.name, x_dev), *outs.items()]:
                if self.context.set_tensor_address(name, int(buf.data_ptr())) is False:
                    raise ModelFileError(f"{self.path.name}: TensorRT refused the buffer address of tensor '{name}'")
            ok = self.context.execute_async_v3(handle)
        else:
            bindings = [0] * len(self.tensors)
            bindings[inp.index] = int(x_dev.data_ptr())
            for t in self.outputs:
                bindings[t.index] = int(outs[t.name].data_ptr())
            ok = self.context.execute_async_v2(bindings, handle)
        if self.stream is not None:
            self.stream.synchronize()
        if not ok:
            raise ModelFileError(f"{self.path}: TensorRT execution failed")
        return self.named_outputs(list(outs), [host_array(buf) for buf in outs.values()])

    def describe_impl(self) -> dict:
        return {"device": self.device, "precision": self.fingerprint.get("precision")}

    def deactivate_impl(self) -> None:
        self.context = self.engine = self.runtime = None
