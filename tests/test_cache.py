"""The decoded cache (edgeseg data cache, train --cache): the same samples as the files, and a
cache that no longer matches them (changed, truncated, another version or split) refused in one line."""

import json
import os

import numpy as np
import pytest

from edgeseg.data import build_dataset
from edgeseg.data.cache import build_cache, cached_dataset, check_cache
from edgeseg.errors import DataError


def test_a_cache_reads_the_same_samples(folder_dataset, tmp_path):
    ds = build_dataset("folder", folder_dataset, "train")
    build_cache(ds, tmp_path / "c", progress=False)
    cached = cached_dataset(ds, tmp_path / "c")
    assert len(cached) == len(ds) and cached.info == ds.info
    for i in range(len(ds)):
        a, b = ds[i], cached[i]
        assert a.name == b.name and np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    sub = cached.subset([2, 0])
    assert [sub.sample_name(i) for i in range(2)] == [ds.sample_name(2), ds.sample_name(0)]


def test_a_cache_that_no_longer_matches_is_refused(folder_dataset, tmp_path):
    ds = build_dataset("folder", folder_dataset, "train")
    cache = tmp_path / "c"
    build_cache(ds, cache, progress=False)
    with pytest.raises(DataError, match="built from .*/train, not .*/val"):
        cached_dataset(build_dataset("folder", folder_dataset, "val"), cache)
    first = cache / "000000.image.npy"
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="000000.image.npy: missing or truncated"):
        cached_dataset(ds, cache)
    first.write_bytes(data)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "edgeseg_version": "0.0.1"}))
    with pytest.raises(DataError, match="built by edgeseg 0.0.1"):
        cached_dataset(ds, cache)
    (cache / "manifest.json").write_text(json.dumps(manifest))
    label = ds.label_files(1)[0]
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))  # an edited label file
    with pytest.raises(DataError, match=f"{label.name} changed since the cache was built \\(stale"):
        cached_dataset(ds, cache)
    with pytest.raises(DataError, match="generated, not read from files"):
        build_cache(build_dataset("synthetic", None, "val"), tmp_path / "s", progress=False)


def test_cache_command_and_training_from_it(folder_dataset, tmp_path, cli_run):
    code, out, err = cli_run("data", "cache", "--dataset", "folder", "--data", folder_dataset, "--out", tmp_path / "c", "--quiet")
    assert code == 0 and "cached 6 samples" in out, err
    code, out, err = cli_run("data", "cache", "--dataset", "folder", "--data", folder_dataset, "--out", tmp_path / "c", "--verify")
    assert code == 0 and "as its files are now" in out, err
    code, out, err = cli_run("data", "cache", "--dataset", "folder", "--data", folder_dataset, "--split", "val", "--out", tmp_path / "c",
                             "--verify")
    assert code == 2 and f"--out {tmp_path / 'c'}: built from" in err, err  # said against the option given
    val = ["data", "cache", "--dataset", "folder", "--data", folder_dataset, "--split", "val", "--quiet", "--out"]
    code, _, err = cli_run(*val, tmp_path / "c")
    assert code == 2 and "holds the decoded cache of" in err and "--exist-ok" in err and len(err.strip().splitlines()) == 1, err
    cli_run("data", "cache", "--dataset", "folder", "--data", folder_dataset, "--out", tmp_path / "c3", "--quiet")
    code, _, err = cli_run(*val, tmp_path / "c3", "--exist-ok")
    assert code == 0 and json.loads((tmp_path / "c3" / "manifest.json").read_text())["split"] == "val", err
    base = ["train", "--dataset", "folder", "--data", folder_dataset, "--model", "tiny", "--res", "48x36", "--epochs", "1",
            "--batch", "2", "--quiet", "--pretrained", "none"]
    code, _, err = cli_run(*base, "--out", tmp_path / "plain")
    assert code == 0, err
    code, _, err = cli_run(*base, "--out", tmp_path / "cached", "--cache", tmp_path / "c")
    assert code == 0, err
    plain, cached = ((tmp_path / r / "metrics.jsonl").read_text() for r in ("plain", "cached"))
    assert json.loads(plain)["train_loss"] == json.loads(cached)["train_loss"]  # the same data, the same run
    (tmp_path / "c" / "manifest.json").write_text("{")
    code, _, err = cli_run(*base, "--out", tmp_path / "stale", "--cache", tmp_path / "c")
    assert code == 2 and "manifest.json: damaged" in err and len(err.strip().splitlines()) == 1


