"""OpenVINO: the runner on ONNX and IR, `export --openvino`, `--backend`, and what it refuses."""

import json
import shutil
import sys

import numpy as np
import pytest

from conftest import export

from edgeseg import runtime
from edgeseg.errors import ConfigError, MissingDependencyError, ModelFileError
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.export.int8 import Int8Options

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """model.onnx, model.xml (checked), model.int8.onnx and model.int8.xml (CPU placement) of the tiny checkpoint."""
    out = tmp_path_factory.mktemp("ov")
    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0, target="cpu")
    result = export(tiny_checkpoint, out, OnnxOptions(), int8=opts, images=3, progress=False, openvino=True)
    return out, result


def test_export_writes_checked_ir_with_metadata_and_weights_hash(exported, tiny_checkpoint):
    out, result = exported
    for stem in ("model", "model.int8"):
        assert (out / f"{stem}.xml").is_file() and (out / f"{stem}.bin").is_file()
    assert [result["formats"][f]["files"][0] for f in ("openvino", "openvino-int8")] == [str(out / "model.xml"), str(out / "model.int8.xml")]
    fp32 = json.loads((out / "parity.openvino.json").read_text())
    assert fp32["passed"] and fp32["backend"] == "openvino" and fp32["pixel_agreement"] >= 99.9
    assert fp32["ran"]["precision"] == "f32" and fp32["max_abs_logit_diff"] < 1e-3
    default = runtime.load(out / "model.xml").activate().precision_report["inference_precision"]
    # where OpenVINO's default precision is not f32 (bf16 on CPUs with native bf16), the FP32 IR is scored at it too
    assert (out / "parity.openvino.default.json").is_file() == (default != "f32")
    int8 = json.loads((out / "parity.openvino.int8.json").read_text())
    assert int8["passed"] and int8["n_images"] == 3
    # The Q/DQ model runs as integer convolutions: OpenVINO fused the FakeQuantize pairs.
    convs = int8["ran"]["precision_report"]["convolutions"]
    assert any(k in ("i8", "u8") for k in convs), convs
    model = ov.Core().read_model(str(out / "model.xml"))
    from edgeseg.models import ModelMeta

    meta = ModelMeta.from_props(json.loads(model.get_rt_info(["edgeseg", "meta"]).astype(str)), "model.xml")
    assert meta.res == (48, 36) and len(meta.class_names) == 5


@pytest.mark.parametrize("which", ["onnx", "xml"])
def test_openvino_runner_contract_and_agreement_with_onnxruntime(exported, which):
    out, _ = exported
    path = out / f"model.{which}"
    runner = runtime.load(path, backend="openvino" if which == "onnx" else None, precision="f32", threads=1)
    assert runner.backend == "openvino" and runner.meta.num_classes == 5 and tuple(runner.meta.res) == (48, 36)
    x = np.random.default_rng(0).standard_normal(runner.input_shape(2)).astype(np.float32)
    with runner, runtime.load(out / "model.onnx") as ort_runner:
        got, want = runner.infer(x)["logits"], ort_runner.infer(x)["logits"]
        with pytest.raises(ConfigError, match="input shape"):
            runner.infer(x[:, :, :10])
        with pytest.raises(ConfigError, match="dtype"):
            runner.infer(x.astype(np.float64))
    assert got.shape == (2, 5, 36, 48) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    report = runner.precision_report
    assert report["inference_precision"] == "f32" and report["threads"] == 1
    assert set(report["convolutions"]) == {"f32"} and sum(report["convolutions"].values()) > 0


