"""Distillation from a teacher (train --teacher) and the SR auxiliary (train --sr-aux)."""

import json
import os
import signal

import onnx
import pytest
import torch

from edgeseg.errors import ConfigError, DataError
from edgeseg.trainer import TrainConfig, train


def cfg(data, out, **kw):
    base = dict(out=str(out), res=(24, 18), upscale=2, dataset="folder", data=str(data), model="tiny", epochs=2, batch=2,
                progress=False, workers=0, device="cpu", pretrained="none")
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def teacher(shared_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(TrainConfig(out=str(out), res=(48, 36), dataset="folder", data=str(shared_folder), model="tiny", epochs=2, batch=2,
                      progress=False, workers=0, device="cpu", pretrained="none"))
    return out / "last.pt"


def test_teacher_labels_are_made_once_checked_and_reused(teacher, shared_folder, tmp_path, monkeypatch):
    from edgeseg.data import build_dataset
    from edgeseg.trainer import distill

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    ds = build_dataset("folder", shared_folder, "train")
    made = []
    real = distill.make_teacher_labels
    monkeypatch.setattr(distill, "make_teacher_labels", lambda *a, **k: made.append(1) or real(*a, **k))
    folder = distill.teacher_labels(str(teacher), ds, 1.0, "cpu", progress=False)
    assert distill.teacher_labels(str(teacher), ds, 1.0, "cpu", progress=False) == folder and made == [1]  # reused
    monkeypatch.chdir(shared_folder.parent)  # the same images named by a relative --data: the same labels
    relative = build_dataset("folder", shared_folder.name, "train")
    assert distill.teacher_labels(str(teacher), relative, 1.0, "cpu", progress=False) == folder and made == [1]
    sample = distill.WithTeacher(ds, folder)[0]
    assert sample.teacher.shape == sample.label.shape + (2 * distill.TOP_K,)
    probs = sample.teacher[..., 1::2].astype(int).sum(-1)
    assert probs.max() <= 255 + 3 and probs.min() > 128  # the top-K hold most of a pixel's probability
    assert distill.teacher_labels(str(folder), ds, 1.0) == folder  # a folder is taken as it is, once checked
    with pytest.raises(ConfigError, match="made at temperature 1.0, not --distill-temperature 2.0"):
        distill.teacher_labels(str(folder), ds, 2.0)
    image = ds.sample_files(0)[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="made from other images"):
        distill.teacher_labels(str(folder), ds, 1.0)
    (folder / "000001.npy").unlink()
    with pytest.raises(DataError, match="made from other images|000001.npy is missing"):
        distill.teacher_labels(str(folder), ds, 1.0)


def test_bad_teachers_and_options_are_refused_before_any_step(teacher, shared_folder, tmp_path, cli_run, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "classes.json").write_text(json.dumps({"names": ["x", "y", "z"]}))
    base = ["train", "--dataset", "folder", "--data", shared_folder, "--model", "tiny", "--res", "24x18", "--epochs", "1", "--batch", "2",
            "--quiet", "--pretrained", "none"]
    from conftest import make_folder_dataset

    three = make_folder_dataset(tmp_path / "three")
    (three / "classes.json").write_text(json.dumps({"names": ["a", "b", "c", "d", "e", "f"]}))
    for extra, expect in [(["--teacher", tmp_path / "missing.pt"], "missing.pt: not found"),
                          (["--teacher", other], "no manifest.json"),
                          (["--teacher", teacher, "--distill-weight", "1.5"], "'--distill-weight': 1.5: expected a number in [0, 1]"),
                          (["--teacher", teacher, "--distill-weight", "nan"], "'--distill-weight': nan: expected a finite number"),
                          (["--teacher", teacher, "--distill-temperature", "0"], "--distill-temperature"),
                          (["--sr-aux"], "--sr-aux: model 'tiny-msa' has its own output stage")]:
        args = [*base[:6], "tiny-msa", *base[7:]] if extra[0] == "--sr-aux" else base  # the model given once: a repeat is refused
        code, _, err = cli_run(*args, "--out", tmp_path / f"r{len(extra)}{extra[-1]}".replace("/", "_"), *extra)
        assert code == 2 and expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (extra, err)
    code, _, err = cli_run(*base[:4], three, *base[5:], "--out", tmp_path / "cls", "--teacher", teacher)
    assert code == 2 and "a teacher must be trained on the same classes" in err, err


def test_distillation_loss_is_zero_when_the_student_is_the_teacher():
    from edgeseg.trainer.losses import distill_loss

    z = torch.randn(2, 5, 6, 7)
    for T in (1.0, 3.0):
        mass = torch.softmax(z / T, 1)
        assert float(distill_loss(z, mass, mass.sum(1), T)) == pytest.approx(0.0, abs=1e-5)
        assert float(distill_loss(torch.randn(2, 5, 6, 7), mass, mass.sum(1), T)) > 0.01


def _kl_reference(z, mass, valid, T, w=None):
    """The distillation term written out per pixel and class: sum w_c t_c log(t_c / q_c), over sum w_c m_c."""
    w = torch.ones(z.shape[1]) if w is None else w
    q = torch.softmax(z.double() / T, 1)
    t = mass.double() / valid.double().unsqueeze(1)
    wm = mass.double() * w.double().view(1, -1, 1, 1)
    terms = torch.where(mass > 0, wm * (torch.log(t.clamp(min=1e-300)) - torch.log(q)), torch.zeros_like(wm))
    return T**2 * terms.sum() / wm.sum()  # with no weights, the valid mass


def test_distillation_loss_equals_its_written_out_form_with_and_without_class_weights():
    from edgeseg.trainer.losses import distill_loss

    g = torch.Generator().manual_seed(0)
    z, mass = torch.randn(2, 5, 6, 7, generator=g), torch.softmax(torch.randn(2, 5, 6, 7, generator=g) * 3, 1)
    mass = mass * torch.rand(2, 1, 6, 7, generator=g)  # partly void pixels
    mass[:, 2] = torch.where(mass[:, 2] < 0.05, torch.zeros_like(mass[:, 2]), mass[:, 2])  # absent classes (0 log 0)
    valid = mass.sum(1)
    w = torch.tensor([0.5, 1.0, 4.0, 0.8, 2.0])
    for T in (1.0, 2.5):
        assert float(distill_loss(z, mass, valid, T)) == pytest.approx(float(_kl_reference(z, mass, valid, T)), rel=1e-5)
        assert float(distill_loss(z, mass, valid, T, w)) == pytest.approx(float(_kl_reference(z, mass, valid, T, w)), rel=1e-5)
        # equal weights are no weights; any weights move the minimum to q proportional to w * t, as in the label loss
        assert float(distill_loss(z, mass, valid, T, torch.full((5,), 3.0))) == pytest.approx(float(distill_loss(z, mass, valid, T)), rel=1e-5)
        at = (T * torch.log(mass * w.view(1, -1, 1, 1) + 1e-12)).requires_grad_()
        distill_loss(at, mass, valid, T, w).backward()
        assert float(at.grad.abs().max()) < 1e-5


def test_class_weighted_distillation_trains_and_changes_the_weights(teacher, shared_folder, tmp_path, monkeypatch):
    """--distill-class-weights is taken (the run differs from the unweighted one) and recorded in the run's config."""
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    kw = dict(teacher=str(teacher), class_weights="sqrt", epochs=1)
    train(cfg(shared_folder, tmp_path / "plain", **kw))
    train(cfg(shared_folder, tmp_path / "weighted", distill_class_weights=True, **kw))
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("plain", "weighted"))
    assert all(torch.isfinite(v).all() for v in b["model"].values() if v.is_floating_point())
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"] if a["model"][k].is_floating_point())
    assert json.loads((tmp_path / "weighted" / "config.json").read_text())["distill_class_weights"] is True


