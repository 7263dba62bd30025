"""TensorRT build and run paths against a test double of the tensorrt module (8.5, 10.x, 11.x).

Real-GPU checks live in test_runtime.py (marked gpu) and run wherever tensorrt imports.
"""

import json
import sys

import numpy as np
import pytest
from trt_double import GENERATIONS, make_tensorrt

from conftest import export

from edgeseg import runtime
from edgeseg.errors import ConfigError, MissingDependencyError, ModelFileError
from edgeseg.export import OnnxOptions
from edgeseg.export.int8 import Int8Options
from edgeseg.export.trt_build import TrtOptions, build_engine
from edgeseg.runtime.fingerprint import read_fingerprint
from edgeseg.runtime.trt_runner import TrtRunner

FAKE_GPU = {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None}


@pytest.fixture(scope="module")
def models(tiny_checkpoint, shared_folder, tmp_path_factory):
    """model.onnx, model.int8.onnx and calibration.cache of the tiny model (no TensorRT involved)."""
    out = tmp_path_factory.mktemp("trt-models")
    export(tiny_checkpoint, out, OnnxOptions(), verify=False,
                 int8=Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0))
    from edgeseg.runtime.ort_runner import meta_from_graph, read_onnx

    meta = meta_from_graph(read_onnx(out / "model.onnx"), out / "model.onnx", strict=True)
    return {"fp32": out / "model.onnx", "int8": out / "model.int8.onnx", "cache": out / "calibration.cache", "meta": meta, "dir": out}


def install(monkeypatch, version, **kw):
    trt = make_tensorrt(version, **kw)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")  # the double runs engines on host memory
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: dict(FAKE_GPU))
    return trt


@pytest.fixture(params=sorted(GENERATIONS))
def trt(request, monkeypatch):
    mod = install(monkeypatch, GENERATIONS[request.param], dla_cores=2)
    mod.generation = request.param
    return mod


def calls(trt, name):
    return [c[1:] for c in trt.calls if c[0] == name]


def run_engine(path, x, api_mode="auto"):
    with TrtRunner.from_file(path, api_mode=api_mode) as runner:
        return runner.infer(x)


def reference(models, path, x):
    with runtime.load(path, device="cpu") as runner:
        return runner.infer(x)


def sample_input(models, batch=2):
    return np.random.default_rng(0).standard_normal((batch, 3, 36, 48)).astype(np.float32)