def test_eval_bench_predict_take_backend_and_ir(exported, tiny_checkpoint, cli_run, tmp_path, shared_folder):
    out, _ = exported
    scores = {}
    for args in (["--model", out / "model.onnx"], ["--model", out / "model.onnx", "--backend", "openvino", "--ov-precision", "f32"],
                 ["--model", out / "model.xml", "--ov-precision", "f32", "--threads", "1"]):
        code, text, err = cli_run("eval", *args, "--data", shared_folder, "--json", tmp_path / "e.json", "--quiet")
        assert code == 0, err
        result = json.loads((tmp_path / "e.json").read_text())
        scores[len(scores)] = (result["backend"], result["miou"])
    assert [b for b, _ in scores.values()] == ["onnxruntime", "openvino", "openvino"]
    assert scores[1][1] == pytest.approx(scores[0][1], abs=0.05) and scores[2][1] == pytest.approx(scores[0][1], abs=0.05)
    code, _, err = cli_run("bench", "--model", out / "model.onnx", "--model", out / "model.xml", "--backend", "onnxruntime,openvino",
                           "--iters", "2", "--warmup", "0", "--json", tmp_path / "b.json", "--quiet")
    assert code == 0, err
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [r["backend"] for r in rows] == ["onnxruntime", "openvino"] and rows[1]["ran"]["precision"]
    code, _, err = cli_run("predict", "--model", out / "model.int8.xml", shared_folder / "val" / "images", "--out", tmp_path / "p", "--quiet")
    assert code == 0, err
    assert (tmp_path / "p" / "s0_label.png").is_file()
    # a checkpoint beside an ONNX model on OpenVINO in one bench: "auto" leaves a model on its own backend
    code, _, err = cli_run("bench", "--model", tiny_checkpoint, "--model", out / "model.onnx",
                           "--backend", "auto,openvino", "--ov-precision", "auto,f32", "--iters", "1", "--warmup", "0",
                           "--json", tmp_path / "b2.json", "--quiet")
    assert code == 0, err
    rows = json.loads((tmp_path / "b2.json").read_text())["results"]
    assert [r["backend"] for r in rows] == ["torch", "openvino"] and rows[1]["ran"]["precision"] == "f32"
    # one file on two backends: each keeps its own ratio
    from edgeseg.runtime.spec import RunnerSpec
    from edgeseg.tasks.bench import bench

    both = bench([out / "model.onnx", out / "model.onnx"], [RunnerSpec(), RunnerSpec(backend="openvino")], iters=2, warmup=0)
    rows = both["results"]
    assert [r["backend"] for r in rows] == ["onnxruntime", "openvino"] and len(both["p50_ratio_to_first"]) == 2
    assert rows[1]["p50_ratio_to_first"] == pytest.approx(rows[1]["model_only"]["p50_ms"] / rows[0]["model_only"]["p50_ms"], abs=1e-3)


def _plain_ir(src_onnx, xml):
    """An IR written by OpenVINO itself from an ONNX model without edgeseg metadata."""
    import onnx

    model = onnx.load(str(src_onnx))
    del model.metadata_props[:]
    plain = xml.with_suffix(".onnx")
    onnx.save(model, str(plain))
    ov.save_model(ov.convert_model(str(plain)), str(xml), compress_to_fp16=False)
    return xml


