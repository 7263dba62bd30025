import json

import pytest
from conftest import camvid_root

from edgeseg import runtime


def test_help_lists_commands(cli_run):
    code, out, _ = cli_run("--help")
    assert code == 0 and "labels" in out


def test_labels_check_on_synthetic_writes_json(cli_run, tmp_path):
    path = tmp_path / "check.json"
    code, out, err = cli_run("labels", "check", "--limit", "2", "--json", path)
    assert code == 0, err
    result = json.loads(path.read_text())
    assert result["res"] == [512, 256] and set(result["modes"]) == {"soft-area", "soft-bilinear", "nearest", "onehot-bilinear"}
    miou = {m: v["miou"] for m, v in result["modes"].items()}
    assert all(0 < v <= 100 for v in miou.values())
    # at a 2x reduction the class mass keeps more of the label than one sample per cell
    assert miou["soft-area"] > miou["nearest"] + 1
    assert "mIoU*" in out and "soft-area" in out


def test_labels_check_on_camvid(cli_run, tmp_path):
    root = camvid_root()
    code, out, err = cli_run("labels", "check", "--dataset", "camvid", "--data", root, "--res", "120x90", "--limit", "3", "--modes", "soft-area,nearest")
    assert code == 0, err
    assert "Pole" in out and "nearest" in out


def test_bad_options_give_one_line_errors(cli_run, tmp_path):
    for args, needle in [
        (("labels", "check", "--res", "512by256"), "--res"),
        (("labels", "check", "--dataset", "camvid"), "needs --data"),
        (("labels", "check", "--dataset", "camvid", "--data", tmp_path / "none"), "not found"),
        (("labels", "check", "--modes", "soft-area,bicubic"), "--modes"),
    ]:
        code, out, err = cli_run(*args)
        assert code == 2, (args, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_models_lists_the_registry(cli_run):
    code, out, _ = cli_run("models", "--classes", "11")
    assert code == 0 and "lite0-lraspp" in out and "[default]" in out and "lite0-dupsample" in out


def test_hostile_inputs_are_one_line_errors(cli_run, tmp_path, monkeypatch):
    """A few of the reliability battery's cases: each a one-line error naming the file or option, exit 2."""
    import numpy as np
    from PIL import Image

    from edgeseg import limits
    from edgeseg.data import base

    # a PNG whose header claims more pixels than the limit (decompression bomb)
    monkeypatch.setattr(limits, "MAX_PIXELS", 100)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "big.png")
    from edgeseg.errors import DataError

    for read in (base.read_image, base.read_label, base.image_size):
        with pytest.raises(DataError, match="big.png: the header claims 20x20 is 0 MP, above the 0 MP limit"):
            read(tmp_path / "big.png")
    monkeypatch.undo()
    # a 16-bit image is reduced by a stated rule (top byte), not clipped
    Image.fromarray(np.full((4, 4), 0xABCD, np.uint16)).save(tmp_path / "deep.png")
    assert (base.read_image(tmp_path / "deep.png") == 0xAB).all()
    for args, expect in [
        (("train", "--out", tmp_path / "r", "--lr", "nan"), "'--lr': nan: expected a finite number"),
        (("train", "--out", tmp_path / "r", "--val-limit", "0"), "'--val-limit': 0: expected a whole number in [1, 1e+09]"),
        (("train", "--out", tmp_path / "r", "--workers", "-1"), "'--workers': -1: expected a whole number in [0, 256]"),
        (("train", "--out", tmp_path / "r", "--res", "100000x100000"), "100000x100000: width and height must be within 1..16384"),
        (("export", "--model", tmp_path / "model.onnx"), "export starts from a training checkpoint"),
        (("train", "--out", tmp_path / "r", "--model-opt", "bogus=1"), "--model-opt bogus: 'lite0-lraspp' has no such option"),
        (("train", "--out", tmp_path / "r", "--model-opt", "inter=wide"), "--model-opt inter='wide': expected int"),
    ]:
        code, _, err = cli_run(*args)
        assert code == 2 and expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


def test_onnx_output_that_contradicts_its_metadata_is_refused(tiny_checkpoint, tmp_path):
    import onnx

    from edgeseg.errors import ModelFileError
    from edgeseg.export import export_onnx

    path, _ = export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    from dataclasses import replace

    from edgeseg.data.base import DatasetInfo
    from edgeseg.models import ModelMeta

    proto = onnx.load(str(path))
    meta = ModelMeta.from_props({p.key: p.value for p in proto.metadata_props}, "m.onnx")
    nine = meta.with_(model=replace(meta.model, num_classes=9), data=DatasetInfo("d", tuple("abcdefghi"), ((0, 0, 0),) * 9))
    onnx.helper.set_model_props(proto, nine.to_props())
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelFileError, match="logits have 5 channels but its metadata names 9 classes"):
        runtime.load(tmp_path / "bad.onnx", device="cpu")


def test_eval_and_labels_check_draw_pictures(cli_run, tiny_checkpoint, shared_folder, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the 'plot' extra")
    from PIL import Image

    code, _, err = cli_run("eval", "--model", tiny_checkpoint, "--reference", tiny_checkpoint, "--plot", tmp_path / "e.png",
                           "--json", tmp_path / "e.json", "--quiet")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert len(result["confusion"]) == 5 and sum(map(sum, result["confusion"])) > 0
    with Image.open(tmp_path / "e.png") as im:
        assert im.format == "PNG" and im.size[0] > 400
    code, _, err = cli_run("labels", "check", "--dataset", "folder", "--data", shared_folder, "--res", "24x18",
                           "--plot", tmp_path / "l.png", "--quiet")
    assert code == 0, err
    with Image.open(tmp_path / "l.png") as im:
        assert im.format == "PNG"
    code, _, err = cli_run("eval", "--model", tiny_checkpoint, "--plot", tmp_path / "e.jpg")
    assert code == 2 and "--plot" in err and ".png" in err


def test_a_plot_index_beyond_the_images_is_refused_before_the_check_runs(cli_run, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = cli_run("labels", "check", "--limit", "2", "--res", "64x32", "--plot", tmp_path / "p.png", "--plot-index", "5",
                             "--json", tmp_path / "r.json", "--quiet")
    assert code == 2 and "--plot-index 5: synthetic/val has 2 images" in err and len(err.strip().splitlines()) == 1, err
    assert out == "" and not (tmp_path / "r.json").exists()  # refused before the table, not after it


def test_labels_check_names_a_stride_above_the_resolution_and_says_when_it_up_samples(cli_run, folder_dataset):
    code, _, err = cli_run("labels", "check", "--dataset", "folder", "--data", folder_dataset, "--split", "train", "--res", "47x35",
                           "--modes", "dupsample", "--dup-stride", "64", "--dup-channels", "8")
    assert code == 2 and err.count("\n") == 1 and "--dup-stride 64: larger than --res 47x35" in err, err
    code, _, err = cli_run("labels", "check", "--dataset", "folder", "--data", folder_dataset, "--res", "96x72", "--modes", "nearest")
    assert code == 0 and "--res 96x72 is above the frames" in err, err
