import json

from conftest import camvid_root


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