def test_sr_aux_and_teacher_train_resume_exactly_and_export_the_plain_graph(teacher, shared_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    kw = dict(sr_aux=True, teacher=str(teacher), epochs=3)
    train(cfg(shared_folder, tmp_path / "straight", **kw))

    def interrupt_at(step):
        if step == 8:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(cfg(shared_folder, tmp_path / "split", **kw), on_step=interrupt_at)["interrupted"]
    train(cfg(shared_folder, tmp_path / "split", resume=True, **kw))
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("straight", "split"))
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    for k in a["training"]["aux"]["sr_head"]:
        torch.testing.assert_close(a["training"]["aux"]["sr_head"][k], b["training"]["aux"]["sr_head"][k], rtol=0, atol=0)
    # the exported graph is that of the same model trained without the SR branch: same operators, same weights' names and shapes
    train(cfg(shared_folder, tmp_path / "plain", epochs=1))
    from edgeseg.export import export_onnx

    graphs = [onnx.load(str(export_onnx(tmp_path / r / "last.pt", tmp_path / f"{r}.onnx")[0])).graph for r in ("straight", "plain")]
    assert [n.op_type for n in graphs[0].node] == [n.op_type for n in graphs[1].node]
    assert [(i.name, list(i.dims)) for i in graphs[0].initializer] == [(i.name, list(i.dims)) for i in graphs[1].initializer]
    assert not any("head.out" in i.name or "shuffle" in n.name for i in graphs[0].initializer for n in graphs[0].node[:1])


