import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from conftest import export, parity_of

from edgeseg import runtime
from edgeseg.data.base import DatasetInfo, default_palette
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.models import MODELS, Checkpoint, ModelConfig, ModelMeta, build_model


def fake_checkpoint(path, name, num_classes=4, res=(64, 48)):
    """A checkpoint of a freshly built model (random weights, BN statistics perturbed)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name, num_classes))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    meta = ModelMeta(ModelConfig(name, num_classes, res=tuple(res)), DatasetInfo("synthetic", tuple(f"c{i}" for i in range(num_classes)),
                                                                                  default_palette(num_classes)))
    torch.save(Checkpoint(meta, model.state_dict()).to_dict("test"), path)
    return path


def test_export_writes_metadata_and_passes_checker_and_parity(tiny_checkpoint, tmp_path):
    result = export(tiny_checkpoint, tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain == "") == 17
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, "model.onnx")
    assert meta.res == (48, 36) and len(meta.source_sha256) == 64 and meta.class_names == tuple("abcde") and meta.edgeseg_version
    assert meta.model.name == "tiny" and meta.dataset_root is None  # an exported model does not carry the data's location
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity.pop("edgeseg_report") == "edgeseg export"  # marked as edgeseg's report: a re-export may replace it
    assert parity == parity_of(result) and parity["passed"] and parity["pixel_agreement"] == 100.0
    assert parity["max_abs_logit_diff"] < 1e-4 and parity["n_images"] == 3


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eager_and_onnxruntime_agree_for_every_architecture(name, tmp_path):
    ckpt = fake_checkpoint(tmp_path / "m.pt", name)
    path, meta = export_onnx(ckpt, tmp_path / "m.onnx", OnnxOptions(opset=17))
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 64)).astype(np.float32)
    with runtime.load(ckpt, device="cpu") as ref, runtime.load(path, device="cpu") as ort_runner:
        a, b = ref.infer(x)["logits"], ort_runner.infer(x)["logits"]
    np.testing.assert_allclose(b, a, atol=1e-3, rtol=1e-3)
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.999
    from edgeseg.export.opset import _names_used

    graph = onnx.load(str(path)).graph
    assert all(i.name in _names_used(graph) for i in graph.initializer)  # folding leftovers pruned


def test_label_output_uint8_input_and_dynamic_batch(tiny_checkpoint, tmp_path):
    opts = OnnxOptions(output="both", output_size=(96, 72), input_format="uint8", dynamic_batch=True)
    path, meta = export_onnx(tiny_checkpoint, tmp_path / "m.onnx", opts)
    runner = runtime.load(path, device="cpu")
    assert runner.meta.input_layout == "nhwc-uint8" and runner.meta.outputs == ("logits", "labels")
    with runner:
        for batch in (1, 3):
            out = runner.infer(np.zeros((batch, 36, 48, 3), np.uint8))
            assert out["logits"].shape == (batch, 5, 36, 48)
            assert out["labels"].shape == (batch, 72, 96) and out["labels"].dtype == np.uint8
    # the in-graph argmax agrees with the arg-max of the up-sampled logits
    x = np.random.default_rng(1).integers(0, 255, (2, 36, 48, 3), dtype=np.uint8)
    with runner:
        out = runner.infer(x)
    up = torch.nn.functional.interpolate(torch.from_numpy(out["logits"]), size=(72, 96), mode="bilinear", align_corners=False)
    assert (up.argmax(1).numpy() == out["labels"]).mean() > 0.999
    assert parity_of(export(tiny_checkpoint, tmp_path / "u8", opts))["passed"]


def test_parity_report_on_a_model_with_two_classes_swapped(tiny_checkpoint, tmp_path, shared_folder):
    """Swapping two output channels gives answers we can compute independently."""
    from edgeseg.data import build_dataset
    from edgeseg.runtime.processing import Preprocess, native_labels
    from edgeseg.tasks.parity import compare_runners

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    for key in ("head.conv.weight", "head.conv.bias"):
        ckpt["model"][key] = ckpt["model"][key][[1, 0, 2, 3, 4]]
    torch.save(ckpt, tmp_path / "swapped.pt")
    ds = build_dataset("folder", shared_folder, "val")
    ref = runtime.load(tiny_checkpoint, device="cpu")
    report = compare_runners(runtime.load(tmp_path / "swapped.pt", device="cpu"), ref, ds)
    parity = report["parity"]
    pre = Preprocess.from_meta(ref.meta)
    preds, max_diff = [], 0.0
    with ref:
        for s in (ds[i] for i in range(len(ds))):
            out = ref.infer(pre([s.image]))
            max_diff = max(max_diff, float(np.abs(out["logits"][:, 0] - out["logits"][:, 1]).max()))
            preds.append(native_labels(out, [s.label.shape])[0].numpy())
    share_01 = np.mean(np.concatenate([np.isin(p, [0, 1]).ravel() for p in preds]))
    assert parity["pixel_agreement"] == pytest.approx(100 * (1 - share_01), abs=1e-3)
    assert parity["max_abs_logit_diff"] == pytest.approx(max_diff, rel=1e-5)
    assert parity["delta_miou"] == pytest.approx(report["model"]["miou"] - report["reference"]["miou"], abs=1e-3)
    assert parity["per_class_delta"]["c"] == 0.0  # untouched classes keep their IoU
    assert parity["per_class_delta"]["a"] == pytest.approx(report["model"]["per_class"]["a"] - report["reference"]["per_class"]["a"], abs=1e-3)


def test_eval_with_reference_reports_parity(cli_run, tiny_checkpoint, tmp_path):
    export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    code, out, err = cli_run("eval", "--model", tmp_path / "m.onnx", "--reference", tiny_checkpoint, "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["backend"] == "onnxruntime"
    p = result["parity"]
    assert set(p) >= {"pixel_agreement", "reference_miou", "delta_miou", "per_class_delta", "max_abs_logit_diff"}
    assert p["pixel_agreement"] == 100.0 and abs(p["delta_miou"]) < 1e-6
    assert "pixel agreement" in out


def test_export_cli_fails_with_exit_1_when_parity_thresholds_are_missed(cli_run, tiny_checkpoint, tmp_path, monkeypatch):
    fail_parity_of(monkeypatch, "model.onnx")
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--input", "uint8", "--verify-images", "2", "--quiet")
    assert code == 1 and "fails parity" in err and err.count("\n") <= 3
    # the rejected export is kept for inspection under another name; there was no previous model.onnx to keep
    assert (tmp_path / "model.rejected.onnx").is_file() and not (tmp_path / "model.onnx").exists()
    assert json.loads((tmp_path / "parity.rejected.json").read_text())["passed"] is False and not (tmp_path / "parity.json").exists()


def test_foreign_onnx_models_edgeseg_cannot_feed_or_label_are_refused_in_one_line(cli_run, tmp_path):
    """Graphs without edgeseg metadata: a grey, a float16, a float NHWC input, 300 classes: each one
    line naming the file and what it takes, exit 2 (a traceback from onnxruntime or the palette before)."""
    from onnx import TensorProto, helper

    from edgeseg import runtime
    from edgeseg.errors import ModelFileError

    def graph(name, elem, shape, classes, layout_nhwc=False):
        x = helper.make_tensor_value_info("x", elem, shape)
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, 18, 24])
        channels = shape[3] if layout_nhwc else shape[1]
        w = helper.make_tensor("w", TensorProto.FLOAT, [classes, channels, 1, 1], [0.1] * classes * channels)
        nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)]
        if layout_nhwc:
            nodes.append(helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]))
        nodes.append(helper.make_node("Conv", ["xt" if layout_nhwc else "xf", "w"], ["logits"]))
        model = helper.make_model(helper.make_graph(nodes, name, [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        return tmp_path / f"{name}.onnx"

    cases = {"grey": (TensorProto.FLOAT, [1, 1, 18, 24], 3, False), "half": (TensorProto.FLOAT16, [1, 3, 18, 24], 3, False),
             "float_nhwc": (TensorProto.FLOAT, [1, 18, 24, 3], 3, True), "many": (TensorProto.FLOAT, [1, 3, 18, 24], 300, False)}
    for name, (elem, shape, classes, nhwc) in cases.items():
        path = graph(name, elem, shape, classes, nhwc)
        with pytest.raises(ModelFileError, match=f"{name}.onnx: .*(edgeseg feeds 3-channel images|at most 254 classes)"):
            runtime.load(path)
        code, _, err = cli_run("eval", "--model", path, "--limit", "1")
        assert code == 2 and err.count("\n") <= 2 and "Traceback" not in err and f"{name}.onnx" in err, err
    assert runtime.load(graph("fine", TensorProto.FLOAT, [1, 3, 18, 24], 3)).meta.num_classes == 3  # and one it can run


def test_bad_model_files(cli_run, tiny_checkpoint, tmp_path, shared_folder):
    path, _ = export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    # no edgeseg metadata: runs, with a warning
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "plain.onnx"))
    code, _, err = cli_run("eval", "--model", tmp_path / "plain.onnx", "--dataset", "synthetic", "--limit", "1")
    assert code == 2 and "(5 classes) are not those of data set 'synthetic'" in err  # ran far enough to compare classes
    assert "no edgeseg metadata" in err
    code, _, err = cli_run("eval", "--model", tmp_path / "plain.onnx", "--dataset", "folder", "--data", shared_folder, "--limit", "1")
    assert code == 0, err  # as many classes, and no names of its own to compare
    # metadata and graph disagree on the input size: resized, or refused under --strict
    wrong = onnx.ModelProto()
    wrong.CopyFrom(model)
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, "m.onnx")
    onnx.helper.set_model_props(wrong, meta.with_res((64, 48)).to_props())
    onnx.save(wrong, str(tmp_path / "wrong.onnx"))
    code, _, err = cli_run("eval", "--model", tmp_path / "wrong.onnx", "--strict", "--dataset", "synthetic")
    assert code == 2 and "--strict" in err
    # corrupt file and unsupported opset
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 10)
    code, _, err = cli_run("eval", "--model", tmp_path / "bad.onnx")
    assert code == 2 and "not a readable ONNX model" in err and err.count("\n") == 1
    model.opset_import[0].version = 40
    onnx.save(model, str(tmp_path / "future.onnx"))
    code, _, err = cli_run("eval", "--model", tmp_path / "future.onnx", "--limit", "1")
    assert code == 2 and "opset 40" in err and "--opset 17" in err
    code, _, err = cli_run("eval", "--model", tmp_path / "model.tflite")
    assert code == 2 and "not found; expected a model file" in err
    shutil.copy(path, tmp_path / "model.tflite")
    code, _, err = cli_run("eval", "--model", tmp_path / "model.tflite")
    assert code == 2 and "unknown model file type" in err
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--opset", "9", "--out", tmp_path / "o9")
    assert code == 2 and "'--opset': 9: expected a whole number in [13, 23]" in err


def test_onnxslim_is_used_when_installed(tiny_checkpoint, tmp_path, monkeypatch):
    import sys
    import types

    seen = []
    fake = types.ModuleType("onnxslim")
    fake.slim = lambda path: (seen.append(path), onnx.load(path))[1]
    monkeypatch.setitem(sys.modules, "onnxslim", fake)
    path, meta = export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    assert len(seen) == 1 and meta.extra.get("source") == tiny_checkpoint.name
    assert runtime.load(path).meta.extra["onnxslim"] is True
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    path, _ = export_onnx(tiny_checkpoint, tmp_path / "n.onnx")
    assert runtime.load(path).meta.extra["onnxslim"] is False


def test_opset_down_conversion_of_reductions():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgeseg.errors import ConfigError
    from edgeseg.export.opset import downgrade

    nodes = [helper.make_node("Constant", [], ["ax"], value_ints=[2, 3]),
             helper.make_node("ReduceMean", ["x", "ax"], ["m1"], keepdims=1),
             helper.make_node("ReduceMax", ["x"], ["m2"], keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("m1", TensorProto.FLOAT, [1, 2, 1, 1]),
                               helper.make_tensor_value_info("m2", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m17 = downgrade(onnx.ModelProto.FromString(model.SerializeToString()), 17)
    onnx.checker.check_model(m17, full_check=True)
    assert [n.op_type for n in m17.graph.node] == ["ReduceMean", "ReduceMax"]
    x = np.random.default_rng(0).random((1, 2, 3, 4)).astype(np.float32)
    for a, b in zip(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x}),
                    ort.InferenceSession(m17.SerializeToString()).run(None, {"x": x})):
        np.testing.assert_array_equal(a, b)
    graph.node[2].attribute.append(helper.make_attribute("noop_with_empty_axes", 1))
    with pytest.raises(ConfigError, match="noop_with_empty_axes"):
        downgrade(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), 17)


def test_uint8_graph_edges_convert_straight_from_and_to_float(tiny_checkpoint, tmp_path):
    """TensorRT 8.x takes uint8 only at the edges, converted to or from float."""
    path, _ = export_onnx(tiny_checkpoint, tmp_path / "m.onnx", OnnxOptions(output="labels", input_format="uint8"))
    graph = onnx.load(str(path)).graph
    consumers = {i: n for n in graph.node for i in n.input}
    producers = {o: n for n in graph.node for o in n.output}
    first = consumers["input"]
    assert first.op_type == "Cast" and onnx.helper.get_attribute_value(first.attribute[0]) == onnx.TensorProto.FLOAT
    last = producers["labels"]
    assert last.op_type == "Cast" and onnx.helper.get_attribute_value(last.attribute[0]) == onnx.TensorProto.UINT8
    before = producers[last.input[0]]
    assert before.op_type == "Cast" and onnx.helper.get_attribute_value(before.attribute[0]) == onnx.TensorProto.FLOAT


def test_pruning_keeps_values_read_inside_subgraphs_and_drops_the_rest():
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.export.opset import prune_unused

    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])
    then_g = helper.make_graph([helper.make_node("Identity", ["w_sub"], ["t"])], "then", [], [then_out])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "else", [], [then_out])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "w_sub"), numpy_helper.from_array(np.ones(1, np.float32), "dead")],
    )
    model = prune_unused(helper.make_model(graph))
    assert [i.name for i in model.graph.initializer] == ["w_sub"]



def test_a_failed_check_keeps_the_previous_export(tiny_checkpoint, tmp_path, monkeypatch):
    from edgeseg.errors import CheckFailed

    export(tiny_checkpoint, tmp_path, images=2)
    good = (tmp_path / "model.onnx").read_bytes()
    fail_parity_of(monkeypatch, "model.onnx")
    with pytest.raises(CheckFailed, match="any previous model.onnx is kept"):
        export(tiny_checkpoint, tmp_path, OnnxOptions(opset=18), images=2)
    assert (tmp_path / "model.onnx").read_bytes() == good
    rejected = onnx.load(str(tmp_path / "model.rejected.onnx"))
    assert next(o.version for o in rejected.opset_import if o.domain == "") == 18
    assert not list(tmp_path.glob(".model.onnx.previous")) and not list(tmp_path.glob(".edgeseg-stage-*"))
    assert (tmp_path / "parity.rejected.json").is_file()
    monkeypatch.undo()
    export(tiny_checkpoint, tmp_path, images=2)  # a later export that passes: the rejects it replaces go
    assert not list(tmp_path.glob("*.rejected.*"))


@pytest.mark.parametrize("flag,module", [("--trt", "tensorrt"), ("--openvino", "openvino")])
def test_a_format_whose_package_is_missing_is_refused_before_anything_is_written(flag, module, cli_run, tiny_checkpoint, tmp_path, monkeypatch):
    """Every format with a preflight: its package missing, the export is refused (exit 2, one line)
    before the ONNX model of an earlier export is touched."""
    import sys

    from edgeseg.export.formats import FORMATS

    assert {f.flag for f in FORMATS.values() if f.preflight is not None} == {"--trt", "--openvino"}
    export(tiny_checkpoint, tmp_path, images=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, flag, "--opset", "16", "--verify-images", "2")
    assert code == 2 and module.lower() in err.lower() and err.strip().count("\n") == 0, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_failed_engine_check_keeps_the_previous_engine(tiny_checkpoint, tmp_path, monkeypatch):
    import sys

    from trt_double import GENERATIONS, make_tensorrt

    from edgeseg.errors import CheckFailed
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.runtime.trt_runner import TrtRunner

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(GENERATIONS["10"]))
    monkeypatch.setattr(TrtRunner, "default_device", "cpu")
    monkeypatch.setattr("edgeseg.runtime.fingerprint.gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.7", "cuda": None})
    export(tiny_checkpoint, tmp_path, images=2, trt=TrtOptions(precision="fp32"))
    good = (tmp_path / "model.engine").read_bytes(), (tmp_path / "model.engine.json").read_text()
    fail_parity_of(monkeypatch, ".engine")  # ONNX passes; the rebuilt engine misses its check
    with pytest.raises(CheckFailed, match="made to fail"):
        export(tiny_checkpoint, tmp_path, images=2, trt=TrtOptions(precision="fp32", workspace_gb=1.0))
    assert ((tmp_path / "model.engine").read_bytes(), (tmp_path / "model.engine.json").read_text()) == good
    assert (tmp_path / "model.rejected.engine").is_file()


def test_derived_artefacts_of_an_older_model_are_dropped_not_restored(tiny_checkpoint, tmp_path, monkeypatch):
    from edgeseg.errors import CheckFailed
    from edgeseg.export.int8 import Int8Options

    int8 = Int8Options(calib_method="minmax", calib_images=10, sensitivity_images=2, budget=100.0)
    export(tiny_checkpoint, tmp_path, images=2, int8=int8)
    assert (tmp_path / "model.int8.onnx").is_file()
    # a different model.onnx (another opset) passes, then its INT8 fails: the old INT8 no longer matches it
    fail_parity_of(monkeypatch, ".int8.onnx")
    with pytest.raises(CheckFailed, match="made to fail"):
        export(tiny_checkpoint, tmp_path, OnnxOptions(opset=18), images=2, int8=int8)
    assert not (tmp_path / "model.int8.onnx").exists() and (tmp_path / "model.int8.rejected.onnx").is_file()


def test_a_new_model_onnx_never_strands_or_silently_removes_formats_built_from_the_old_one(tiny_checkpoint, tmp_path):
    """Formats built from an earlier model.onnx (an engine built on its device, an INT8 model) that
    this export does not rebuild: a new, different model.onnx is refused before anything is replaced,
    unless --exist-ok (then they go, with their reports); a report not written again (--no-verify)
    goes with the model it described."""
    from edgeseg.errors import ConfigError
    from edgeseg.fileio import sha256_file

    export(tiny_checkpoint, tmp_path, images=2)  # model.onnx and parity.json
    derived = {"model.engine": b"built on a Jetson", "model.engine.json": b'{"meta": {"edgeseg.meta": "{}"}}',  # as edgeseg writes them
               "parity.engine.json": b'{"edgeseg_report": "edgeseg export"}', "model.int8.onnx": b"int8 edgeseg.meta", "int8_report.json": b"{}"}
    for name, data in derived.items():
        (tmp_path / name).write_bytes(data)
    before = sha256_file(tmp_path / "model.onnx")
    export(tiny_checkpoint, tmp_path, images=2)  # the same model.onnx again: nothing is stale
    assert sha256_file(tmp_path / "model.onnx") == before and all((tmp_path / n).is_file() for n in derived)
    export(tiny_checkpoint, tmp_path, verify=False)  # nor its parity report, not written again
    assert (tmp_path / "parity.json").is_file()
    with pytest.raises(ConfigError, match="holds model.int8.onnx, int8_report.json, model.engine, model.engine.json ... built from "
                                          "the earlier model.onnx.*--exist-ok"):
        export(tiny_checkpoint, tmp_path, OnnxOptions(opset=18), images=2)
    assert sha256_file(tmp_path / "model.onnx") == before and all((tmp_path / n).read_bytes() == d for n, d in derived.items())
    export(tiny_checkpoint, tmp_path, OnnxOptions(opset=18), verify=False, exist_ok=True)
    assert sha256_file(tmp_path / "model.onnx") != before
    assert not any((tmp_path / n).exists() for n in derived) and not (tmp_path / "parity.json").exists()


def test_export_never_replaces_or_removes_files_it_did_not_write(tiny_checkpoint, tmp_path, cli_run):
    """A folder holding, under export's names, a model without edgeseg's record or a JSON file that
    is not a parity report: refused in one line before anything is written (kept byte for byte),
    replaced with --exist-ok; a .NAME.previous beside a file of another name is left alone."""
    import onnx

    foreign = {"model.onnx": onnx.helper.make_model(onnx.helper.make_graph([], "theirs", [], [])).SerializeToString(),
               "parity.json": b'{"my": 1}', "model.xml": b"<net/>", "notes.json": b"mine", ".notes.json.previous": b"OLD BACKUP",
               "model.rejected.onnx": b"mine", "parity.rejected.json": b'{"mine": 1}'}
    for name, data in foreign.items():
        out = tmp_path / name.strip(".").replace(".", "-")
        out.mkdir()
        (out / name).write_bytes(data)
        if name == ".notes.json.previous":
            (out / "notes.json").write_bytes(b"mine")
        code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", out, "--no-verify", "--quiet")
        if name.endswith("notes.json.previous") or name == "notes.json":
            assert code == 0, err
            assert (out / "notes.json").read_bytes() == b"mine" and (out / "model.onnx").is_file()
            continue
        assert code == 2 and err.count("\n") == 1 and f"holds {name} under the names export writes" in err, err
        assert (out / name).read_bytes() == data and sorted(p.name for p in out.iterdir()) == [name]
        code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", out, "--no-verify", "--exist-ok", "--quiet")
        assert code == 0, err
        assert (out / "model.onnx").read_bytes() != foreign["model.onnx"]
        code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", out, "--no-verify", "--quiet")
        if name == "model.xml":  # not a name this export wrote: still someone else's
            assert code == 2 and (out / name).read_bytes() == data, err
        else:
            assert code == 0, err  # what it wrote is its own from then on


def test_an_export_folder_of_edgeseg_0_1_0_is_its_own(tiny_checkpoint, tmp_path, cli_run):
    """0.1.0 marked its models with flat edgeseg.<field> keys, not the record: still edgeseg's files."""
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "v0_1_0"
    (tmp_path / "model.onnx").write_bytes((fixtures / "tiny.onnx").read_bytes())
    (tmp_path / "model.xml").write_bytes((fixtures / "tiny.xml").read_bytes())
    (tmp_path / "model.bin").write_bytes((fixtures / "tiny.bin").read_bytes())
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--no-verify", "--exist-ok", "--quiet")
    assert code == 0, err  # (--exist-ok: the IR built from the replaced model.onnx goes)
    (tmp_path / "model.onnx").write_bytes((fixtures / "tiny.onnx").read_bytes())
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path, "--no-verify", "--quiet")
    assert code == 0, err


