import json
import logging

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import export, parity_of

from edgeseg import runtime
from edgeseg.calibration.dataset import (
    build_calibration_set,
    calibration_set_from_array,
    select_covering,
)
from edgeseg.calibration.qdq import load_or_compute_ranges
from edgeseg.calibration.trt_cache import (
    cache_text,
    hex_to_scale,
    read_trt_cache,
    scale_to_hex,
    with_header,
)
from edgeseg.data import build_dataset
from edgeseg.errors import ConfigError, DataError, ModelFileError
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.export.int8 import Int8Options


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32")
    path, meta = export_onnx(tiny_checkpoint, out / "model.onnx")
    return path, meta


def test_trt_cache_encoding():
    assert scale_to_hex(1.0) == "3f800000" and scale_to_hex(0.0) == "0"  # no zero padding
    assert hex_to_scale("3f800000") == 1.0 and hex_to_scale("0") == 0.0
    assert hex_to_scale(scale_to_hex(0.0123)) == pytest.approx(0.0123, rel=1e-7)
    text = cache_text({"input": [-1.0, 0.5], "relu": [0.0, 6.35]}, 8502)
    lines = text.splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2"
    assert lines[1] == f"input: {scale_to_hex(1.0 / 127)}" and hex_to_scale(lines[2].split(": ")[1]) == pytest.approx(0.05, rel=1e-6)
    assert with_header(text.encode(), 100300).decode().splitlines() == ["TRT-100300-EntropyCalibration2"] + lines[1:]


def test_trt_cache_round_trip_and_bad_files(tmp_path):
    (tmp_path / "c.cache").write_text(cache_text({"a": [-2.54, 2.54]}, 8501))
    header, scales = read_trt_cache(tmp_path / "c.cache")
    assert header == "TRT-8501-EntropyCalibration2" and scales["a"] == pytest.approx(0.02, rel=1e-6)
    (tmp_path / "bad.cache").write_text("hello\n")
    with pytest.raises(ModelFileError, match="not a TensorRT calibration cache"):
        read_trt_cache(tmp_path / "bad.cache")


def test_calibration_set_covers_every_class_and_hashes_its_manifest(fp32, shared_folder):
    _, meta = fp32
    ds = build_dataset("folder", shared_folder, "train")
    warnings = []
    calib = build_calibration_set(meta, ds, n=10, seed=0, progress=False, warn=warnings.append)
    assert calib.inputs.shape == (10, 3, 36, 48) and calib.inputs.dtype == np.float32
    assert all(v > 0 for v in calib.manifest["class_images"].values())
    assert len(calib.manifest["files"]) == 10 and all(len(f["sha256"]) == 64 for f in calib.manifest["files"])
    assert calib.manifest["preprocess"]["res"] == [48, 36]
    assert any("fewer than 100" in w for w in warnings)
    again = build_calibration_set(meta, ds, n=10, seed=0, progress=False, warn=lambda _: None)
    other = build_calibration_set(meta, ds, n=10, seed=1, progress=False, warn=lambda _: None)
    assert again.sha256 == calib.sha256 != other.sha256
    # a rare class still gets picked: only one image has class 4 in this selection problem
    chosen, covered, absent = select_covering(ds, 3, seed=0)
    assert len(chosen) == 3 and not absent


def test_calibration_input_errors(fp32, shared_folder, tmp_path):
    _, meta = fp32
    ds = build_dataset("folder", shared_folder, "train")
    with pytest.raises(ConfigError, match="at least 10"):
        build_calibration_set(meta, ds, n=5)
    with pytest.raises(DataError, match="has 3 images"):
        build_calibration_set(meta, build_dataset("folder", shared_folder, "val"), n=10)
    np.save(tmp_path / "wrong.npy", np.zeros((12, 3, 30, 40), np.float32))
    with pytest.raises(DataError, match=r"shape \(12, 3, 30, 40\); the model takes \(N, 3, 36, 48\)"):
        calibration_set_from_array(tmp_path / "wrong.npy", meta)
    np.save(tmp_path / "ok.npy", np.zeros((12, 3, 36, 48), np.float32))
    assert len(calibration_set_from_array(tmp_path / "ok.npy", meta)) == 12