def test_damaged_teacher_label_files_are_refused_naming_the_file_before_any_step(teacher, shared_folder, tmp_path, monkeypatch):
    """Every way one file of a label folder can be wrong (other shape, channels, dtype, class
    indices, truncated, not an array) is one DataError naming that file, never a traceback
    mid-training or labels read wrongly."""
    import shutil

    import numpy as np

    from edgeseg.data import build_dataset
    from edgeseg.trainer import distill

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    ds = build_dataset("folder", shared_folder, "train")
    good = distill.teacher_labels(str(teacher), ds, 1.0, "cpu", progress=False)
    a = np.load(good / "000000.npy")
    damages = {
        "two-d": lambda p: np.save(p, a[..., 0]),
        "channels": lambda p: np.save(p, a[..., :4]),
        "float": lambda p: np.save(p, a.astype(np.float32)),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
        "text": lambda p: p.write_text("not an array"),
    }
    for name, damage in damages.items():
        folder = tmp_path / name
        shutil.copytree(good, folder)
        damage(folder / "000000.npy")
        with pytest.raises(DataError, match=r"000000\.npy"):
            distill.teacher_labels(str(folder), ds, 1.0)
    folder = tmp_path / "class"
    shutil.copytree(good, folder)
    b = a.copy()
    b[..., 0] = 200  # a class index the data set does not have, wherever the window falls
    np.save(folder / "000000.npy", b)
    with pytest.raises(DataError, match=r"teacher labels \(--teacher\): label values \[200\] are neither a class"):
        train(cfg(shared_folder, tmp_path / "run", teacher=str(folder), epochs=1))


def test_a_resume_refuses_another_teacher_under_the_same_path(teacher, shared_folder, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "teacher.pt"
    shutil.copy(teacher, path)

    def interrupt_at(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(cfg(shared_folder, tmp_path / "run", teacher=str(path)), on_step=interrupt_at)["interrupted"]
    # the same teacher and data, spelt otherwise: the same run (compared by what the paths name)
    with pytest.raises(ConfigError, match="--teacher"):  # another file is another teacher
        train(cfg(shared_folder, tmp_path / "run", teacher=str(teacher), resume=True))
    respelt = cfg(f"{shared_folder}/.", tmp_path / "run", teacher=f"{tmp_path}/../{tmp_path.name}/teacher.pt", resume=True)
    assert train(respelt, on_step=lambda step: interrupt_at(step - 1))["interrupted"]
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, path)  # another model, same path
    with pytest.raises(ConfigError, match="not the teacher the run in .* began with"):
        train(cfg(shared_folder, tmp_path / "run", teacher=str(path), resume=True))


@pytest.mark.parametrize("option,needs", [(dict(distill_weight=0.9), "--teacher"), (dict(distill_temperature=2.0), "--teacher"),
                                          (dict(sr_weight=0.5), "--sr-aux"), (dict(contrastive_pixels=50), "--contrastive-epochs"),
                                          (dict(subset_seed=3), "--train-fraction"),
                                          (dict(loss="kl", labels="nearest"), "--labels soft or onehot-bilinear"),
                                          (dict(distill_class_weights=True, class_weights="sqrt"), "--teacher"),
                                          (dict(distill_class_weights=True, teacher="t.pt"), "--class-weights log or sqrt")])
def test_an_option_that_needs_another_is_refused_without_it(option, needs, tmp_path):
    with pytest.raises(ConfigError, match=f"applies only with {needs}"):
        cfg(tmp_path, tmp_path / "run", **option)


def test_a_resume_may_restate_an_option_whose_need_is_in_the_run(shared_folder, tmp_path):
    """``--resume --sr-weight 0.5`` on a run started with ``--sr-aux --sr-weight 0.5`` is the same
    run: the need is met by the run's own options; on a run without ``--sr-aux`` it is refused."""
    def interrupt_at(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(cfg(shared_folder, tmp_path / "sr", sr_aux=True, sr_weight=0.5, epochs=1), on_step=interrupt_at)["interrupted"]
    assert not train(cfg(shared_folder, tmp_path / "sr", sr_weight=0.5, epochs=1, resume=True)).get("interrupted")
    assert train(cfg(shared_folder, tmp_path / "plain", epochs=1), on_step=interrupt_at)["interrupted"]
    with pytest.raises(ConfigError, match="--sr-weight: applies only with --sr-aux"):
        train(cfg(shared_folder, tmp_path / "plain", sr_weight=0.5, epochs=1, resume=True))
    with pytest.raises(ConfigError, match="--sr-weight: applies only with --sr-aux"):  # --resume with no run to resume
        train(cfg(shared_folder, tmp_path / "new", sr_weight=0.5, epochs=1, resume=True))


def test_an_option_with_what_it_needs_is_taken(tmp_path):
    for option in (dict(loss="kl", labels="onehot-bilinear"), dict(loss="kl", labels="soft"), dict(sr_aux=True, sr_weight=0.5)):
        cfg(tmp_path, tmp_path / "run", **option)
