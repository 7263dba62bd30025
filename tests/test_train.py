import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.errors import ConfigError, DataError, ModelFileError, TrainingStopped
from edgeseg.models import load_checkpoint, model_from_checkpoint
from edgeseg.trainer import TrainConfig, train


def tiny_cfg(root, out, **kw):
    base = dict(out=str(out), res=(48, 36), dataset="folder", data=str(root), model="tiny", epochs=2, batch=2,
                lr=1e-2, progress=False, workers=0, device="cpu", seed=3)
    base.update(kw)
    return TrainConfig(**base)


def quiet(_):
    pass


def test_train_writes_checkpoints_metrics_and_config(folder_dataset, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_cfg(folder_dataset, out))
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "metrics.jsonl", "config.json"}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert {"train_loss", "val_miou", "lr", "img_per_s", "peak_mem_mb"} <= set(lines[0])
    assert result["best_miou"] == max(line["val_miou"] for line in lines)
    ckpt = torch.load(out / "last.pt", weights_only=True)  # never executes code
    assert set(ckpt) == {"format", "version", "meta", "model", "training"}
    assert {"optimizer", "scheduler", "rng", "epoch", "step", "train_config"} <= set(ckpt["training"])
    meta = ckpt["meta"]
    assert meta["model"]["res"] == [48, 36] and ckpt["training"]["epoch"] == 2 and meta["data"]["class_names"] == ["a", "b", "c", "d", "e"]
    assert meta["model"]["mean"] and meta["model"]["kernel"] == "area" and meta["dataset_kind"] == "folder" and ckpt["version"]
    model = model_from_checkpoint(load_checkpoint(out / "best.pt"))  # rebuilt from the checkpoint alone
    assert model(torch.zeros(1, 3, 36, 48)).shape == (1, 5, 36, 48)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["iters"] == 6 and cfg["steps_per_epoch"] == 3


def final_weights(out):
    return torch.load(Path(out) / "last.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resume_continues_exactly_where_it_stopped(folder_dataset, tmp_path):
    train(tiny_cfg(folder_dataset, tmp_path / "straight", epochs=3))
    out = tmp_path / "split"  # Ctrl-C at the last step of epoch 1, then resume

    def interrupt_at(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = train(tiny_cfg(folder_dataset, out, epochs=3), on_step=interrupt_at)
    assert first["interrupted"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["training"]["epoch"], ckpt["training"]["step_in_epoch"]) == (1, 0)  # the epoch was complete: validated and saved as such
    train(tiny_cfg(folder_dataset, out, epochs=3, resume=True))
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(out))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3] and all(r["train_loss"] > 0 for r in lines)
    assert [r["val_miou"] for r in lines] == [r["val_miou"] for r in straight]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C, and a scheduler's or container's stop
def test_ctrl_c_mid_epoch_saves_and_resume_is_exact(folder_dataset, tmp_path, stop):
    train(tiny_cfg(folder_dataset, tmp_path / "straight"))
    out = tmp_path / "interrupted"

    def interrupt_at(step):
        if step == 4:  # second step of epoch 2
            os.kill(os.getpid(), stop)

    result = train(tiny_cfg(folder_dataset, out), on_step=interrupt_at)
    assert result["interrupted"] and result["step"] == 4
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["training"]["epoch"], ckpt["training"]["step_in_epoch"], ckpt["training"]["step"]) == (1, 1, 4)
    train(tiny_cfg(folder_dataset, out, resume=True))
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(out))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    # the interrupted epoch's loss covers its steps before and after the resume
    straight = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in lines] == pytest.approx([r["train_loss"] for r in straight], rel=1e-5)