def test_a_failed_rebuild_keeps_the_cache_and_a_foreign_folder_is_refused(tmp_path, monkeypatch):
    """Rebuilding a cache over a good one and failing on a bad image leaves the old cache whole
    (it still verifies); a folder of other files is not taken as a cache folder."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "data")
    ds = build_dataset("folder", root, "train")
    build_cache(ds, tmp_path / "c", progress=False)
    before = sorted(p.name for p in (tmp_path / "c").iterdir())
    bad = ds.sample_files(1)[0]
    saved, stat = bad.read_bytes(), bad.stat()
    bad.write_bytes(b"junk")
    with pytest.raises(DataError):
        build_cache(build_dataset("folder", root, "train"), tmp_path / "c", progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == before
    bad.write_bytes(saved)
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    check_cache(ds, tmp_path / "c", verify_hashes=True)  # the old cache, whole
    for name, content in (("notes.txt", b"mine"), ("embeddings.npy", b"mine too"),  # arrays of the user's are not a cache
                          ("manifest.json", b'{"project": "mine"}')):  # nor a manifest of something else
        folder = tmp_path / f"other-{name}"
        folder.mkdir()
        (folder / name).write_bytes(content)
        with pytest.raises(DataError, match="holds other files"):
            build_cache(ds, folder, progress=False)
        assert (folder / name).read_bytes() == content
    # a rebuild over a cache of more samples: the new files replace the old, the extra old ones go
    more = make_folder_dataset(tmp_path / "more", n_train=8)
    build_cache(build_dataset("folder", more, "train"), tmp_path / "c2", progress=False)
    kept = sorted(p.name for p in (tmp_path / "c2").iterdir())
    with pytest.raises(DataError, match="holds the decoded cache of more/train from .*more/train, not of data/train .*--exist-ok"):
        build_cache(ds, tmp_path / "c2", progress=False)  # another data set's cache is not replaced unasked
    assert sorted(p.name for p in (tmp_path / "c2").iterdir()) == kept
    build_cache(build_dataset("folder", more, "train"), tmp_path / "c2", progress=False)  # the same one: a refresh
    build_cache(ds, tmp_path / "c2", progress=False, replace=True)
    check_cache(ds, tmp_path / "c2", verify_hashes=True)
    assert sorted(p.name for p in (tmp_path / "c2").iterdir()) == before
    # the same files under another spelling of the root are the same cache; a damaged cache is rebuilt unasked
    monkeypatch.chdir(tmp_path)
    build_cache(build_dataset("folder", "data/../data", "train"), tmp_path / "c2", progress=False)
    manifest = tmp_path / "c2" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "samples": [1]}))
    build_cache(build_dataset("folder", more, "train"), tmp_path / "c2", progress=False)


def test_a_source_replaced_with_one_of_the_same_size_and_time_is_stale(folder_dataset, tmp_path):
    """rsync -t and the like keep size and modification time: the change time tells (a cache built
    from an old mask trained on it without a word); --verify's hashes decide on content."""
    from edgeseg.data import build_dataset
    from edgeseg.data.cache import build_cache, check_cache

    ds = build_dataset("folder", folder_dataset, "train")
    build_cache(ds, tmp_path / "c", progress=False)
    mask = ds.label_files(0)[0]
    before = mask.stat()
    mask.write_bytes(mask.read_bytes())  # rewritten (its content could be another of the same length)
    os.utime(mask, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (mask.stat().st_size, mask.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(DataError, match="changed since the cache was built"):
        check_cache(ds, tmp_path / "c")
    check_cache(ds, tmp_path / "c", verify_hashes=True)  # the same bytes: the hashes say so


def test_data_cache_without_a_data_set_speaks_of_the_data_set_not_of_a_model(tmp_path, cli_run):
    code, _, err = cli_run("data", "cache", "--out", tmp_path / "c", "--quiet")
    assert code == 2 and "model" not in err and "synthetic" in err and err.count("\n") == 1
