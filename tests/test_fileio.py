import os
import stat

import pytest

from edgeseg.fileio import write_atomic, write_text_atomic


def test_atomic_write_gets_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")

    def boom(p):
        p.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        write_atomic(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_name_near_the_file_system_limit_is_written(tmp_path):
    from edgeseg.fileio import write_json_atomic

    for name in ("a" * 245 + ".json", "é" * 120 + ".json"):  # 250 and 245 bytes: the temporary name must stay under 255
        write_json_atomic(tmp_path / name, {"ok": True})
        assert (tmp_path / name).is_file()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_folder_lock_can_wait_for_another_process_to_let_go(tmp_path):
    """A shared cache folder (teacher labels): a second process waits for the first, then takes it;
    without a wait it is refused at once, naming the holder."""
    import subprocess
    import sys
    import time

    from edgeseg.errors import ConfigError
    from edgeseg.fileio import FolderLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom edgeseg.fileio import FolderLock\n"
                               f"with FolderLock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(2)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use by process"):
            with FolderLock(tmp_path):
                pass
        t0 = time.monotonic()
        with FolderLock(tmp_path, wait=60) as lock:
            assert lock.held and time.monotonic() - t0 > 0.5
    finally:
        holder.wait(timeout=30)


def test_a_lock_from_another_machine_is_not_waited_for(tmp_path):
    import time

    from edgeseg.errors import ConfigError
    from edgeseg.fileio import FolderLock

    (tmp_path / FolderLock.NAME).write_text("another-host 4242\n")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="in use by process 4242 on another-host"):
        with FolderLock(tmp_path, wait=60):
            pass
    assert time.monotonic() - t0 < 5


def test_swap_in_replaces_the_parts_whole_manifest_last_and_restores_them_on_a_failure(tmp_path, monkeypatch):
    """``swap_in``: the staged parts replace the folder's, old parts not staged go, the ``last`` part
    leaves first and arrives last; a move that fails part-way leaves the folder as it was (a new
    part that had arrived would otherwise sit beside the old manifest, which may take it for its own)."""
    import os

    from edgeseg.fileio import swap_in

    def folder():
        out = tmp_path / "out"
        out.mkdir()
        for name, text in (("a.npy", "old a"), ("stale.npy", "old stale"), ("manifest.json", "old m"), ("mine.txt", "user")):
            (out / name).write_text(text)
        stage = out / ".stage"
        stage.mkdir()
        for name, text in (("a.npy", "new a"), ("b.npy", "new b"), ("manifest.json", "new m")):
            (stage / name).write_text(text)
        return out, stage

    names = ["a.npy", "b.npy", "manifest.json", "stale.npy"]
    out, stage = folder()
    moves, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moves.append((os.path.basename(a), os.path.basename(os.path.dirname(b)))), replace(a, b)))
    swap_in(stage, out, names, last=("manifest.json",))
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == {"a.npy": "new a", "b.npy": "new b",
                                                                           "manifest.json": "new m", "mine.txt": "user"}
    assert moves[0] == ("manifest.json", ".old") and moves[-1] == ("manifest.json", "out") and not (stage / ".old").exists()

    import shutil

    shutil.rmtree(out)
    out, stage = folder()
    def failing(a, b):
        if os.path.dirname(b) == str(out) and os.path.basename(a) == "b.npy":  # the second new part cannot arrive
            raise OSError("disk full")
        replace(a, b)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        swap_in(stage, out, names, last=("manifest.json",))
    held = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}
    assert held == {"a.npy": "old a", "stale.npy": "old stale", "manifest.json": "old m", "mine.txt": "user"}  # as it was


