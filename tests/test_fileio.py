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