def test_ranges_cache_is_reused_and_invalidated_with_a_reason(fp32, shared_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    path, meta = fp32
    ds = build_dataset("folder", shared_folder, "train")
    calib = build_calibration_set(meta, ds, n=10, progress=False, warn=lambda _: None)
    ranges, key = load_or_compute_ranges(path, calib, "minmax", tmp_path)
    assert "input" in ranges and ranges["input"][0] < 0 < ranges["input"][1]
    again, key2 = load_or_compute_ranges(path, calib, "minmax", tmp_path)
    assert key2 == key and again == ranges and "using cached" in caplog.messages[-1]
    other = build_calibration_set(meta, ds, n=11, progress=False, warn=lambda _: None)
    load_or_compute_ranges(path, other, "minmax", tmp_path)
    assert any("stale (the calibration set changed)" in m for m in caplog.messages)
    # a hand-damaged cache with the right key is recomputed, not trusted
    cache = json.loads((tmp_path / "ranges-minmax.json").read_text())
    first = next(iter(cache["ranges"]))
    cache["ranges"][first] = ["low", "high"]
    (tmp_path / "ranges-minmax.json").write_text(json.dumps(cache))
    again, _ = load_or_compute_ranges(path, other, "minmax", tmp_path)
    assert all(isinstance(x, float) for x in again[first])


def test_int8_export_writes_a_tensorrt_friendly_qdq_model(tiny_checkpoint, shared_folder, tmp_path):
    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0)
    result = export(tiny_checkpoint, tmp_path, OnnxOptions(), int8=opts, images=3)
    model = onnx.load(str(tmp_path / "model.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert q and dq
    for node in q + dq:  # symmetric int8, zero point 0
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert not any(producers.get(n.input[0]) == "Conv" for n in q), "Q/DQ on inputs only, never on a convolution output"
    weight_dq = [n for n in dq if any(a.name == "axis" for a in n.attribute)]
    assert weight_dq, "per-channel weights carry an axis"
    assert not any(inits.get(n.input[0], np.zeros(1)).dtype == np.int32 for n in dq), "biases stay float"
    assert runtime.load(tmp_path / "model.int8.onnx").meta.extra["quantization"]["calib_method"] == "minmax"
    report = json.loads((tmp_path / "int8_report.json").read_text())
    assert report == result["formats"]["int8"]["details"] and report["within_budget"] and report["float_blocks"] == []
    parity = json.loads((tmp_path / "parity.int8.json").read_text())
    assert parity["passed"] and parity["pixel_agreement"] > 50
    # one verdict: the gate scored the images the budget search scored, and both say which
    assert parity["images"] == report["subset"]["images"] and len(parity["images"]) == opts.sensitivity_images
    lo, hi = parity["delta_miou_interval"]
    assert lo <= parity["delta_miou"] <= hi
    assert parity["delta_miou"] == pytest.approx(report["final"]["delta_miou"], abs=0.05)  # checkpoint vs FP32 ONNX: same labels
    header, scales = read_trt_cache(tmp_path / "calibration.cache")
    assert header == "TRT-8502-EntropyCalibration2" and "input" in scales


def test_int8_fallback_keeps_the_most_sensitive_blocks_in_float(tiny_checkpoint, shared_folder, tmp_path, monkeypatch):
    """A budget of -1 (INT8 must beat FP32 by a point) cannot be met: every block goes back to float."""
    from edgeseg.export.int8 import export_int8

    path, meta = export_onnx(tiny_checkpoint, tmp_path / "model.onnx")
    from edgeseg.data import DataSource

    monkeypatch.setattr("edgeseg.export.int8.check_fields", lambda record: None)  # allow the impossible budget
    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=-1.0)
    report = export_int8(path, meta, tmp_path, opts, DataSource("folder", str(shared_folder)))
    blocks = {row["block"] for row in report["sensitivity"]}
    assert blocks == {"encoder.stages.0", "encoder.stages.1", "encoder.stages.2", "head.conv", "model"}
    assert set(report["float_blocks"]) == blocks and not report["within_budget"]
    agreements = [row["pixel_agreement"] for row in report["sensitivity"]]
    assert agreements == sorted(agreements), "most disagreeing block first"
    model = onnx.load(str(tmp_path / "model.int8.onnx"))
    assert not any(n.op_type == "QuantizeLinear" for n in model.graph.node), "everything fell back to float"
    assert {"fp32_ms", "int8_full_ms", "int8_fallback_ms"} <= set(report["latency"])


def test_int8_cli_errors(cli_run, tiny_checkpoint, tmp_path):
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--int8", "--no-verify",
                           "--dataset", "camvid", "--quiet")
    assert code == 2 and "--int8 needs calibration images" in err and err.count("\n") == 1
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--int8", "--calib-images", "4", "--no-verify", "--quiet")
    assert code == 2 and "--calib-images': 4: expected a whole number in [10, 100000]" in err
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--fp16")
    assert code == 2 and "--trt" in err