def test_a_stop_sent_to_the_whole_process_group_reaches_loader_workers_and_still_saves(folder_dataset, tmp_path):
    """SIGTERM to the process group (Slurm's scancel, `timeout`, `kill -- -PGID`) reaches the loader's
    workers too: they leave the stop to the main process, which may still need batches from them before
    it can stop between steps and save; resuming is exact. (A worker ended by the signal made the main
    process fail in its next fetch, with a traceback and nothing saved.)"""
    import multiprocessing

    cfg = dict(workers=2, batch=1)  # 6 steps an epoch, of which at most 5 are asked of the workers before step 1 ends
    train(tiny_cfg(folder_dataset, tmp_path / "straight", **cfg))
    out = tmp_path / "stopped"
    sent = []

    def stop_group(step):
        if step == 1:  # the workers get the stop first; the main process's needs a batch they had yet to be asked for
            sent.extend(p.pid for p in multiprocessing.active_children())
            for pid in sent:
                os.kill(pid, signal.SIGTERM)
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(tiny_cfg(folder_dataset, out, **cfg), on_step=stop_group)
    assert sent, "the loader ran no worker processes"
    assert result["interrupted"] and result["step"] == 6
    train(tiny_cfg(folder_dataset, out, resume=True, **cfg))
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(out))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(folder_dataset, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    from edgeseg.trainer import losses

    real = losses.compute_loss

    def poisoned(out_, target, *a, **kw):  # from the second epoch on (step 4 of 3 per epoch), the loss is NaN
        loss = real(out_, target, *a, **kw)
        return loss * float("nan") if poisoned.calls >= 3 else loss

    def count(step):
        poisoned.calls = step

    poisoned.calls = 0
    monkeypatch.setattr("edgeseg.trainer.losses.compute_loss", poisoned)
    with pytest.raises(TrainingStopped, match=r"loss became nan.*\(epoch 2\).*kept .*last\.pt"):
        train(tiny_cfg(folder_dataset, out, epochs=3), on_step=count)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["training"]["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_output_folder_rules_and_bad_options(folder_dataset, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(folder_dataset, out, epochs=1))
    with pytest.raises(ConfigError, match="already exists"):
        train(tiny_cfg(folder_dataset, out, epochs=1))
    train(tiny_cfg(folder_dataset, out, epochs=1, exist_ok=True))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny_cfg(folder_dataset, tmp_path / "empty", resume=True))
    with pytest.raises(ConfigError, match="--model 'tiny' \\(now 'lite0-fpn'\\)"):
        train(tiny_cfg(folder_dataset, out, model="lite0-fpn", resume=True))
    with pytest.raises(ConfigError, match="--train-fraction 1.5: expected a number in \\(0, 1\\]"):
        train(tiny_cfg(folder_dataset, tmp_path / "frac", train_fraction=1.5))
    with pytest.raises(ConfigError, match="--train-fraction None \\(now 0.5\\)"):
        train(tiny_cfg(folder_dataset, out, train_fraction=0.5, resume=True))
    (out / "last.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        train(tiny_cfg(folder_dataset, out, resume=True))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            train(tiny_cfg(folder_dataset, tmp_path / "gpu", device="cuda"))
    with pytest.raises(ConfigError, match="larger than the 6 training samples"):
        train(tiny_cfg(folder_dataset, tmp_path / "big", batch=7))
    with pytest.raises(ConfigError, match="--exist-ok: has no effect with --resume"):
        train(tiny_cfg(folder_dataset, out, resume=True, exist_ok=True))


def test_a_run_failing_before_its_first_checkpoint_leaves_no_folder_and_an_earlier_run_whole(folder_dataset, tmp_path):
    """A new run folder (and the folders made above it) goes when the run fails before last.pt; over
    an earlier run (--exist-ok) its config.json and checkpoints stay as they were, one run's files."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder_dataset, bad)
    image = sorted((bad / "train" / "images").iterdir())[-1]
    image.write_bytes(image.read_bytes()[:50])  # truncated: read in the first epoch
    with pytest.raises(Exception, match=image.name):
        train(tiny_cfg(bad, tmp_path / "a" / "b" / "run", epochs=1))
    assert not (tmp_path / "a").exists()
    out = tmp_path / "earlier"
    train(tiny_cfg(folder_dataset, out, epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(Exception, match=image.name):
        train(tiny_cfg(bad, out, epochs=1, batch=3, exist_ok=True))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_cli_train_then_eval(cli_run, folder_dataset, tmp_path):
    out = tmp_path / "cli"
    code, stdout, err = cli_run("train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "48x36",
                                "--epochs", "1", "--batch", "2", "--out", out, "--quiet", "--device", "cpu")
    assert code == 0, err
    assert "best val mIoU" in stdout
    code, stdout, err = cli_run("eval", "--model", out / "best.pt", "--json", tmp_path / "e.json")
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["backend"] == "torch" and result["n_images"] == 3 and result["res"] == [48, 36]
    assert set(result["per_class"]) == {"a", "b", "c", "d", "e"}
    ckpt_val = torch.load(out / "best.pt", weights_only=True)["training"]["best_miou"]
    assert result["miou"] == pytest.approx(ckpt_val, abs=1e-3)  # training validation and eval agree
    for args, needle in [
        (("train", "--res", "48"), "--res"),
        (("train", "--model", "nope", "--out", tmp_path / "x", "--quiet"), "unknown model 'nope'"),
        (("train", "--resume"), "--resume"),
        (("eval", "--model", tmp_path / "missing.pt"), "not found; expected a model file"),
    ]:
        code, _, err = cli_run(*args)
        assert code == 2 and needle in err and "Traceback" not in err, (args, err)


@pytest.mark.slow
def test_torchrun_two_gloo_processes(folder_dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "edgeseg", "train", "--dataset", "folder", "--data", str(folder_dataset), "--model", "tiny",
           "--res", "48x36", "--epochs", "2", "--batch", "1", "--out", str(out), "--quiet", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["steps_per_epoch"] == 3  # 6 samples / (1 x 2 ranks)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 writes once per epoch
    assert proc.stdout.count("best val mIoU") == 1


def test_tensorboard_scalars_and_prediction_images(folder_dataset, tmp_path, monkeypatch):
    """tensorboard is optional; its logging code runs against a stand-in writer."""
    logged = {"scalars": [], "images": []}

    class Writer:
        def add_scalar(self, tag, value, step):
            logged["scalars"].append((tag, step))

        def add_image(self, tag, image, step, dataformats):
            logged["images"].append((tag, image.shape, dataformats))

        def close(self):
            logged["closed"] = True

    monkeypatch.setattr("edgeseg.trainer.loop.open_writer", lambda out: Writer())
    train(tiny_cfg(folder_dataset, tmp_path / "tb", epochs=1))
    assert ("train_loss", 3) in logged["scalars"] and ("val_miou", 3) in logged["scalars"]
    assert logged["images"] and logged["images"][0][1] == (36, 48 * 3, 3) and logged["images"][0][2] == "HWC"
    assert logged["closed"]


def test_a_sample_that_fails_in_a_loader_worker_stops_training_with_its_message():
    from edgeseg.errors import DataError
    from edgeseg.models import ModelConfig, build_model
    from edgeseg.trainer.data import SampleError
    from edgeseg.trainer.loop import train_one_epoch
    from edgeseg.trainer.schedule import LRSchedule

    model = build_model(ModelConfig("tiny", 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = LRSchedule(opt, 0.1, total_steps=1)
    with pytest.raises(DataError, match="x.png: cannot read"):
        train_one_epoch(model, [SampleError("x.png: cannot read")], opt, schedule, torch.amp.GradScaler("cpu", enabled=False),
                        device=torch.device("cpu"), normalise=lambda x: x)


def test_a_run_folder_is_owned_by_one_process(folder_dataset, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".edgeseg.lock").write_text(f"{__import__('socket').gethostname()} {live.pid}\n")
        with pytest.raises(ConfigError, match=f"in use by process {live.pid}"):
            train(tiny_cfg(folder_dataset, out, epochs=1, exist_ok=True))
    finally:
        live.kill()
        live.wait()
    # the owner is gone: the lock is stale, taken over, and a killed writer's temp file is cleaned up;
    # a live writer's, and a user's file that only looks like a temporary, are kept
    (out / f".last.pt.edgeseg-{live.pid}-0123456789ab.tmp").write_bytes(b"partial")
    (out / f".best.pt.edgeseg-{os.getpid()}-0123456789ab.tmp").write_bytes(b"being written")
    (out / ".draft.tmp").write_bytes(b"the user's")
    train(tiny_cfg(folder_dataset, out, epochs=1, exist_ok=True))
    assert not (out / f".last.pt.edgeseg-{live.pid}-0123456789ab.tmp").exists() and not (out / ".edgeseg.lock").exists()
    assert (out / f".best.pt.edgeseg-{os.getpid()}-0123456789ab.tmp").exists() and (out / ".draft.tmp").read_bytes() == b"the user's"
    assert (out / "last.pt").is_file()


def test_output_paths_that_cannot_be_used_are_one_line_errors(cli_run, folder_dataset, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = cli_run("train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "48x36",
                           "--out", tmp_path / "afile", "--exist-ok", "--quiet")
    assert code == 2 and "--out" in err and "is a file; expected a folder" in err and "Traceback" not in err
    code, _, err = cli_run("train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "48x36",
                           "--out", tmp_path / "afile" / "run", "--quiet")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "afile" in err


def test_resume_refuses_changed_options_by_name_and_a_finished_run(folder_dataset, tmp_path):
    out = tmp_path / "run"

    def interrupt_at(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(tiny_cfg(folder_dataset, out), on_step=interrupt_at)["interrupted"]
    for change, shown in ((dict(seed=4), "--seed 3 (now 4)"), (dict(lr=0.5), "--lr 0.01 (now 0.5)"),
                          (dict(schedule="cosine"), "--schedule 'poly' (now 'cosine')"), (dict(epochs=3), "--epochs 2 (now 3)")):
        with pytest.raises(ConfigError, match=re.escape(shown)):
            train(tiny_cfg(folder_dataset, out, resume=True, **change))
    train(tiny_cfg(folder_dataset, out, resume=True))
    with pytest.raises(ConfigError, match="finished its 6 steps; nothing to resume"):
        train(tiny_cfg(folder_dataset, out, resume=True))


def test_the_printed_continue_command_works_as_printed(cli_run, folder_dataset, tmp_path):
    """After Ctrl-C training prints 'edgeseg train --out RUN --resume': the options left out come from the run."""
    out = tmp_path / "run"
    from edgeseg.trainer import TrainConfig

    train(TrainConfig(out=str(out), res=(48, 36), dataset="folder", data=str(folder_dataset), model="tiny", epochs=2, batch=2,
                      lr=0.01, seed=5, pretrained="none", progress=False, workers=0, device="cpu"),
          on_step=lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 2 else None)
    code, _, err = cli_run("train", "--out", out, "--resume", "--quiet")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["seed"] == 5
    code, _, err = cli_run("train", "--out", out, "--resume", "--seed", "6", "--quiet")
    assert code == 2 and "--seed 5 (now 6)" in err


def test_an_older_synthetic_run_holding_a_data_path_resumes(tmp_path):
    """--data with synthetic is refused now; a run saved when it was ignored still resumes."""
    cfg = TrainConfig(out=str(tmp_path / "r"), model="tiny", res=(64, 32), iters=2, train_limit=8, val_limit=2, progress=False,
                      device="cpu", pretrained="none")
    train(cfg, on_step=lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 1 else None)
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    ckpt["training"]["train_config"]["data"] = str(tmp_path / "somewhere")
    torch.save(ckpt, tmp_path / "r" / "last.pt")
    assert not train(TrainConfig(out=str(tmp_path / "r"), resume=True, progress=False)).get("interrupted")


def test_a_failed_run_with_a_relative_out_keeps_the_folders_that_existed(folder_dataset, tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    with pytest.raises(ConfigError):
        train(tiny_cfg(folder_dataset, "x/run1", teacher=str(tmp_path / "none.pt")))
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "runs" / "x").exists()


def test_mixed_precision_asked_for_on_a_cpu_is_refused_not_dropped(cli_run, folder_dataset, tmp_path):
    """--amp fp16/bf16 on a CPU run: one line, exit 2, no run folder left (it trained in float32 with a
    note before); --amp auto takes what the device has."""
    base = ["train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "24x18", "--epochs", "1",
            "--batch", "2", "--quiet", "--pretrained", "none", "--device", "cpu"]
    for mode in ("fp16", "bf16"):
        code, _, err = cli_run(*base, "--out", tmp_path / mode, "--amp", mode)
        assert code == 2 and f"--amp {mode}: mixed precision applies on CUDA only" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / mode).exists()
    code, _, err = cli_run(*base, "--out", tmp_path / "auto", "--amp", "auto")
    assert code == 0 and "applies to CUDA only" in err, err


def test_exist_ok_retires_the_earlier_runs_files_at_the_first_checkpoint(folder_dataset, tmp_path, caplog):
    """--exist-ok over an earlier run: its best.pt and contrastive.pt stop standing beside this run's
    checkpoints at the first of them (this run's best.pt is its own), and exports made from the
    earlier run are named; a file of the user's is kept."""
    import logging

    out = tmp_path / "run"
    train(tiny_cfg(folder_dataset, out, epochs=1, seed=1))
    old_best = (out / "best.pt").read_bytes()
    for name, data in (("contrastive.pt", b"earlier"), ("model.onnx", b"earlier export"), ("notes.txt", b"mine")):
        (out / name).write_bytes(data)
    caplog.set_level(logging.INFO, logger="edgeseg")
    seen = []

    def after_the_first_checkpoint(step):  # epoch 2 of 3 steps each, before this run's first validation (val_every 2)
        if step == 5:
            seen.append((out / "best.pt").exists())

    train(tiny_cfg(folder_dataset, out, epochs=2, val_every=2, seed=2, exist_ok=True), on_step=after_the_first_checkpoint)
    assert seen == [False]  # the earlier run's best.pt went with this run's first checkpoint
    assert not (out / "contrastive.pt").exists() and (out / "notes.txt").read_bytes() == b"mine"
    assert (out / "best.pt").read_bytes() != old_best  # this run's own
    assert any("model.onnx were exported from the earlier run's checkpoints" in m for m in caplog.messages), caplog.messages


def test_input_paths_given_relative_name_the_same_files_from_any_working_folder(cli_run, tmp_path, monkeypatch):
    """A run's data, cache and weights given relative are saved absolute: a --resume or an eval from
    another working folder (holding a data set of the same name) uses the run's own data, and a cache
    built with one spelling of --data serves another."""
    from conftest import make_folder_dataset

    make_folder_dataset(tmp_path / "a" / "data", n_train=4, n_val=2)
    make_folder_dataset(tmp_path / "b" / "data", n_train=6, n_val=3)
    monkeypatch.chdir(tmp_path / "a")
    code, _, err = cli_run("data", "cache", "--dataset", "folder", "--data", "data", "--out", "cache", "--quiet")
    assert code == 0, err
    run = tmp_path / "run"
    code, _, err = cli_run("train", "--dataset", "folder", "--data", "data", "--cache", "cache", "--model", "tiny", "--res", "24x18",
                           "--epochs", "2", "--batch", "2", "--pretrained", "none", "--out", run, "--quiet")
    assert code == 0, err
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"] == str(tmp_path / "a" / "data") and saved["cache"] == str(tmp_path / "a" / "cache")
    monkeypatch.chdir(tmp_path / "b")
    code, out, err = cli_run("eval", "--model", run / "last.pt")
    assert code == 0 and str(tmp_path / "a" / "data") in out + err and "2 images" in out + err, out + err
    code, _, err = cli_run("train", "--dataset", "folder", "--data", tmp_path / "a" / "data", "--cache", tmp_path / "a" / "cache",
                           "--model", "tiny", "--res", "24x18", "--epochs", "1", "--batch", "2", "--pretrained", "none",
                           "--out", tmp_path / "run2", "--quiet")
    assert code == 0, err  # the cache built from the relative spelling serves the absolute one


@pytest.mark.parametrize("env, said", [({"WORLD_SIZE": "abc"}, "$WORLD_SIZE='abc'"), ({"WORLD_SIZE": "2"}, "$RANK is not set"),
                                       ({"WORLD_SIZE": "2", "RANK": "2"}, "$RANK='2': expected a whole number from 0 to 1"),
                                       ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "$LOCAL_RANK='-1'"),
                                       ({"WORLD_SIZE": "1", "RANK": "3"}, "$RANK='3' but $WORLD_SIZE is 1: a single process must be rank 0"),
                                       ({"LOCAL_RANK": "1"}, "$LOCAL_RANK='1' but $WORLD_SIZE is unset")])
def test_a_launcher_environment_that_cannot_be_used_is_one_line_naming_the_variable(cli_run, folder_dataset, tmp_path, monkeypatch, env, said):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = cli_run("train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "24x18", "--epochs", "1",
                           "--pretrained", "none", "--out", tmp_path / "run", "--quiet")
    assert code == 2 and err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "run").exists()


def test_one_image_batches_a_model_cannot_train_on_are_refused_before_any_work(cli_run, folder_dataset, tmp_path):
    """--batch 1 where the deepest features are one pixel: batch normalisation fails on the first step
    (a traceback before); refused in one line, no run folder; at a size it can train on, it trains."""
    base = ["train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--epochs", "1", "--batch", "1",
            "--pretrained", "none", "--train-limit", "2", "--val-limit", "1", "--quiet"]
    code, _, err = cli_run(*base, "--res", "1x1", "--out", tmp_path / "r1")
    assert code == 2 and err.count("\n") == 1 and "--batch 1 at --res 1x1" in err and not (tmp_path / "r1").exists(), err
    code, _, err = cli_run(*base, "--res", "48x36", "--out", tmp_path / "r2")
    assert code == 0, err


def test_training_on_a_flat_folder_says_validation_is_on_training_images_and_a_folder_given_twice_is_refused(cli_run, tmp_path):
    from conftest import write_png

    for i in range(4):
        write_png(tmp_path / "flat/images" / f"{i}.png", np.full((18, 24, 3), 40 * i, np.uint8))
        write_png(tmp_path / "flat/masks" / f"{i}.png", np.full((18, 24), i % 2, np.uint8))
    (tmp_path / "flat/classes.json").write_text(json.dumps({"names": ["x", "y"]}))
    base = ["train", "--dataset", "folder", "--data", tmp_path / "flat", "--model", "tiny", "--res", "24x18", "--epochs", "1",
            "--batch", "2", "--pretrained", "none", "--quiet"]
    code, _, err = cli_run(*base, "--out", tmp_path / "r1")
    assert code == 0 and "validation scores are on training images" in err, err
    code, _, err = cli_run(*base, "--extra-data", tmp_path / "flat", "--out", tmp_path / "r2")
    assert code == 2 and "--extra-data" in err and "also in --data's training split" in err and not (tmp_path / "r2").exists(), err


def test_a_warm_up_as_long_as_the_run_is_refused(cli_run, folder_dataset, tmp_path):
    code, _, err = cli_run("train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "24x18", "--epochs", "1",
                           "--batch", "2", "--pretrained", "none", "--warmup", "1000000", "--out", tmp_path / "run", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "--warmup 1000000: the run has 3 steps" in err and not (tmp_path / "run").exists(), err


def test_a_resume_on_a_training_split_that_changed_is_refused(tmp_path):
    """The schedule and epochs were planned on the split the run began with: a split that grew, shrank
    or holds other images is refused by name (it resumed with the schedule recomputed, or did nothing)."""
    import shutil

    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "data", n_train=6)
    out = tmp_path / "run"
    train(tiny_cfg(data, out), on_step=lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 2 else None)
    for name in ("0", "1"):  # two more images (copies under new names)
        for kind, suffix in (("images", ".png"), ("masks", ".png")):
            src = sorted((data / "train" / kind).iterdir())[0]
            shutil.copy(src, data / "train" / kind / f"extra{name}{suffix}")
    with pytest.raises(ConfigError, match=r"the training split changed since .* \(it had 6 samples, now 8"):
        train(tiny_cfg(data, out, resume=True))


def test_a_training_set_left_without_labelled_pixels_by_train_limit_is_refused(tmp_path):
    """The check is on what is trained on: a --train-limit that keeps only void images is refused
    (with --class-weights it failed at counting, without them it trained on nothing)."""
    from conftest import make_folder_dataset, write_png

    root = make_folder_dataset(tmp_path / "data", n_train=4)
    for mask in sorted((root / "train" / "masks").iterdir())[:2]:
        write_png(mask, np.full((36, 48), 255, np.uint8))
    with pytest.raises(DataError, match="--train-split: .* holds no labelled pixel in its 2 images"):
        train(tiny_cfg(root, tmp_path / "run", train_limit=2))
    train(tiny_cfg(root, tmp_path / "run2", train_limit=4, epochs=1))


def test_a_cache_that_cannot_be_written_is_said_naming_its_variable(cli_run, shared_folder, tiny_checkpoint, tmp_path, monkeypatch):
    """$EDGESEG_CACHE under a file: statistics that are only cached (class weights) are computed
    without the cache, and said; teacher labels, which live there, are refused in one line naming
    the variable, before any training."""
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "afile" / "sub"))
    base = ["train", "--dataset", "folder", "--data", shared_folder, "--model", "tiny", "--res", "24x18", "--epochs", "1",
            "--pretrained", "none", "--quiet"]
    code, _, err = cli_run(*base, "--class-weights", "sqrt", "--out", tmp_path / "run")
    assert code == 0, err
    code, _, err = cli_run(*base, "--teacher", tiny_checkpoint, "--out", tmp_path / "run2")
    assert code == 2 and "$EDGESEG_CACHE" in err and "cannot be written" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run2").exists()


