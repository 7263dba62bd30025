"""Files edgeseg wrote and reads back (a decoded cache's manifest, a teacher-label manifest, an
engine's fingerprint, an INT8 report, a run's saved options and metrics history), damaged in
their structure: every value replaced, one at a time, by one of another kind. Reading must
either take the file or refuse it as an edgeseg error (one line, exit 2), never fail with
another exception. A property over every key of each file, not a list of cases."""

import copy
import json

import pytest

from edgeseg.errors import EdgesegError

WRONG = (None, 1, -1, 2.5, True, "x", [], [1], {}, {"x": 1})


def mutations(obj, limit_lists: int = 1):
    """``obj`` with one value (at any depth; the first ``limit_lists`` items of each list) replaced
    by each value of ``WRONG`` of another kind: (path, mutated copy)."""
    def paths(node, at=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield at + (k,)
                yield from paths(v, at + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node[:limit_lists]):
                yield at + (i,)
                yield from paths(v, at + (i,))

    for path in list(paths(obj)):
        for wrong in WRONG:
            new = copy.deepcopy(obj)
            parent = new
            for key in path[:-1]:
                parent = parent[key]
            if type(parent[path[-1]]) is type(wrong) and parent[path[-1]] == wrong:
                continue
            parent[path[-1]] = wrong
            yield path, new


def _each_refused_or_taken(original, write, read, limit_lists: int = 1) -> int:
    findings, n = [], 0
    for path, damaged in mutations(original, limit_lists):
        n += 1
        write(damaged)
        try:
            read()
        except EdgesegError as exc:
            if "\n" in str(exc):
                findings.append(f"{path}: a message of several lines: {exc}")
        except Exception as exc:  # noqa: BLE001 - what this test looks for
            findings.append(f"{path}: {type(exc).__name__}: {str(exc)[:120]}")
    assert not findings, f"{len(findings)} of {n} damaged files were not refused cleanly:\n" + "\n".join(findings[:20])
    return n


def test_a_decoded_cache_manifest_damaged_anywhere_is_refused(folder_dataset, tmp_path):
    from edgeseg.data import build_dataset
    from edgeseg.data.cache import build_cache, cached_dataset

    ds = build_dataset("folder", folder_dataset, "train")
    build_cache(ds, tmp_path / "c", progress=False)
    manifest = tmp_path / "c" / "manifest.json"
    original = json.loads(manifest.read_text())
    n = _each_refused_or_taken(original, lambda m: manifest.write_text(json.dumps(m)), lambda: cached_dataset(ds, tmp_path / "c", True))
    assert n > 100


def test_a_teacher_label_manifest_damaged_anywhere_is_refused(tiny_checkpoint, shared_folder, tmp_path, monkeypatch):
    from edgeseg.data import build_dataset
    from edgeseg.trainer.distill import check_teacher_labels, teacher_labels

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    ds = build_dataset("folder", shared_folder, "train")
    folder = teacher_labels(str(tiny_checkpoint), ds, 1.0, "cpu", False)
    manifest = folder / "manifest.json"
    original = json.loads(manifest.read_text())
    n = _each_refused_or_taken(original, lambda m: manifest.write_text(json.dumps(m)), lambda: check_teacher_labels(folder, ds, 1.0))
    assert n > 50


def test_an_engine_fingerprint_and_an_int8_report_damaged_anywhere_are_refused(tmp_path):
    from edgeseg.export.formats import _calibration_sha
    from edgeseg.fileio import sha256_file
    from edgeseg.runtime import fingerprint

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    fp = {"format": "edgeseg-engine-v1", "tensorrt": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0", "cuda": "12.4",
          "precision": "int8", "int8_mode": "qdq", "strongly_typed": False, "input_shape": [1, 3, 36, 48],
          "engine_sha256": sha256_file(engine),
          "onnx": "model.int8.onnx", "calibration_sha256": "ab" * 32, "build_options": {"max_batch": 4, "workspace_gib": 2.0},
          "meta": {"edgeseg.num_classes": "5"}}
    path = fingerprint.fingerprint_path(engine)

    def read():
        got = fingerprint.read_fingerprint(engine)
        fingerprint.check_fingerprint(engine, got, "10.3.0", {"gpu": "NVIDIA H100", "compute_capability": "9.0"})
        fingerprint.check_engine_file(engine, got)
        int(got.get("build_options", {}).get("max_batch", 1))  # what the runner reads of it

    _each_refused_or_taken(fp, lambda m: path.write_text(json.dumps(m)), read)
    report = tmp_path / "int8_report.json"
    _each_refused_or_taken({"calibration_sha256": "ab" * 32, "images": 300}, lambda m: report.write_text(json.dumps(m)),
                           lambda: _calibration_sha(tmp_path))


def test_a_runs_saved_options_damaged_anywhere_are_refused_on_resume(tmp_path):
    """Every saved option of a run's train_config given a value of another kind: --resume takes the
    run (the value is of the option's type) or refuses it in one line, before any training."""
    from edgeseg.records import to_plain
    from edgeseg.trainer import TrainConfig

    saved = to_plain(TrainConfig(out=str(tmp_path / "run"), model="tiny", res=(48, 36), teacher="t.pt", sr_aux=True,
                                 model_options=(("upscale_input", 2),)))
    resume = TrainConfig(out=str(tmp_path / "run"), resume=True)

    def read():
        merged = resume.resumed(current[0], given={"out", "resume"})
        assert isinstance(merged, TrainConfig)

    current = [saved]
    n = _each_refused_or_taken(saved, lambda m: current.__setitem__(0, m), read, limit_lists=2)
    assert n > 300


def test_a_damaged_metrics_history_is_refused_on_resume(tmp_path):
    from edgeseg.trainer.loop import _read_history

    metrics = tmp_path / "metrics.jsonl"
    good = [{"epoch": 1, "train_loss": 1.5, "val_miou": 3.0}, {"epoch": 2, "train_loss": 1.2}]
    metrics.write_text("\n".join(json.dumps(r) for r in good) + "\n")
    assert [r["epoch"] for r in _read_history(metrics)] == [1, 2]
    _each_refused_or_taken(good, lambda m: metrics.write_text("\n".join(json.dumps(r) for r in m) + "\n"),
                           lambda: _read_history(metrics), limit_lists=2)
    metrics.write_text('{"epoch": 1}\n{"epo')  # a line cut short
    with pytest.raises(EdgesegError, match="line 2"):
        _read_history(metrics)


def test_a_checkpoints_model_description_damaged_anywhere_is_refused_or_runs(tiny_checkpoint, tmp_path):
    """Every value of a checkpoint's model description (classes, palette, void value, kernel,
    normalisation, sizes ...) replaced by one of another kind: the checkpoint is refused in one line
    as it is read, or the model it describes runs and its labels can be drawn."""
    import numpy as np
    import torch

    from edgeseg import runtime
    from edgeseg.runtime.processing import Preprocess, native_labels, overlay

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    path = tmp_path / "damaged.pt"
    image = np.full((27, 36, 3), 100, np.uint8)  # another size than the model's: resampled with its kernel

    def write(meta):
        torch.save({**ckpt, "meta": meta}, path)

    def read():  # what predict does with a model
        runner = runtime.load(path)
        with runner:
            label = native_labels(runner.infer(Preprocess.from_meta(runner.meta)([image])), [image.shape[:2]], runner.name)[0]
        overlay(image, label.numpy().astype(np.uint8), runner.meta.palette, 0.5)

    assert _each_refused_or_taken(ckpt["meta"], write, read, limit_lists=3) > 200


def test_a_checkpoints_training_state_damaged_is_refused_on_resume(folder_dataset, tmp_path):
    """The optimiser, schedule, scaler and random state of a run's last.pt replaced by values of
    another kind: --resume refuses in one line naming the file (a ValueError from torch before)."""
    import os
    import signal

    import torch

    from edgeseg.trainer import TrainConfig, train

    cfg = dict(out=str(tmp_path / "run"), res=(24, 18), dataset="folder", data=str(folder_dataset), model="tiny", epochs=2, batch=2,
               progress=False, workers=0, device="cpu", pretrained="none")
    train(TrainConfig(**cfg), on_step=lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 1 else None)
    last = tmp_path / "run" / "last.pt"
    good = torch.load(last, weights_only=True)
    findings = []
    for key in ("optimizer", "scheduler", "rng", "scaler"):
        for wrong in (None, "x", [1], {}, {"state": {}, "param_groups": []}):
            damaged = {**good, "training": {**good["training"], key: wrong}}
            torch.save(damaged, last)
            try:
                train(TrainConfig(**{**cfg, "resume": True}))
            except EdgesegError as exc:
                if "\n" in str(exc):
                    findings.append(f"{key}={wrong!r}: several lines")
            except Exception as exc:  # noqa: BLE001 - what this test looks for
                findings.append(f"{key}={wrong!r}: {type(exc).__name__}: {str(exc)[:100]}")
            torch.save(good, last)
    assert not findings, "\n".join(findings)


DEEP = "[" * 100_000 + "]" * 100_000  # Python's parser fails on it with RecursionError
TWICE = '{"names": ["a", "b"], "names": ["c", "d"]}'  # Python's parser keeps the last
BIG = '{"names": ["a", "b"], "ignore_index": ' + "1" * 5000 + "}"  # Python's int() refuses it with a plain ValueError


def test_no_module_parses_json_but_the_one_parser():
    """Every JSON text edgeseg reads goes through fileio.parse_json, which refuses what Python's
    parser would take silently (a key given twice) or fail on with another exception (deep nesting)."""
    import re
    from pathlib import Path

    import edgeseg

    root = Path(edgeseg.__file__).parent
    found = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\bjson\.loads?\(", line) and not (p.name == "fileio.py" and "object_pairs_hook" in line)]
    assert not found, f"JSON parsed outside fileio.parse_json: {found}"


def test_parse_json_refuses_a_repeated_key_and_deep_nesting_as_a_decode_error():
    from edgeseg.fileio import parse_json

    assert parse_json('{"a": [1, {"b": 2}], "c": null}') == {"a": [1, {"b": 2}], "c": None}
    for text, said in ((TWICE, "key 'names' given twice"), (DEEP, "nested too deeply"), ('{"x": {"y": 1, "y": 1}}', "'y'"),
                       (BIG, "digits")):
        with pytest.raises(json.JSONDecodeError, match=said) as got:
            parse_json(text)
        assert "\n" not in str(got.value) and len(str(got.value)) < 80


def test_every_json_file_reader_refuses_deep_nesting_and_a_repeated_key(folder_dataset, tiny_checkpoint, shared_folder, tmp_path,
                                                                        monkeypatch):
    """Each file edgeseg reads as JSON (classes.json, a cache's and a teacher-label folder's
    manifest, an engine's fingerprint, an INT8 report, a run's history, the model record in ONNX
    metadata and an IR) given the two texts: refused as an edgeseg error or taken, no other exception."""
    from edgeseg.data import build_dataset
    from edgeseg.data.cache import build_cache, cached_dataset
    from edgeseg.data.folder import read_classes
    from edgeseg.export.formats import _calibration_sha
    from edgeseg.models.meta import PROPS_KEY, ModelMeta
    from edgeseg.runtime import fingerprint
    from edgeseg.trainer.distill import check_teacher_labels, teacher_labels
    from edgeseg.trainer.loop import _read_history

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    ds = build_dataset("folder", folder_dataset, "train")
    build_cache(ds, tmp_path / "c", progress=False)
    teacher = teacher_labels(str(tiny_checkpoint), build_dataset("folder", shared_folder, "train"), 1.0, "cpu", False)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    readers = {
        folder_dataset / "classes.json": lambda: read_classes(folder_dataset / "classes.json"),
        tmp_path / "c" / "manifest.json": lambda: cached_dataset(ds, tmp_path / "c", True),
        teacher / "manifest.json": lambda: check_teacher_labels(teacher, build_dataset("folder", shared_folder, "train"), 1.0),
        fingerprint.fingerprint_path(engine): lambda: fingerprint.read_fingerprint(engine),
        tmp_path / "int8_report.json": lambda: _calibration_sha(tmp_path),
        tmp_path / "metrics.jsonl": lambda: _read_history(tmp_path / "metrics.jsonl"),
    }
    findings = []
    for text in (DEEP, TWICE, BIG):
        for path, read in readers.items():
            path.write_text(text)
            try:
                read()
            except EdgesegError as exc:
                assert "\n" not in str(exc)
            except Exception as exc:  # noqa: BLE001 - what this test looks for
                findings.append(f"{path.name} ({text[:12]}...): {type(exc).__name__}: {str(exc)[:100]}")
        for props in ({PROPS_KEY: text}, {"edgeseg.num_classes": text}):
            with pytest.raises(EdgesegError, match="metadata is damaged"):
                ModelMeta.from_props(props, "model.onnx")
    assert not findings, "\n".join(findings)


def test_a_colour_or_class_count_stated_as_true_is_not_an_integer(tmp_path):
    from edgeseg.data.folder import read_classes
    from edgeseg.models.meta import ModelMeta

    path = tmp_path / "classes.json"
    path.write_text('{"names": ["a", "b"], "palette": [[1, 2, 3], [7, 8, true]]}')
    with pytest.raises(EdgesegError, match="palette"):
        read_classes(path)
    flat = {"edgeseg.class_names": '["a", "b"]', "edgeseg.res": "[48, 36]", "edgeseg.palette": "[[1, 2, 3], [4, 5, 6]]"}
    assert ModelMeta.from_props(flat, "m.onnx").data.palette[1] == (4, 5, 6)  # edgeseg 0.1.0's flat keys
    for key, value in (("edgeseg.palette", "[[1, 2, 3], [4, 5, true]]"), ("edgeseg.palette", "[[1, 2, 3], [4, 5, 6.9]]"),
                       ("edgeseg.ignore_index", "true"), ("edgeseg.mean", "[0.5, true, 0.5]")):
        with pytest.raises(EdgesegError):
            ModelMeta.from_props({**flat, key: value}, "m.onnx")