def test_fp32_engine_builds_and_runs(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    result = build_engine(models["fp32"], engine, TrtOptions(precision="fp32", workspace_gb=1.5), meta=models["meta"])
    (flags,) = calls(trt, "builder.create_network")
    F = trt.NetworkDefinitionCreationFlag
    if trt.generation == "8.5":
        assert flags == (1 << int(F.EXPLICIT_BATCH),)  # required by the 8.x ONNX parser
    else:
        assert flags == (0,)  # 10: EXPLICIT_BATCH is implied; 11: every network is strongly typed
    assert calls(trt, "config.set_memory_pool_limit") == [("WORKSPACE", int(1.5 * (1 << 30)))]
    assert calls(trt, "config.set_flag") == []
    fp = json.loads((tmp_path / "model.engine.json").read_text())
    assert fp == result["fingerprint"] == read_fingerprint(engine)
    assert fp["tensorrt"] == trt.__version__ and fp["gpu"] == "Fake GPU" and fp["compute_capability"] == "8.7"
    assert fp["precision"] == "fp32" and fp["input_shape"] == [1, 3, 36, 48] and len(fp["onnx_sha256"]) == 64
    assert fp["trtexec"].startswith("trtexec --onnx=") and "--memPoolSize=workspace:1536M" in fp["trtexec"]
    x = sample_input(models)
    out = run_engine(engine, x)
    np.testing.assert_allclose(out["logits"], reference(models, models["fp32"], x)["logits"], atol=1e-5)
    assert calls(trt, "context.execute_async_v3"), "named tensors + execute_async_v3 on every generation from 8.5.1"


def test_fp16_engine(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    build_engine(models["fp32"], engine, TrtOptions(precision="fp16"), meta=models["meta"])
    fp = read_fingerprint(engine)
    if trt.generation == "11":
        # no FP16 flag: the precision is the model's own, an FP16 ONNX model with float32 I/O
        assert calls(trt, "config.set_flag") == [] and fp["onnx"] == "model.fp16.onnx" and fp["strongly_typed"]
        assert (engine.parent / "model.fp16.onnx").is_file()  # written beside the engine it was built for
    else:
        assert calls(trt, "config.set_flag") == [("FP16",)] and fp["onnx"] == "model.onnx" and "--fp16" in fp["trtexec"]
    x = sample_input(models)
    got, ref = run_engine(engine, x)["logits"], reference(models, models["fp32"], x)["logits"]
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.99


def test_explicit_int8_engine_from_the_qdq_model(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    opts = TrtOptions(precision="int8", int8_mode="explicit")
    build_engine(models["fp32"], engine, opts, qdq_path=models["int8"], meta=models["meta"])
    fp = read_fingerprint(engine)
    assert fp["onnx"] == "model.int8.onnx" and fp["int8_mode"] == "explicit"
    flags = {c[0] for c in calls(trt, "config.set_flag")}
    if trt.generation == "11":
        assert flags == set() and not calls(trt, "config.int8_calibrator")
    else:  # weakly typed: Q/DQ needs the INT8 flag
        assert flags == {"INT8"}
        build_engine(models["fp32"], tmp_path / "h.engine", TrtOptions(precision="int8", int8_mode="explicit", fp16_fallback=True),
                     qdq_path=models["int8"], meta=models["meta"])
        assert {c[0] for c in calls(trt, "config.set_flag")} == {"INT8", "FP16"}  # float-fallback layers may use FP16
    x = sample_input(models)
    np.testing.assert_allclose(run_engine(engine, x)["logits"], reference(models, models["int8"], x)["logits"], atol=1e-4)


def test_auto_int8_mode_picks_by_version(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    build_engine(models["fp32"], engine, TrtOptions(precision="int8"), qdq_path=models["int8"], calib_cache=models["cache"],
                 meta=models["meta"])
    assert read_fingerprint(engine)["int8_mode"] == ("implicit" if trt.generation == "8.5" else "explicit")


def test_implicit_int8_reads_the_calibration_cache(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    opts = TrtOptions(precision="int8", int8_mode="implicit")
    if trt.generation == "11":
        with pytest.raises(ConfigError, match="removed implicit INT8"):
            build_engine(models["fp32"], engine, opts, calib_cache=models["cache"], meta=models["meta"])
        return
    fp = build_engine(models["fp32"], engine, opts, calib_cache=models["cache"], meta=models["meta"])["fingerprint"]
    assert calls(trt, "config.int8_calibrator") == [("EdgesegCalibrator",)]
    # the cache (rewritten under this version's header) is accepted: no calibration batches on the device
    assert calls(trt, "calibrator.read_calibration_cache") == [(True,)] and not calls(trt, "calibrator.get_batch")
    assert fp["onnx"] == "model.onnx" and f"--calib={models['cache']}" in fp["trtexec"]
    with pytest.raises(ConfigError, match="not a Q/DQ model"):
        build_engine(models["int8"], engine, opts, calib_cache=models["cache"], meta=models["meta"])


def test_on_device_calibration_writes_a_cache(trt, models, tmp_path):
    if trt.generation == "11":
        pytest.skip("TensorRT 11 has no calibrators")
    import shutil

    from edgeseg.calibration.trt_cache import read_trt_cache

    cache = tmp_path / "device.cache"
    inputs = sample_input(models, batch=4)
    shutil.copy(models["cache"], cache)
    fp = build_engine(models["fp32"], tmp_path / "e.engine", TrtOptions(precision="int8", int8_mode="implicit"), calib_cache=cache,
                      calib_inputs=inputs, meta=models["meta"])["fingerprint"]
    assert calls(trt, "calibrator.read_calibration_cache") == [(False,)] and calls(trt, "calibrator.get_batch") == [(4,)]
    assert fp["calibration_batches_on_device"] == 4
    header, scales = read_trt_cache(cache)
    assert header.startswith("TRT-") and scales["input"] == pytest.approx(float(np.abs(inputs).max()) / 127, rel=1e-5)


def test_timing_cache_is_read_and_written(trt, models, tmp_path):
    cache = tmp_path / "timing.cache"
    build_engine(models["fp32"], tmp_path / "a.engine", TrtOptions(precision="fp32", timing_cache=str(cache)), meta=models["meta"])
    assert cache.read_bytes() and calls(trt, "config.set_timing_cache") == [(False,)]
    first = cache.read_bytes()
    build_engine(models["fp32"], tmp_path / "b.engine", TrtOptions(precision="fp32", timing_cache=str(cache)), meta=models["meta"])
    assert calls(trt, "config.create_timing_cache")[-1] == (len(first),) and cache.read_bytes() != first


def test_dynamic_batch_engines_get_an_optimisation_profile(trt, tiny_checkpoint, tmp_path):
    export(tiny_checkpoint, tmp_path, OnnxOptions(dynamic_batch=True), verify=False)
    from edgeseg.runtime.ort_runner import meta_from_graph, read_onnx

    meta = meta_from_graph(read_onnx(tmp_path / "model.onnx"), tmp_path / "model.onnx", strict=True)
    engine = tmp_path / "d.engine"
    build_engine(tmp_path / "model.onnx", engine, TrtOptions(precision="fp32", max_batch=4), meta=meta)
    assert calls(trt, "profile.set_shape") == [("input", (1, 3, 36, 48), (1, 3, 36, 48), (4, 3, 36, 48))]
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 36, 48)).astype(np.float32)
        np.testing.assert_allclose(run_engine(engine, x)["logits"], reference(None, tmp_path / "model.onnx", x)["logits"], atol=1e-5)
    with pytest.raises(ConfigError, match="batches up to 4"):
        run_engine(engine, np.zeros((5, 3, 36, 48), np.float32))
    if trt.generation != "11":  # implicit INT8 calibrates through the same profile
        export(tiny_checkpoint, tmp_path / "q", OnnxOptions(dynamic_batch=True), verify=False,
                     int8=Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0))
        build_engine(tmp_path / "q" / "model.onnx", tmp_path / "i.engine", TrtOptions(precision="int8", int8_mode="implicit", max_batch=4),
                     calib_cache=tmp_path / "q" / "calibration.cache", meta=meta)
        assert len(calls(trt, "config.set_calibration_profile")) == 1


def test_dla(trt, models, tmp_path):
    # DLA is decided by the device's DLA cores, not by the TensorRT version: 11.4.1 restores it on
    # Jetson AGX Orin (strongly typed: the precision comes from the FP16 ONNX model, no flags)
    opts = TrtOptions(precision="fp16", dla_core=1)
    fp = build_engine(models["fp32"], tmp_path / "d.engine", opts, meta=models["meta"])["fingerprint"]
    assert calls(trt, "config.DLA_core") == [(1,)]
    assert calls(trt, "config.default_device_type") == [(trt.DeviceType.DLA,)]
    assert ("GPU_FALLBACK",) in calls(trt, "config.set_flag") and "--useDLACore=1" in fp["trtexec"]
    if trt.generation == "11":
        assert not {("FP16",), ("INT8",)} & set(calls(trt, "config.set_flag"))
    with pytest.raises(ConfigError, match="--dla 5: this device has 2 DLA core"):
        build_engine(models["fp32"], tmp_path / "e.engine", TrtOptions(dla_core=5), meta=models["meta"])
    with pytest.raises(ConfigError, match="--dla runs FP16 or INT8"):
        build_engine(models["fp32"], tmp_path / "f.engine", TrtOptions(precision="fp32", dla_core=0), meta=models["meta"])


def test_binding_api_path(trt, models, tmp_path):
    engine = tmp_path / "model.engine"
    build_engine(models["fp32"], engine, TrtOptions(precision="fp32"), meta=models["meta"])
    x = sample_input(models)
    if trt.generation == "8.5":
        out = run_engine(engine, x, api_mode="bindings")
        assert calls(trt, "context.execute_async_v2") and not calls(trt, "context.execute_async_v3")
        np.testing.assert_allclose(out["logits"], reference(models, models["fp32"], x)["logits"], atol=1e-5)
    else:
        with pytest.raises(ConfigError, match="removed the binding API"):
            run_engine(engine, x, api_mode="bindings")


def test_label_output_dtype_follows_the_engine(trt, tiny_checkpoint, tmp_path):
    export(tiny_checkpoint, tmp_path, OnnxOptions(output="labels"), verify=False)
    from edgeseg.runtime.ort_runner import meta_from_graph, read_onnx

    meta = meta_from_graph(read_onnx(tmp_path / "model.onnx"), tmp_path / "model.onnx", strict=True)
    build_engine(tmp_path / "model.onnx", tmp_path / "l.engine", TrtOptions(precision="fp32"), meta=meta)
    x = np.zeros((1, 3, 36, 48), np.float32)
    out = run_engine(tmp_path / "l.engine", x)
    assert out["labels"].dtype == np.uint8 and out["labels"].shape == (1, 36, 48)


def test_engines_from_another_version_or_gpu_are_refused(trt, models, tmp_path, monkeypatch):
    engine = tmp_path / "model.engine"
    build_engine(models["fp32"], engine, TrtOptions(precision="fp32"), meta=models["meta"])
    other = "10.3.0.26" if trt.generation != "10" else "8.5.2.2"
    install(monkeypatch, other)
    with pytest.raises(ModelFileError, match=f"built with TensorRT {trt.__version__}.*this machine has TensorRT {other}.*rebuild it on the target"):
        TrtRunner.from_file(engine)
    install(monkeypatch, trt.__version__, device="Another GPU")
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Another GPU", "compute_capability": "7.2", "cuda": None})
    with pytest.raises(ModelFileError, match="compute 8.7.*compute 7.2.*rebuild"):
        TrtRunner.from_file(engine)
    runner = TrtRunner.from_file(engine, check=False)  # past the fingerprint, TensorRT itself refuses
    with pytest.raises(ModelFileError, match="cannot deserialise"):
        runner.activate()


def test_eval_and_export_cli_with_engines(trt, cli_run, tiny_checkpoint, tmp_path):
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--trt", "--fp16", "--verify-images", "2", "--quiet")
    assert code == 0, err
    assert "TensorRT fp16" in err and json.loads((tmp_path / "parity.engine.json").read_text())["passed"]
    code, out, err = cli_run("eval", "--model", tmp_path / "model.engine", "--reference", tiny_checkpoint, "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["backend"] == "tensorrt" and result["parity"]["pixel_agreement"] > 99
    code, out, err = cli_run("bench", "--model", tmp_path / "model.engine", "--iters", "2", "--warmup", "0", "--quiet")
    assert code == 0 and "tensorrt" in out
    code, _, err = cli_run("eval", "--model", tmp_path / "model.engine", "--device", "cpu")
    assert code == 2 and "CUDA GPU" in err


def test_missing_tensorrt_names_the_extra(monkeypatch, cli_run, tiny_checkpoint, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    from edgeseg.runtime.trt_api import TrtApi

    with pytest.raises(MissingDependencyError, match=r'pip install "edgeseg\[trt\]".*JetPack'):
        TrtApi.load()
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--trt", "--no-verify", "--quiet")
    assert code == 2 and 'edgeseg[trt]' in err and "Traceback" not in err


# ------------------------------------------------------------------ fixes from a review against NVIDIA's sources
def test_binding_indices_come_from_the_engine_not_the_tensor_order(models, tmp_path, monkeypatch):
    trt = install(monkeypatch, GENERATIONS["8.5"], binding_order="reversed")
    engine = tmp_path / "model.engine"
    build_engine(models["fp32"], engine, TrtOptions(precision="fp32"), meta=models["meta"])
    x = sample_input(models)
    out = run_engine(engine, x, api_mode="bindings")
    assert calls(trt, "context.execute_async_v2")
    np.testing.assert_allclose(out["logits"], reference(models, models["fp32"], x)["logits"], atol=1e-5)


@pytest.mark.parametrize("method", ["set_input_shape", "set_tensor_address"])
def test_a_refused_shape_or_address_is_an_error_not_garbage(trt, tiny_checkpoint, tmp_path, monkeypatch, method):
    if trt.generation == "8.5" and method == "set_input_shape":
        pytest.skip("8.5 engines here run named tensors only with a static batch")
    export(tiny_checkpoint, tmp_path, OnnxOptions(dynamic_batch=True), verify=False)
    from edgeseg.runtime.ort_runner import meta_from_graph, read_onnx

    meta = meta_from_graph(read_onnx(tmp_path / "model.onnx"), tmp_path / "model.onnx", strict=True)
    build_engine(tmp_path / "model.onnx", tmp_path / "d.engine", TrtOptions(precision="fp32", max_batch=4), meta=meta)
    monkeypatch.setattr(trt.IExecutionContext, method, lambda self, *a: False)
    with pytest.raises((ConfigError, ModelFileError), match="TensorRT refused (input shape|the buffer address)"):
        run_engine(tmp_path / "d.engine", np.zeros((2, 3, 36, 48), np.float32), api_mode="tensors")


def test_bfloat16_outputs_reach_numpy_as_float32():
    import torch

    from edgeseg.runtime.trt_runner import host_array

    buf = torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16)
    arr = host_array(buf)
    assert arr.dtype == np.float32 and arr.tolist() == [[1.5, -2.0]]
    with pytest.raises(TypeError):  # what the runner did before: numpy has no bfloat16
        buf.numpy()


def test_an_engine_swapped_beside_a_valid_fingerprint_is_refused(trt, models, tmp_path):
    a, b = tmp_path / "a.engine", tmp_path / "b.engine"
    fp = build_engine(models["fp32"], a, TrtOptions(precision="fp32"), meta=models["meta"])["fingerprint"]
    build_engine(models["int8"], b, TrtOptions(precision="int8", int8_mode="explicit" if trt.generation != "8.5" else "auto"),
                 qdq_path=models["int8"], meta=models["meta"]) if trt.generation != "8.5" else \
        build_engine(models["fp32"], b, TrtOptions(precision="fp16"), meta=models["meta"])
    assert len(fp["engine_sha256"]) == 64
    TrtRunner.from_file(a)  # the genuine pair loads
    a.write_bytes(b.read_bytes())
    with pytest.raises(ModelFileError, match="not the one a.engine.json describes"):
        TrtRunner.from_file(a)


def test_implicit_calibration_feeds_float32_even_to_a_uint8_model(monkeypatch, tmp_path):
    import torch

    from edgeseg.calibration.trt_cache import make_calibrator
    from edgeseg.runtime.trt_api import TrtApi

    install(monkeypatch, GENERATIONS["8.5"])
    frames = np.random.default_rng(0).integers(0, 256, (2, 36, 48, 3), dtype=np.uint8)
    cal = make_calibrator(TrtApi.load(), tmp_path / "c.cache", inputs=frames, device="cpu")
    ptrs = cal.get_batch(["input"])
    assert len(ptrs) == 1 and cal._alive.dtype == torch.float32
    np.testing.assert_array_equal(cal._alive.numpy(), frames[:1].astype(np.float32))


def test_a_fingerprint_of_the_wrong_json_type_is_one_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelFileError, match="m.engine.json: expected a JSON object"):
        TrtRunner.from_file(engine)


def test_int8_with_fp16_fallback_is_refused_where_tensorrt_has_no_precision_flags(trt, cli_run, tiny_checkpoint, tmp_path):
    """--trt --int8 --fp16 on a TensorRT whose networks are strongly typed (11 on) cannot run float
    layers in FP16: refused before anything is written, never dropped; elsewhere it builds."""
    from edgeseg.runtime.trt_api import TrtApi

    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path / "o", "--trt", "--int8", "--fp16", "--no-verify",
                           "--calib-images", "10", "--sensitivity-images", "2", "--quiet")
    if TrtApi.load().has_precision_flags:
        assert code == 0, err
    else:
        assert code == 2 and "--fp16 with --int8: TensorRT" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o" / "model.onnx").exists()