def fail_parity_of(monkeypatch, suffix: str) -> None:
    """Make the export's parity check fail for the artefact whose name ends with ``suffix``."""
    from edgeseg.tasks import export as export_task

    real = export_task.verify_parity

    def check(model_path, *a, **kw):
        parity = real(model_path, *a, **kw)
        if str(model_path).endswith(suffix):
            parity.update(passed=False, failures=["made to fail"])
        return parity

    monkeypatch.setattr(export_task, "verify_parity", check)


def test_every_parity_report_a_format_writes_is_declared_with_it():
    """Format.reports lists what its gates write (a replaced model's reports are removed by it)."""
    from pathlib import Path

    from edgeseg.export.formats import FORMATS, ExportOptions, Request
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.trt_build import TrtOptions

    for trt in (TrtOptions(precision="fp32"), TrtOptions(precision="fp16"), TrtOptions(precision="int8")):
        r = Request(Path("x.pt"), Path("."), ExportOptions(formats=tuple(FORMATS)), int8=Int8Options(), trt=trt)
        for fmt in FORMATS.values():
            assert {g.report for g in fmt.gates(r)} <= set(fmt.reports), fmt.name


def test_a_check_device_this_machine_lacks_is_refused_before_anything_is_built(cli_run, tiny_checkpoint, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine with CUDA has cuda:0")
    code, _, err = cli_run("export", "--model", tiny_checkpoint, "--out", tmp_path / "o", "--device", "cuda:2", "--quiet")
    assert code == 2 and "--device cuda:2: no CUDA device" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
