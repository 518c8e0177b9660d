"""Helpers for the SLURM tests: run segwatch, submit a tiny run, poll with a deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=64", "training.batch_size=8",
        "training.warmup_epochs=0", "training.log_every=1"]


def segwatch(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def submit(env: dict, runs_dir: Path, *args: str, epochs: int = 200, config: str = "lmsa_focal") -> tuple[Path, str]:
    """`segwatch run CONFIG --launcher slurm` on tiny settings; returns (run dir, job id) once submitted."""
    sets = [x for s in TINY + [f"training.epochs={epochs}"] for x in ("--set", s)]
    background(env, "run", str(ROOT / "configs" / f"{config}.yaml"), "--launcher", "slurm", "--headless",
               "--device", "cpu", "--runs-dir", str(runs_dir), *sets, *args, expect="as SLURM job")
    run_dir = runs_dir / config
    return run_dir, json.loads((run_dir / "slurm.json").read_text())["job_id"]


def wait_for(what: str, check, timeout: float = 120.0, poll: float = 0.2):
    end = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def background(env: dict, *args: str, expect: str) -> str:
    """Start `segwatch ARGS` (a command that then follows the run headless), read its first stderr
    line (which must contain ``expect``), stop that monitor: the job does not depend on it."""
    p = subprocess.Popen([sys.executable, "-m", "app", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = p.stderr.readline()
    finally:
        p.terminate()
        rest = p.communicate(timeout=30)[1]
    assert expect in line, line + rest
    return line


def sacct_state(cluster, job_id: str) -> str:
    out = cluster.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State", check=False).stdout.split()
    return out[0] if out else ""