def test_eval_of_the_int8_model_against_the_checkpoint(cli_run, tiny_checkpoint, shared_folder, tmp_path):
    opts = Int8Options(calib_method="percentile", calib_images=10, sensitivity_images=3, budget=100.0)
    export(tiny_checkpoint, tmp_path, int8=opts, verify=False)
    code, out, err = cli_run("eval", "--model", tmp_path / "model.int8.onnx", "--reference", tiny_checkpoint, "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["backend"] == "onnxruntime"
    # the parity figures are those of the two models scored on their own
    from edgeseg.tasks.evaluate import evaluate_model

    from edgeseg.data import DataSource

    alone = evaluate_model(tmp_path / "model.int8.onnx", source=DataSource("folder", str(shared_folder)))
    ref = evaluate_model(tiny_checkpoint)
    p = result["parity"]
    assert result["miou"] == pytest.approx(alone["miou"]) and p["reference_miou"] == pytest.approx(ref["miou"])
    assert p["delta_miou"] == pytest.approx(alone["miou"] - ref["miou"], abs=1e-6)
    assert 50 < p["pixel_agreement"] <= 100
    assert result["parity"]["reference_backend"] == "torch"


def test_entropy_and_percentile_clip_outliers_that_minmax_keeps(tmp_path, capsys):
    """A heavy-tailed activation: min-max keeps the outliers' range, entropy and percentile cut it."""
    from onnx import TensorProto, helper

    from edgeseg.calibration.dataset import CalibrationSet
    from edgeseg.calibration.qdq import compute_ranges

    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 64, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "relu.onnx"))
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(0, 1, (40, 1, 64, 64))).astype(np.float32)
    x[0, 0, 0, 0] = 100.0  # one value in 163840, below the 0.001% percentile tail
    calib = CalibrationSet(x, {"n": 40})
    amax = {m: max(abs(v) for v in compute_ranges(tmp_path / "relu.onnx", calib, m)["out"]) for m in ("minmax", "entropy", "percentile")}
    assert amax["minmax"] == pytest.approx(100.0)
    assert amax["entropy"] < 20 and amax["percentile"] < 20
    assert "Collecting tensor data" not in capsys.readouterr().out  # the histogram calibrators print; edgeseg silences them


def test_bootstrap_interval_of_the_mioU_change():
    import torch

    from edgeseg.tasks.parity import _miou_of, bootstrap_delta_interval

    rng = torch.Generator().manual_seed(0)
    same = [(m, m.clone()) for m in (torch.randint(0, 50, (3, 3), generator=rng) for _ in range(6))]
    assert bootstrap_delta_interval(same) == [0.0, 0.0]
    worse = [(m - torch.diag(torch.diag(m)) // 2, m) for m, _ in same]
    lo, hi = bootstrap_delta_interval(worse)
    point = float(_miou_of(torch.stack([a for a, _ in worse]).sum(0, keepdim=True)) - _miou_of(torch.stack([b for _, b in worse]).sum(0, keepdim=True)))
    assert lo <= point <= hi < 0
    assert bootstrap_delta_interval(same[:1]) is None


def test_no_qdq_on_the_in_graph_normalisation_of_a_uint8_model(tiny_checkpoint, tmp_path):
    from edgeseg.calibration.qdq import normalisation_nodes

    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=2, budget=100.0)
    export(tiny_checkpoint, tmp_path, OnnxOptions(input_format="uint8"), int8=opts, images=2)
    fp32 = onnx.load(str(tmp_path / "model.onnx"))
    chain = normalisation_nodes(fp32)
    assert [n.op_type for n in fp32.graph.node if n.name in chain][-1] == "Mul"
    qdq = onnx.load(str(tmp_path / "model.int8.onnx"))
    producers = {o: n.op_type for n in qdq.graph.node for o in n.output}
    for node in qdq.graph.node:
        if node.name in chain:
            assert all(producers.get(i) != "DequantizeLinear" for i in node.input), f"Q/DQ on an input of {node.name}"
    assert any(n.op_type == "QuantizeLinear" for n in qdq.graph.node)  # the network itself is quantised


def test_cpu_int8_target_uses_onnxruntime_placement(tiny_checkpoint, tmp_path, cli_run, shared_folder):
    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0, target="cpu")
    result = export(tiny_checkpoint, tmp_path, OnnxOptions(), int8=opts, images=3)
    model = onnx.load(str(tmp_path / "model.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert any(inits[n.input[2]].dtype == np.uint8 for n in q), "uint8 activations"
    assert any(producers.get(n.input[0]) in ("Conv", "Relu", "Clip") for n in q), "operator outputs quantised too"
    assert runtime.load(tmp_path / "model.int8.onnx").meta.extra["quantization"]["target"] == "cpu"
    assert result["formats"]["int8"]["details"]["trt_calibration_cache"] is None and parity_of(result, "int8")["passed"]
    assert not (tmp_path / "calibration.cache").exists()  # TensorRT's cache holds symmetric scales; the CPU ranges are not that
    assert (tmp_path / "calibration" / "ranges-minmax-cpu.json").is_file()
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path / "x", "--int8", "--int8-target", "gpu")
    assert code == 2 and "--int8-target" in err


def test_a_budget_bounds_the_loss_not_a_gain():
    from edgeseg.tasks.parity import parity_failures

    gain, loss = {"pixel_agreement": 98.0, "delta_miou": 0.94}, {"pixel_agreement": 98.0, "delta_miou": -0.6}
    assert parity_failures(gain, 0.0, 0.5, one_sided=True) == []  # INT8 scoring higher is no reason to refuse it
    assert parity_failures(loss, 0.0, 0.5, one_sided=True) == ["mIoU change -0.6000 < -0.5"]
    assert parity_failures(gain, 0.0, 0.5) == ["|delta mIoU| 0.9400 > 0.5"]  # FP32: any change means another graph