def test_bad_ir_files_and_backend_choices_are_one_line_errors(exported, tiny_checkpoint, cli_run, tmp_path):
    out, _ = exported
    for name in ("model.xml", "model.bin", "model.int8.bin"):
        shutil.copy(out / name, tmp_path / name)
    cases = []
    # weights missing
    shutil.copy(out / "model.xml", tmp_path / "nobin.xml")
    cases.append((["eval", "--model", tmp_path / "nobin.xml"], "nobin.bin is missing"))
    # other weights of the same size: OpenVINO would run them; the hash in the .xml refuses them
    weights = bytearray((out / "model.bin").read_bytes())
    weights[:64] = bytes(64)
    (tmp_path / "mixed.bin").write_bytes(bytes(weights))
    shutil.copy(out / "model.xml", tmp_path / "mixed.xml")
    cases.append((["eval", "--model", tmp_path / "mixed.xml"], "is not the weights file written with this .xml"))
    # weights of another export (a different size: OpenVINO's own check)
    shutil.copy(out / "model.int8.bin", tmp_path / "other.bin")
    shutil.copy(out / "model.xml", tmp_path / "other.xml")
    cases.append((["eval", "--model", tmp_path / "other.xml"], "is other.bin the weights file written with it?"))
    # truncated weights (OpenVINO's own check)
    shutil.copy(out / "model.xml", tmp_path / "short.xml")
    (tmp_path / "short.bin").write_bytes((out / "model.bin").read_bytes()[:100])
    cases.append((["eval", "--model", tmp_path / "short.xml"], "short.xml"))
    # an IR without our metadata
    _plain_ir(out / "model.onnx", tmp_path / "plain.xml")
    cases.append((["eval", "--model", tmp_path / "plain.xml"], "without edgeseg metadata"))
    cases.append((["eval", "--model", tiny_checkpoint, "--backend", "openvino"], "is a checkpoint"))
    cases.append((["bench", "--model", tiny_checkpoint, "--backend", "openvino"], "is a checkpoint"))
    cases.append((["eval", "--model", out / "model.onnx", "--backend", "tflite"], "--backend"))
    cases.append((["eval", "--model", out / "model.onnx", "--ov-precision", "int4"], "--ov-precision"))
    cases.append((["eval", "--model", out / "model.onnx", "--ov-precision", "bf16"], "precision hint is OpenVINO's"))
    cases.append((["eval", "--model", out / "model.xml", "--device", "cuda"], "--device cuda"))
    cases.append((["eval", "--model", out / "model.xml", "--tta", "flip"], "fixed in the graph"))
    cases.append((["eval", "--model", out / "model.onnx", "--backend", "openvino", "--tta", "flip"], "fixed in the graph"))
    cases.append((["bench", "--model", out / "model.onnx", "--model", out / "model.xml", "--backend", "onnxruntime,openvino,openvino"],
                  "one per --model"))
    for args, expected in cases:
        code, _, err = cli_run(*args)
        assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    with pytest.raises(ModelFileError, match="missing"):
        runtime.load(tmp_path / "nobin.xml")


def test_export_cli_writes_the_ir(tiny_checkpoint, cli_run, tmp_path):
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--openvino", "--verify-images", "2", "--quiet")
    assert code == 0, err
    assert "openvino FP32 IR (f32), ran f32" in err and json.loads((tmp_path / "parity.openvino.json").read_text())["passed"]
    assert runtime.load(tmp_path / "model.xml").backend == "openvino"


def test_openvino_options_without_the_package_name_the_extra(tiny_checkpoint, exported, cli_run, tmp_path, monkeypatch):
    out, _ = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path / "e", "--openvino")
    assert code == 2 and 'pip install "edgeseg[openvino]"' in err and err.count("\n") == 1
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())  # nothing written
    code, _, err = cli_run("eval", "--model", out / "model.xml")
    assert code == 2 and 'pip install "edgeseg[openvino]"' in err
    with pytest.raises(MissingDependencyError):
        runtime.load(out / "model.onnx", backend="openvino")


def test_a_failed_ir_check_keeps_the_previous_ir(tiny_checkpoint, tmp_path, monkeypatch):
    export(tiny_checkpoint, tmp_path, images=2, openvino=True, onnx=OnnxOptions(tta="flip"))
    before = (tmp_path / "model.xml").read_bytes()  # of the TTA graph: a different .xml from the plain export below
    import edgeseg.tasks.export as job

    real = job.verify_parity

    def failing(path, *args, **kwargs):
        report = real(path, *args, **kwargs)
        if str(path).endswith(".xml"):
            report.update(passed=False, failures=["forced"])
        return report

    monkeypatch.setattr(job, "verify_parity", failing)
    from edgeseg.errors import CheckFailed

    with pytest.raises(CheckFailed, match="model.xml fails parity"):
        export(tiny_checkpoint, tmp_path, images=2, progress=False, openvino=True)
    # model.onnx changed (no TTA now), so the previous IR, converted from the old one, is dropped, not restored
    assert not (tmp_path / "model.xml").exists() and not (tmp_path / "model.bin").exists()
    assert (tmp_path / "model.rejected.xml").read_bytes() != before
    monkeypatch.setattr(job, "verify_parity", real)
    export(tiny_checkpoint, tmp_path, images=2, progress=False, openvino=True)
    before = (tmp_path / "model.xml").read_bytes()
    monkeypatch.setattr(job, "verify_parity", failing)
    with pytest.raises(CheckFailed, match="model.xml fails parity"):
        export(tiny_checkpoint, tmp_path, images=2, progress=False, openvino=True)
    assert (tmp_path / "model.xml").read_bytes() == before  # same model.onnx: the previous IR is kept
    runtime.load(tmp_path / "model.xml")  # and its pair still matches


