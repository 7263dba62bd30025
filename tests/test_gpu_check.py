"""benchmarks/gpu_check.py, the prepared check for a borrowed GPU machine, dry-run on the CPU so
that it cannot rot between GPU sessions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29531"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    for name in ("train_throughput", "eval_parity_cuda_vs_cpu", "ddp_one_process"):
        assert result[name]["status"] == "ok", result[name]
    rows = result["train_throughput"]["rows"]
    assert len(rows) == 2 and all(r["img_per_s"] > 0 for r in rows)
    assert abs(rows[0]["loss"] - rows[1]["loss"]) < 1e-2  # channels_last computes the same steps, up to rounding
    assert result["eval_parity_cuda_vs_cpu"]["pixel_agreement"] == 100.0  # CPU against CPU in a dry run
    assert result["tensorrt"]["status"] in ("skipped", "ok")
