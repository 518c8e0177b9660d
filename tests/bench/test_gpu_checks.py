"""bench/gpu_checks.py cannot run here (no GPU); its --dry-run runs every check on the CPU with
tiny sizes (DDP on two gloo processes), so the script that will run on a GPU machine works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_checks_dry_run_passes_every_check(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_checks.py"), "--dry-run", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "SUMMARY" in p.stdout and "ALL PASS" in p.stdout
    doc = json.loads((tmp_path / "gpu_checks-dry.json").read_text())
    res = doc["results"]
    assert set(res) == {"precision", "cuda_setup", "ddp_resume", "data_wait"} and all(r["ok"] for r in res.values())
    assert res["ddp_resume"]["world_sizes"] == [2, 2] and res["precision"]["chosen"] == "fp32"
    assert res["data_wait"]["images_per_s"] > 0