def test_a_resume_refuses_a_change_to_any_compared_option_by_its_flag():
    """Every training option is compared on --resume unless it is one of the few that belong to the
    invocation (where it runs, how it is fed) or only to reporting; each compared one, changed alone,
    is refused naming its flag, and the others are not."""
    from dataclasses import fields
    from types import SimpleNamespace

    from edgeseg.records import flag_of
    from edgeseg.trainer.checkpoint import check_resume_compatible
    from edgeseg.trainer.config import compared_fields

    exempt = {f.name: f.metadata["resume"] for f in fields(TrainConfig) if f.metadata.get("resume") != "compare"}
    assert exempt == {"out": "never", "workers": "never", "augment_on": "never", "cache": "never", "device": "never",
                      "resume": "never", "exist_ok": "never", "progress": "never", "val_every": "inherit", "val_limit": "inherit"}
    base = TrainConfig(out="run", res=(48, 36), dataset="folder", data="/data/a", model="tiny").to_dict()
    ckpt = SimpleNamespace(training=SimpleNamespace(train_config=dict(base), world_size=1))

    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 1
        if isinstance(value, (list, tuple)):
            return [*value, 7] if value else [7]
        return "/elsewhere/changed" if value is None or isinstance(value, str) else None

    compared = compared_fields()
    assert len(compared) == len(fields(TrainConfig)) - len(exempt) and len(compared) >= 40
    for f in fields(TrainConfig):
        now = {**base, f.name: changed(base[f.name])}
        if f.name in compared:
            with pytest.raises(ConfigError, match=re.escape(flag_of(f) + " ")):
                check_resume_compatible(ckpt, now, "run/last.pt")
        else:
            check_resume_compatible(ckpt, now, "run/last.pt")
    check_resume_compatible(ckpt, dict(base), "run/last.pt")