def test_an_ir_left_from_an_earlier_onnx_model_is_refused_then_removed_with_exist_ok(tiny_checkpoint, tmp_path):
    from edgeseg.errors import ConfigError

    export(tiny_checkpoint, tmp_path, images=2, progress=False, openvino=True)
    assert (tmp_path / "model.xml").is_file()
    # (parity.openvino.default.json too, on a CPU whose OpenVINO default precision is not f32: BF16-capable ones)
    with pytest.raises(ConfigError, match="holds model.xml, model.bin, parity.openvino.json(, parity.openvino.default.json)? built from the earlier model.onnx"):
        export(tiny_checkpoint, tmp_path, OnnxOptions(tta="flip"), verify=False)  # a new model.onnx, no --openvino
    assert (tmp_path / "model.xml").is_file()
    export(tiny_checkpoint, tmp_path, OnnxOptions(tta="flip"), verify=False, exist_ok=True)
    assert not (tmp_path / "model.xml").exists() and not (tmp_path / "model.bin").exists()
    assert not (tmp_path / "parity.openvino.json").exists()


def test_an_ir_with_a_blank_weights_hash_is_refused(exported, tmp_path):
    out, _ = exported
    model = ov.Core().read_model(str(out / "model.xml"))
    model.set_rt_info("", ["edgeseg", "bin_sha256"])
    ov.save_model(model, str(tmp_path / "nohash.xml"), compress_to_fp16=False)
    with pytest.raises(ModelFileError, match="not the weights file"):
        runtime.load(tmp_path / "nohash.xml")


def test_uint8_input_and_label_output_run_on_openvino(tiny_checkpoint, tmp_path):
    from edgeseg.export.openvino_ir import write_ir

    path, _ = export_onnx(tiny_checkpoint, tmp_path / "u8.onnx", OnnxOptions(input_format="uint8", output="both", output_size=(96, 72)))
    write_ir(path, tmp_path / "u8.xml")
    x = np.random.default_rng(1).integers(0, 256, (2, 36, 48, 3), dtype=np.uint8)
    with runtime.load(path) as ort_runner, runtime.load(tmp_path / "u8.xml", precision="f32") as ov_runner:
        want, got = ort_runner.infer(x), ov_runner.infer(x)
    assert got["labels"].dtype == np.uint8 and got["labels"].shape == (2, 72, 96)
    assert (got["labels"] == want["labels"]).mean() > 0.999
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-3)


def test_a_damaged_ir_is_one_line_on_the_process_stderr(tmp_path):
    """OpenVINO tries every frontend on an IR it cannot read, and their parsers print to the
    process's stderr; the command's stderr is still one line."""
    import subprocess
    import sys

    (tmp_path / "bad.xml").write_text("<net")
    (tmp_path / "bad.bin").write_bytes(b"\0" * 16)
    launch = "from edgeseg.launch import main; main()"
    proc = subprocess.run([sys.executable, "-c", launch, "eval", "--model", str(tmp_path / "bad.xml")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "OpenVINO cannot read the IR" in proc.stderr, proc.stderr


def test_the_tensorrt_placement_runs_and_is_scored_on_openvino(tiny_checkpoint, tmp_path):
    """The default INT8 model (TensorRT's placement: symmetric int8, Q/DQ before the ops) also becomes
    an IR that OpenVINO runs as integer convolutions, scored against the checkpoint."""
    opts = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=3, budget=100.0, target="tensorrt")
    result = export(tiny_checkpoint, tmp_path, OnnxOptions(), int8=opts, images=3, progress=False, openvino=True)
    assert json.loads((tmp_path / "int8_report.json").read_text())["target"] == "tensorrt"
    int8 = json.loads((tmp_path / "parity.openvino.int8.json").read_text())
    assert int8["passed"] and int8["n_images"] == 3 and int8["backend"] == "openvino"
    convs = int8["ran"]["precision_report"]["convolutions"]
    assert any(k in ("i8", "u8") for k in convs), convs
    assert result["formats"]["openvino-int8"]["files"][0] == str(tmp_path / "model.int8.xml")