def test_an_atomic_write_never_replaces_a_link_a_pipe_or_a_device(tmp_path):
    """Whatever writer it serves: a symbolic link (and so its target), a named pipe are left as they
    are and the write refused in words; a regular file is replaced."""
    import stat

    from edgeseg.errors import NotAFileError
    from edgeseg.fileio import atomic_path, write_json_atomic

    (tmp_path / "target.json").write_text("keep")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    os.mkfifo(tmp_path / "pipe.json")
    kinds = [("link.json", "is a symbolic link"), ("pipe.json", "is a named pipe")]
    try:  # a character device like /dev/null, where this user may make one
        os.mknod(tmp_path / "device.json", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        kinds.append(("device.json", "is a device"))
    except OSError:
        pass
    for name, said in kinds:
        with pytest.raises(NotAFileError, match=said):
            write_json_atomic(tmp_path / name, {"a": 1})
    assert (tmp_path / "target.json").read_text() == "keep" and (tmp_path / "link.json").is_symlink()
    assert stat.S_ISFIFO((tmp_path / "pipe.json").lstat().st_mode)
    assert len(kinds) == 2 or stat.S_ISCHR((tmp_path / "device.json").lstat().st_mode)
    with pytest.raises(NotAFileError, match="is a symbolic link"):  # a link put there while the file was written
        with atomic_path(tmp_path / "late.json") as tmp:
            tmp.write_text("new")
            (tmp_path / "late.json").symlink_to(tmp_path / "target.json")
    assert (tmp_path / "target.json").read_text() == "keep" and not list(tmp_path.glob(".*.tmp"))
    write_json_atomic(tmp_path / "target.json", {"a": 1})
    assert (tmp_path / "target.json").read_text().startswith("{")


def test_the_cache_folder_from_the_environment_must_be_an_absolute_folder(tmp_path, monkeypatch):
    from edgeseg.errors import ConfigError
    from edgeseg.fileio import cache_dir

    (tmp_path / "a-file").write_text("x")
    for value, said in (("", "expected an absolute folder"), ("relative/cache", "expected an absolute folder"),
                        (str(tmp_path / "a-file"), "is a file")):
        monkeypatch.setenv("EDGESEG_CACHE", value)
        with pytest.raises(ConfigError, match=r"\$EDGESEG_CACHE"):
            cache_dir()
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"


def test_every_writer_that_moves_staged_files_into_place_refuses_a_link_there(cli_run, tiny_checkpoint, shared_folder, tmp_path):
    """export, predict (with --exist-ok), autolabel and data cache (with --exist-ok) move whole staged
    files into their folder: a symbolic link under one of their names is refused in one line and left
    as it was (with its target), never replaced by a file."""
    import numpy as np
    from PIL import Image

    (tmp_path / "target").write_bytes(b"keep")
    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(tmp_path / "im.png")
    runs = {
        "export": ("model.onnx", ["export", "--model", tiny_checkpoint, "--no-verify"]),
        "predict": ("im_label.png", ["predict", "--model", tiny_checkpoint, tmp_path / "im.png", "--exist-ok"]),
        "autolabel": ("classes.json", ["autolabel", "--model", tiny_checkpoint, "--images", tmp_path / "im.png", "--exist-ok"]),
        "cache": (None, ["data", "cache", "--dataset", "folder", "--data", shared_folder, "--exist-ok"]),  # a sample's file
    }
    for what, (name, args) in runs.items():
        out = tmp_path / what
        if what in ("autolabel", "cache"):  # a folder of their own from an earlier run (they refuse any other)
            assert cli_run(*args, "--out", out, "--quiet")[0] == 0
            name = name or sorted(p.name for p in out.iterdir() if p.name != "manifest.json" and p.is_file())[0]
            (out / name).unlink()
        else:
            out.mkdir()
        (out / name).symlink_to(tmp_path / "target")
        code, _, err = cli_run(*args, "--out", out, "--quiet")
        assert code == 2 and err.count("\n") == 1 and "is a symbolic link" in err, (what, err)
        assert (out / name).is_symlink() and (tmp_path / "target").read_bytes() == b"keep", what


def test_an_os_error_is_said_of_the_file_it_concerns_with_what_to_do():
    """The command line's last handler: a copy's or move's destination before its source, the
    reason by errno (a full disk, permissions, a name too long), never a traceback."""
    import errno

    from edgeseg.errors import os_error_line

    full = OSError(errno.ENOSPC, "No space left on device", "in/img.png", None, "out/img.png")
    assert os_error_line(full) == "out/img.png: no space left on the device; free space there or write elsewhere"
    assert os_error_line(OSError(errno.EACCES, "Permission denied", "x.pt")).startswith("x.pt: permission denied; check its permissions")
    assert "too long" in os_error_line(OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300))
    assert os_error_line(OSError("921600 requested and 302976 written")).startswith("a file: 921600 requested")


def test_a_write_that_fails_is_said_of_the_file_asked_for_and_keeps_the_old_one(tmp_path, monkeypatch):
    """A full disk while writing (simulated: the write raises ENOSPC with no file name, as a write
    to an open file does): the error names the file asked for, not its hidden temporary, the old
    file keeps its content and no temporary is left. Checkpoints are written as plain bytes, so
    torch.save's own stream errors (a RuntimeError about positions on a full disk) cannot arise."""
    import errno
    from pathlib import Path

    import torch

    from edgeseg.trainer.checkpoint import save_torch

    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as got:
        save_torch(target, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert got.value.filename == str(target) and target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    save_torch(target, {"w": torch.ones(3)})
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


def test_no_module_saves_torch_objects_but_through_save_torch():
    import re
    from pathlib import Path

    import edgeseg

    root = Path(edgeseg.__file__).parent
    found = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\btorch\.save\(", line) and not (p.name == "checkpoint.py" and "buffer" in line)]
    assert not found, f"torch.save outside trainer.checkpoint.save_torch: {found}"


def test_names_longer_than_the_file_system_allows_are_refused_before_any_work(tiny_checkpoint, tmp_path, cli_run):
    """predict's outputs are named after its inputs: one too long for the file system is refused
    before inference, naming it; an output option's path likewise, naming the option."""
    import numpy as np
    from PIL import Image

    from edgeseg.fileio import name_max

    limit = name_max(tmp_path)
    if limit > 1000:
        pytest.skip(f"this file system takes names of {limit} bytes")
    long_name = "a" * (limit - 10) + ".png"  # fits; its "<stem>_overlay.png" does not
    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(tmp_path / long_name)
    code, _, err = cli_run("predict", "--model", tiny_checkpoint, tmp_path / long_name, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and f"over the file system's {limit}" in err and err.count("\n") == 1 and not (tmp_path / "o").exists()
    code, _, err = cli_run("eval", "--model", tiny_checkpoint, "--json", tmp_path / ("b" * (limit + 40) + ".json"), "--quiet")
    assert code == 2 and "--json" in err and f"over the file system's {limit}" in err and err.count("\n") == 1


def test_an_empty_onnx_file_is_said_to_be_empty(tmp_path, cli_run):
    (tmp_path / "model.onnx").write_bytes(b"")
    code, _, err = cli_run("eval", "--model", tmp_path / "model.onnx", "--quiet")
    assert code == 2 and "holds no ONNX graph (an empty file)" in err and err.count("\n") == 1
