"""Shared fixtures: real tiny runs that several test modules read (trained once per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lanes  # noqa: E402  (the fast and slow lanes: tests/lanes.py)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=64", "training.batch_size=8",
        "training.epochs=3", "training.warmup_epochs=0"]
#: the plan's ablation chain: Baseline -> +LMSA -> +Focal (configs/*.yaml), and one more focal run
#: that differs from lmsa_focal only in focal_gamma (a two-point gamma study)
ABLATION = ("baseline", "lmsa", "lmsa_focal", "lmsa_focal_g1")
EXTRA = {"lmsa_focal_g1": ("lmsa_focal", ["loss.focal_gamma=1", "name=lmsa_focal_g1"])}


def pytest_collection_modifyitems(config, items):
    """Every test that starts a trainer or a terminal goes to the slow lane (tests/lanes.py), and is
    grouped for pytest-xdist's ``--dist loadgroup`` (tests/lanes.py `group_for_xdist`)."""
    lanes.mark_slow(items)
    lanes.group_for_xdist(items)


@pytest.fixture(autouse=True)
def _fast_lane_guard(request, monkeypatch):
    """In the fast lane, starting a trainer, a supervisor, tmux or SLURM fails the test (tests/lanes.py)."""
    yield from lanes.guard(request, monkeypatch)


@pytest.fixture
def tmux(request):
    """A private tmux server (tests/tmux_driver.py) for one test, killed after it: the terminal of the
    end-to-end and reliability tests (skipped where tmux is not installed). Its socket is named after
    the test module (segwatch-tmux_sizes-PID-...)."""
    from tmux_driver import Tmux, require_tmux

    require_tmux(f"{request.node.name} needs a real terminal")
    t = Tmux("segwatch-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    yield t
    t.kill()


@pytest.fixture(scope="session")
def tiny_ablation(tmp_path_factory) -> dict:
    """Real trainer runs on tiny synthetic data, trained side by side: baseline, lmsa, lmsa_focal and
    lmsa_focal_g1 (lmsa_focal with focal_gamma 1).

    lmsa_focal gets one live adjustment through the real control protocol: a `set gamma 1.5` line
    is in its control.jsonl before the trainer starts, so the trainer acks it at step 1.
    Returns {"runs_dir": Path, name: run dir, ...}.
    """
    runs_dir = tmp_path_factory.mktemp("ablation") / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    procs = {}
    for name in ABLATION:
        run_dir = runs_dir / name
        run_dir.mkdir(parents=True)
        if name == "lmsa_focal":
            line = {"v": 1, "id": uuid.uuid4().hex, "t": time.time(), "cmd": "set", "values": {"gamma": 1.5},
                    "reason": "test: calmer focusing", "source": "test"}
            fd = os.open(run_dir / "control.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(fd, (json.dumps(line) + "\n").encode())
            os.close(fd)
        config, extra = EXTRA.get(name, (name, []))
        cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / f"{config}.yaml"),
               "--run-dir", str(run_dir), "--device", "cpu"]
        for s in TINY + extra:
            cmd += ["--set", s]
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=600)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, f"{name}: {err[-2000:]}"
    return {"runs_dir": runs_dir, **{n: runs_dir / n for n in ABLATION}}
