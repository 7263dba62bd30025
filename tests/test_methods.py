import logging

"""The seed papers' methods: DUpsampling, multi-scale attention, pixel contrastive
pretraining, auto-labelling and class-uniform sampling."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg import runtime
from edgeseg.data import build_dataset, downsample_labels, resize
from edgeseg.data.synthetic import Synthetic
from edgeseg.models import ModelConfig, build_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ DUpsampling
def test_w_has_orthonormal_columns_and_beats_bilinear_on_synthetic_labels():
    from edgeseg.tasks.labels_check import check_labels
    from edgeseg.trainer.dupsample_w import fitted_w

    train = Synthetic("train").subset(range(6))
    W = fitted_w(train, (256, 128), r=8, channels=48, label_mode="soft", kernel="area")
    assert W.shape == (9 * 8 * 8, 48)
    torch.testing.assert_close(W.T @ W, torch.eye(48), atol=1e-4, rtol=0)
    val = Synthetic("val").subset(range(3))
    result = check_labels(val, (256, 128), ("dupsample", "stride-bilinear"), progress=False, dup={"W": W, "r": 8})
    assert result["modes"]["dupsample"]["miou"] > result["modes"]["stride-bilinear"]["miou"] + 5


def test_w_is_cached_and_loaded_into_the_head(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    from edgeseg.trainer.dupsample_w import fitted_w

    train = Synthetic("train").subset(range(2))
    a = fitted_w(train, (128, 64), 8, 16, "soft", "area")
    b = fitted_w(train, (128, 64), 8, 16, "soft", "area")
    assert torch.equal(a, b) and "from cache" in caplog.messages[-1]
    model = build_model(ModelConfig("lite0-dupsample", 9, options={"stride": 8, "channels": 16}))
    model.head.set_w(a)
    assert torch.equal(model.head.reconstruct.weight.view(9 * 64, 16), a)
    assert not model.head.reconstruct.weight.requires_grad  # fixed unless finetune_w
    with pytest.raises(ValueError, match="W has shape"):
        model.head.set_w(a[:, :8])
    # a damaged cache file, or one of another shape, is said and fitted again, never trusted
    from edgeseg.fileio import cache_dir

    (cached,) = (cache_dir() / "dupsample").glob("*.npz")
    for damage in (b"not a zip", None):
        if damage is None:
            np.savez(cached, W=np.zeros((3, 3), np.float32), n_blocks=np.array(1))
        else:
            cached.write_bytes(damage)
        caplog.clear()
        assert torch.equal(fitted_w(train, (128, 64), 8, 16, "soft", "area"), a)
        assert any("computing it again" in m for m in caplog.messages), caplog.messages


def test_dupsample_head_reconstructs_blocks_with_pixel_shuffle():
    from edgeseg.models.dupsample import DUpsampleHead
    from edgeseg.trainer.dupsample_w import block_vectors

    head = DUpsampleHead(4, num_classes=3, stride=2, channels=5)
    torch.nn.init.eye_(head.proj.weight.view(5, 4))
    x = torch.randn(1, 4, 3, 3)
    out = head(x)
    assert out.shape == (1, 3, 6, 6)
    # the 1x1 convolution plus pixel_shuffle equals W applied to each position's C' vector
    z = head.proj(x)[0].permute(1, 2, 0).reshape(9, 5)
    W = head.reconstruct.weight.view(12, 5)
    blocks = block_vectors(out[0].detach(), torch.ones(6, 6), 2)
    torch.testing.assert_close(blocks, (z @ W.T).detach(), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ multi-scale attention
def _force_attention(model, value: float):
    with torch.no_grad():
        model.attention.out.weight.zero_()
        model.attention.out.bias.fill_(1e4 if value == 1 else -1e4)


def test_cascade_equals_single_scale_when_attention_is_constant():
    torch.manual_seed(0)
    model = build_model(ModelConfig("tiny-msa", 4)).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        _force_attention(model, 1)  # the lower scale wins everywhere: the 0.5 model, up-sampled
        low, _ = model.single_scale(torch.nn.functional.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False))
        torch.testing.assert_close(model(x), torch.nn.functional.interpolate(low, size=(32, 48), mode="bilinear", align_corners=False))
        _force_attention(model, 0)  # the lower scale is ignored: the single-scale model
        torch.testing.assert_close(model(x), model.single_scale(x)[0])
        # scales above 1.0 cascade too: 1.0 comes after 2.0 and, with attention 1, replaces it
        _force_attention(model, 1)
        model.infer_scales = (2.0, 1.0)
        torch.testing.assert_close(model(x), model.single_scale(x)[0])


def test_msa_training_loss_uses_joint_and_auxiliary_predictions():
    from edgeseg.models.msa import AUX_WEIGHT

    torch.manual_seed(0)
    model = build_model(ModelConfig("tiny-msa", 4)).train()
    out = model(torch.randn(2, 3, 32, 48))
    assert set(out) == {"logits", "aux", "aux_weight"} and out["aux_weight"] == AUX_WEIGHT == 0.05
    assert len(out["aux"]) == 2 and all(a.shape == (2, 4, 32, 48) for a in out["aux"])
    from edgeseg.trainer.losses import compute_loss, hard_cross_entropy

    target = {"label": torch.randint(0, 4, (2, 32, 48))}
    expected = hard_cross_entropy(out["logits"], target["label"]) + 0.05 * sum(hard_cross_entropy(a, target["label"]) for a in out["aux"])
    torch.testing.assert_close(compute_loss(out, target), expected)


def test_msa_exports_with_fixed_scales(tmp_path):
    from test_export import fake_checkpoint

    from edgeseg.export import OnnxOptions, export_onnx

    ckpt = fake_checkpoint(tmp_path / "m.pt", "tiny-msa")
    path, meta = export_onnx(ckpt, tmp_path / "m.onnx", OnnxOptions(scales="0.5,1.0,2.0"))
    assert meta.extra["scales"] == [2.0, 1.0, 0.5]
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 64)).astype(np.float32)
    with runtime.load(ckpt, scales="0.5,1.0,2.0") as ref, runtime.load(path, device="cpu") as ort_runner:
        np.testing.assert_allclose(ort_runner.infer(x)["logits"], ref.infer(x)["logits"], atol=1e-4)
    from edgeseg.runtime.spec import RunnerSpec
    from edgeseg.tasks.evaluate import reference_spec

    assert reference_spec(RunnerSpec(), ckpt, meta).scales == (2.0, 1.0, 0.5)  # eval --reference runs the graph's scales
    from edgeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="multi-scale attention"):
        export_onnx(fake_checkpoint(tmp_path / "t.pt", "tiny"), tmp_path / "t.onnx", OnnxOptions(scales="0.5,1.0"))
    with pytest.raises(ConfigError, match="include 1.0"):
        export_onnx(ckpt, tmp_path / "bad.onnx", OnnxOptions(scales="0.5,2.0"))


# ------------------------------------------------------------------ contrastive
def test_contrastive_loss_matches_a_per_pixel_reference():
    from edgeseg.trainer.contrastive import contrastive_loss

    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(9, 5), dim=1)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # class 3 has no positive: not an anchor
    t = 0.07
    losses = []
    for i in range(9):
        pos = [p for p in range(9) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = sum(torch.exp(z[i] @ z[a] / t) for a in range(9) if a != i)
        losses.append(-sum(torch.log(torch.exp(z[i] @ z[p] / t) / denom) for p in pos) / len(pos))
    torch.testing.assert_close(contrastive_loss(z, y, t), torch.stack(losses).mean(), atol=1e-4, rtol=1e-5)


def test_grid_labels_and_pixel_sampling():
    from edgeseg.trainer.contrastive import IGNORE, grid_labels, sample_pixels

    lab = torch.full((1, 4, 4), 255)
    lab[0, :2, :2] = 1
    lab[0, :2, 2:] = 2
    lab[0, 2:, :2] = torch.tensor([[0, 1], [1, 1]])  # 3/4 of class 1
    mass, valid = downsample_labels(lab[0].to(torch.uint8), (4, 4), 3)
    got = grid_labels({"mass": mass[None], "valid": valid[None]}, (2, 2), 3, threshold=0.8)
    assert got.tolist() == [[[1, 2], [IGNORE, IGNORE]]]  # 75% < 80%; all-void cell ignored
    z = torch.randn(1, 8, 2, 2)
    zs, ys = sample_pixels(z, got, 1, torch.Generator().manual_seed(0))
    assert zs.shape == (1, 8) and ys.item() in (1, 2)


def test_contrastive_pretraining_runs_before_training(folder_dataset, tmp_path):
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path / "run"
    result = train(TrainConfig(out=str(out), res=(48, 36), dataset="folder", data=str(folder_dataset), model="tiny", epochs=1,
                               batch=2, progress=False, workers=0, device="cpu", contrastive_epochs=2, contrastive_pixels=50))
    assert result["epochs"] == 1
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["contrastive"]["history"]) == 2 and "contrastive" in cfg["init"]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in cfg["contrastive"]["history"])
    # the phase trained encoder and decoder, left the classifier head alone, and supervised training started from it
    torch.manual_seed(0)  # the trainer's seed: the same initial weights
    from edgeseg.models import ModelConfig, build_model

    initial = build_model(ModelConfig("tiny", 5, res=(48, 36))).state_dict()
    pretrained = torch.load(out / "contrastive.pt", weights_only=True)["model"]
    changed = {k for k, v in pretrained.items() if v.dtype.is_floating_point and not torch.equal(v, initial[k])}
    assert any(k.startswith("encoder.") and k.endswith("weight") for k in changed)
    assert not any(k.startswith("head.") for k in changed)


def test_contrastive_pretraining_that_finds_no_pairs_says_it_learnt_nothing(folder_dataset, tmp_path, caplog):
    from edgeseg.trainer import TrainConfig, train

    train(TrainConfig(out=str(tmp_path / "run"), res=(48, 36), dataset="folder", data=str(folder_dataset), model="tiny", epochs=1,
                      batch=2, progress=False, workers=0, device="cpu", contrastive_epochs=1, contrastive_pixels=2, contrastive_threshold=1.0))
    assert "no step sampled two pixels of one class and one of another" in caplog.text


# ------------------------------------------------------------------ auto-labelling
def test_autolabel_respects_the_threshold_and_trains(tiny_checkpoint, shared_folder, tmp_path):
    from edgeseg.models import load_checkpoint, model_from_checkpoint
    from edgeseg.tasks.autolabel import autolabel
    from edgeseg.trainer import TrainConfig, train

    out = tmp_path / "auto"
    summary = autolabel(tiny_checkpoint, [shared_folder / "train" / "images"], out, threshold=0.5, soft=True)
    assert summary["images"] == 12 and 0 < summary["labelled_fraction"] < 1
    # expected labels from the bare model: the 48x36 images are the model's input size, so no resizing
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint)).eval()
    with torch.no_grad():
        for name in ("s0", "s5"):
            image = np.array(Image.open(shared_folder / "train" / "images" / f"{name}.png"))
            x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.0) / 128.0
            p, c = torch.softmax(model(x)[0], 0).max(0)
            mask = np.array(Image.open(out / "masks" / f"{name}.png"))
            confident = p.numpy() >= 0.5
            assert (mask[confident] == c.numpy()[confident]).all() and (mask[~confident] == 255).all()
            soft = np.array(Image.open(out / "soft" / f"{name}.png"))
            assert (soft[..., 0] == c.numpy()).all() and np.abs(soft[..., 1] / 255 - p.numpy()).max() <= 0.5 / 255 + 1e-6
    ds = build_dataset("folder", out, "train")
    sample = ds[0]
    assert ds.info.class_names == ("a", "b", "c", "d", "e") and sample.soft is not None and sample.soft.shape[2] == 4
    result = train(TrainConfig(out=str(tmp_path / "student"), res=(48, 36), dataset="folder", data=str(shared_folder), model="tiny",
                               epochs=1, batch=4, progress=False, workers=0, device="cpu", extra_data=(str(out),)))
    assert json.loads((tmp_path / "student" / "config.json").read_text())["train_samples"] == 24 and result["epochs"] == 1
    from edgeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="already holds a labelling"):
        autolabel(tiny_checkpoint, [shared_folder / "val" / "images"], out)


def test_weighted_labels_match_a_dense_reference():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (30, 40)).astype(np.uint8)
    lab[rng.random((30, 40)) < 0.1] = 255
    weight = rng.random((30, 40)).astype(np.float32)
    for kernel in ("area", "bilinear"):
        onehot = torch.stack([torch.from_numpy((lab == c) * weight) for c in range(4)])
        ref = resize(onehot.float(), (7, 13), kernel)
        mass, valid = downsample_labels(torch.from_numpy(lab), (7, 13), 4, kernel=kernel, weight=weight)
        torch.testing.assert_close(mass, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(valid, ref.sum(0), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ class-uniform sampling
def test_class_uniform_centroids_plan_and_crops(shared_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    from edgeseg.data.class_uniform import cached_centroids, epoch_plan
    from edgeseg.data.transforms import Augment, TrainTransform

    ds = build_dataset("folder", shared_folder, "train")
    cent = cached_centroids(ds)
    again = cached_centroids(ds)
    assert "from cache" in caplog.messages[-1] and all(np.array_equal(cent[c], again[c]) for c in cent)
    for c, arr in cent.items():
        for i, y, x in arr[:5]:
            lab = ds[int(i)].label
            assert 0 <= y < lab.shape[0] and 0 <= x < lab.shape[1]
    plan = epoch_plan(len(ds), 0.5, cent, seed=0, epoch=3)
    assert len(plan) == len(ds) and sum(c is not None for _, c in plan) == 6
    assert plan == epoch_plan(len(ds), 0.5, cent, seed=0, epoch=3) != epoch_plan(len(ds), 0.5, cent, seed=0, epoch=4)
    tf = TrainTransform((24, 18), ds.info, augment=Augment(scale=(2.0, 2.0), hflip=False, jitter=0.0))
    x0, y0, cw, ch = tf.window(36, 48, np.random.default_rng(0), centre=(30, 5))
    assert x0 <= 5 < x0 + cw and y0 <= 30 < y0 + ch and x0 >= 0 and y0 + ch <= 36


def test_label_caches_notice_edited_labels(shared_folder, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    import shutil

    from edgeseg.data import build_dataset
    from edgeseg.data.class_uniform import cached_centroids

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(shared_folder, root)
    ds = build_dataset("folder", str(root), "train")
    before = ds.fingerprint()
    cached_centroids(ds)
    mask = ds.label_files(0)[0]
    label = np.array(Image.open(mask))
    label[:] = 1 - np.clip(label, 0, 1)  # a different labelling, same size
    Image.fromarray(label).save(mask)
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    ds = build_dataset("folder", str(root), "train")
    assert ds.fingerprint() != before
    caplog.clear()
    cached_centroids(ds)
    assert not any("from cache" in m for m in caplog.messages)


def test_class_pixel_counts_match_the_labels_and_are_cached(shared_folder, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    from edgeseg.data.label_stats import class_pixel_counts

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    ds = build_dataset("folder", shared_folder, "train")
    C = ds.info.num_classes
    expected = sum(np.bincount(ds[i].label[ds[i].label < C].ravel(), minlength=C) for i in range(len(ds)))
    np.testing.assert_array_equal(class_pixel_counts(ds), expected)
    caplog.clear()
    np.testing.assert_array_equal(class_pixel_counts(ds), expected)
    assert any("from cache" in m for m in caplog.messages)


def test_training_with_class_weights_uses_records_and_keeps_them(shared_folder, tmp_path, monkeypatch):
    import json

    import edgeseg.trainer.losses as loop  # training_loss calls compute_loss here
    from edgeseg.errors import ConfigError
    from edgeseg.trainer import TrainConfig, train

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    seen = []
    real = loop.compute_loss

    def spy(out_, target, kind="ce", ignore_index=255, weight=None):
        seen.append(None if weight is None else weight.tolist())
        return real(out_, target, kind, ignore_index, weight)

    monkeypatch.setattr(loop, "compute_loss", spy)
    base = dict(res=(48, 36), dataset="folder", data=str(shared_folder), model="tiny", batch=2, progress=False, device="cpu")
    out = tmp_path / "cw"
    train(TrainConfig(out=str(out), epochs=1, iters=None, class_weights="sqrt", **base))
    assert seen and all(w is not None for w in seen)  # every step's loss got the weights
    np.testing.assert_allclose(seen[0], json.loads((out / "config.json").read_text())["class_weight_values"], rtol=1e-5)
    seen.clear()
    train(TrainConfig(out=str(tmp_path / "plain"), iters=1, **base))
    assert seen == [None]
    from edgeseg.data.label_stats import class_pixel_counts
    from edgeseg.trainer.losses import class_weights

    values = json.loads((out / "config.json").read_text())["class_weight_values"]
    expected = class_weights(class_pixel_counts(build_dataset("folder", shared_folder, "train")), "sqrt")
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert len(set(values)) > 1
    with pytest.raises(ConfigError, match="--class-weights 'sqrt' \\(now 'log'\\)"):
        train(TrainConfig(out=str(out), epochs=1, class_weights="log", resume=True, **base))
    with pytest.raises(ConfigError, match="--class-weights: expected one of none, log, sqrt"):
        TrainConfig(class_weights="median")


def test_resume_refuses_changed_class_weights_and_reads_older_runs_as_unweighted(shared_folder, tmp_path, monkeypatch):
    import json
    import shutil
    import signal

    import torch

    from edgeseg.errors import ConfigError
    from edgeseg.trainer import TrainConfig, train

    def interrupt_at(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(shared_folder, root)
    base = dict(res=(48, 36), dataset="folder", data=str(root), model="tiny", batch=2, progress=False, device="cpu", iters=5)
    out = tmp_path / "run"
    assert train(TrainConfig(out=str(out), class_weights="sqrt", **base), on_step=interrupt_at)["interrupted"]
    ds = build_dataset("folder", str(root), "train")
    mask = ds.label_files(0)[0]
    Image.fromarray(np.zeros_like(np.array(Image.open(mask)))).save(mask)  # the labels change under the run
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    with pytest.raises(ConfigError, match="the training labels changed since"):
        train(TrainConfig(out=str(out), class_weights="sqrt", resume=True, **base))
    # a checkpoint from before the option existed trained without weights: resuming it with weights is refused
    plain = tmp_path / "plain"
    assert train(TrainConfig(out=str(plain), **base), on_step=interrupt_at)["interrupted"]
    ckpt = torch.load(plain / "last.pt", weights_only=True)
    ckpt["training"]["train_config"].pop("class_weights")
    torch.save(ckpt, plain / "last.pt")
    with pytest.raises(ConfigError, match="--class-weights 'none' \\(now 'log'\\)"):
        train(TrainConfig(out=str(plain), class_weights="log", resume=True, **base))
    assert not train(TrainConfig(out=str(plain), resume=True, **base)).get("interrupted")
    assert json.loads((plain / "config.json").read_text())["class_weight_values"] is None


def test_autolabel_overwrite_replaces_the_previous_labelling(tiny_checkpoint, shared_folder, tmp_path):
    import shutil

    from edgeseg.errors import ConfigError
    from edgeseg.tasks.autolabel import autolabel

    out = tmp_path / "auto"
    autolabel(tiny_checkpoint, [shared_folder / "train" / "images"], out, soft=True)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(shared_folder / "train" / "images" / "s0.png", one)
    autolabel(tiny_checkpoint, [one], out, soft=False, exist_ok=True)
    assert [p.name for p in (out / "masks").iterdir()] == ["s0.png"] and not (out / "soft").exists()
    assert [p.name for p in (out / "images").iterdir()] == ["s0.png"]
    assert sorted(p.name for p in out.iterdir()) == ["autolabel.json", "classes.json", "images", "masks"]
    (tmp_path / "two").mkdir()
    shutil.copy(one / "s0.png", tmp_path / "two" / "s0.png")
    with pytest.raises(ConfigError, match="same name stem"):
        autolabel(tiny_checkpoint, [one, tmp_path / "two"], tmp_path / "dup")


def test_autolabel_never_touches_files_it_did_not_write_and_keeps_the_old_labelling_on_failure(tiny_checkpoint, shared_folder, tmp_path):
    """--out holding the user's own files is refused whole (with or without --exist-ok); a run that
    fails part-way (an unreadable image after good ones) leaves the earlier labelling as it was and
    a new --out without a half-written data set."""
    import shutil

    from edgeseg.errors import ConfigError, DataError
    from edgeseg.tasks.autolabel import autolabel

    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    shutil.copy(shared_folder / "train" / "images" / "s0.png", mine / "images" / "photo.png")
    for exist_ok in (False, True):
        with pytest.raises(ConfigError, match="holds files autolabel did not write"):
            autolabel(tiny_checkpoint, [shared_folder / "train" / "images" / "s1.png"], mine, exist_ok=exist_ok)
    assert [p.name for p in (mine / "images").iterdir()] == ["photo.png"]

    out = tmp_path / "auto"
    autolabel(tiny_checkpoint, [shared_folder / "train" / "images"], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".edgeseg.lock"}
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(shared_folder / "train" / "images" / "s0.png", bad / "a.png")
    (bad / "z.png").write_bytes((shared_folder / "train" / "images" / "s1.png").read_bytes()[:60])  # truncated
    with pytest.raises(DataError, match="z.png"):
        autolabel(tiny_checkpoint, [bad], out, exist_ok=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".edgeseg.lock"}
    assert after == before
    with pytest.raises(DataError, match="z.png"):
        autolabel(tiny_checkpoint, [bad], tmp_path / "new")
    assert not (tmp_path / "new").exists() or not any(p for p in (tmp_path / "new").rglob("*") if p.name != ".edgeseg.lock")


def test_class_weights_on_labels_without_a_labelled_pixel_is_one_clear_error(shared_folder, tmp_path, monkeypatch):
    import shutil

    from edgeseg.errors import DataError
    from edgeseg.trainer import TrainConfig, train

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(shared_folder, root)
    ds = build_dataset("folder", str(root), "train")
    for i in range(len(ds)):
        mask = ds.label_files(i)[0]
        Image.fromarray(np.full_like(np.array(Image.open(mask)), ds.info.ignore_index)).save(mask)
    with pytest.raises(DataError, match="--train-split: .* holds no labelled pixel"):  # before the class weights are counted
        train(TrainConfig(out=str(tmp_path / "run"), res=(48, 36), dataset="folder", data=str(root), model="tiny", batch=2,
                          progress=False, device="cpu", iters=1, class_weights="sqrt"))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_extra_data_of_other_classes_is_refused_naming_the_option(shared_folder, tmp_path):
    from conftest import make_folder_dataset

    from edgeseg.errors import DataError
    from edgeseg.trainer import TrainConfig, train

    other = make_folder_dataset(tmp_path / "other")
    (other / "classes.json").write_text(json.dumps({"names": ["p", "q", "r", "s", "t"]}))
    with pytest.raises(DataError, match=r"--extra-data .*other: data set .* has other classes \(p, q, r, s, t; 5 classes\) than"):
        train(TrainConfig(out=str(tmp_path / "run"), res=(48, 36), dataset="folder", data=str(shared_folder), model="tiny",
                          epochs=1, batch=4, progress=False, workers=0, device="cpu", extra_data=(str(other),)))


@pytest.mark.parametrize("bad", ["1,1e9", "1,nan", "1,inf", "1,0.001", "1,-1", "0.5,2", ""])
def test_every_option_that_takes_scales_refuses_the_same_values(bad):
    """Scales are checked in one place (models.msa.parse_scales) for the runner's --scales, export's
    --scales and the --model-opt train/infer scales: one bound, no silent clamp at run time."""
    from edgeseg.errors import ConfigError
    from edgeseg.export.onnx_export import OnnxOptions
    from edgeseg.models import check_model_options
    from edgeseg.runtime.spec import RunnerSpec

    values = [float(v) for v in bad.split(",") if v]
    for make in (lambda: RunnerSpec(scales=bad), lambda: OnnxOptions(scales=bad),
                 lambda: check_model_options("tiny-msa", {"infer_scales": values}) or parse(values)):
        with pytest.raises(ConfigError, match="scale"):
            make()
    check_model_options("tiny-msa", {"infer_scales": 1.0})  # one scale, as --model-opt infer_scales=1 reads


def parse(values):
    from edgeseg.models.msa import parse_scales

    return parse_scales(values)


def test_dupsampling_channels_beyond_its_blocks_are_refused_by_the_model_and_by_labels_check(cli_run, folder_dataset, tmp_path):
    """C' above r*r*C cannot be fitted (W's columns are principal components of r x r blocks of C
    scores): training failed inside set_w, and labels check cut it to r*r*C without a word."""
    from edgeseg.errors import ConfigError
    from edgeseg.models import ModelConfig, build_model

    with pytest.raises(ConfigError, match="channels=1024: 1024 channels, but a 2x2 block of 5 class scores holds 20"):
        build_model(ModelConfig("lite0-dupsample", 5, options={"stride": 2, "channels": 1024}))
    build_model(ModelConfig("lite0-dupsample", 5, options={"stride": 2, "channels": 20}))
    code, _, err = cli_run("labels", "check", "--dataset", "folder", "--data", folder_dataset, "--split", "train", "--res", "24x18",
                           "--modes", "dupsample", "--dup-stride", "2", "--dup-channels", "4096")
    assert code == 2 and err.count("\n") == 1 and "--dup-channels 4096" in err, err
    code, _, err = cli_run("labels", "check", "--dataset", "folder", "--data", folder_dataset, "--res", "24x18", "--modes", ",")
    assert code == 2 and "--modes: no mode in ','" in err, err


def test_class_uniform_says_which_classes_it_can_never_centre_a_crop_on(tmp_path, caplog, monkeypatch):
    from conftest import make_folder_dataset, write_png

    from edgeseg.trainer import TrainConfig, train

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    root = make_folder_dataset(tmp_path / "thin", n_train=2, n_val=1)
    for mask in root.glob("*/masks/*.png"):  # class 0 everywhere, class 1 one pixel: never a centroid
        label = np.zeros((36, 48), np.uint8)
        label[5, 5] = 1
        write_png(mask, label)
    train(TrainConfig(out=str(tmp_path / "run"), res=(48, 36), dataset="folder", data=str(root), model="tiny", epochs=1, batch=2,
                      progress=False, workers=0, device="cpu", pretrained="none", class_uniform=0.5))
    assert "--class-uniform 0.5: b, c, d, e have no centroid" in caplog.text
