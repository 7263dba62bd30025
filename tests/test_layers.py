"""The package's layer order (pyproject.toml, [tool.importlinter]) holds, and breaking it fails."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "edgeseg layers KEPT" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("edgeseg/runtime/processing.py", "edgeseg.tasks.evaluate"),  # runtime core climbing to a task
    ("edgeseg/data/transforms.py", "edgeseg.models"),  # data climbing to models, inside a function
])
def test_an_upward_import_breaks_the_build(tmp_path, module, upward):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "edgeseg", copy / "edgeseg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / module, "a") as fh:
        fh.write(f"\n\ndef _climb():\n    import {upward}  # noqa: F401\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "edgeseg layers BROKEN" in result.stdout and upward in result.stdout
