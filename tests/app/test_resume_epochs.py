"""`segwatch resume RUN --epochs N`: an ended run (finished too) trained on to N epochs in all.

The refusals are checked on run directories written as the docs say (no trainer); the extension
itself with the real trainer: a 2-epoch run finishes, `resume --epochs 4` trains epochs 3 and 4,
and the LR of every step after the resume equals that of a run that got `segwatch set epochs 4`
live during its second epoch (the schedule is one pure function of the step and the live values).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runrecord import Record

from app.cli import main as segwatch_main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=32", "training.batch_size=8",
        "training.epochs=2", "training.warmup_epochs=1", "training.log_every=1", "model.width=8"]


def finished_run(tmp_path: Path, name: str = "done") -> Record:
    rec = Record(tmp_path / name)
    rec.start(epochs=2)
    rec.epochs_run(1, 2)
    rec.end("completed", epoch=2)
    (rec.dir / "checkpoints").mkdir()
    (rec.dir / "checkpoints" / "last.pt").write_bytes(b"not read by these tests")
    return rec


@pytest.mark.parametrize("n", [2, 1, 0])
def test_resume_epochs_not_above_the_epochs_done_is_refused(tmp_path, capsys, n):
    rec = finished_run(tmp_path)
    before = (rec.dir / "control.jsonl").read_bytes() if (rec.dir / "control.jsonl").exists() else b""
    assert segwatch_main(["resume", str(rec.dir), "--epochs", str(n), "--headless"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"segwatch: done: --epochs {n} is not more than the 2 epoch(s) it has done; give the total "
                   "number of epochs to reach (more than 2)")
    after = (rec.dir / "control.jsonl").read_bytes() if (rec.dir / "control.jsonl").exists() else b""
    assert after == before  # nothing queued


def test_resume_of_a_finished_run_without_epochs_says_how(tmp_path, capsys):
    rec = finished_run(tmp_path)
    assert segwatch_main(["resume", str(rec.dir), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "finished all its 2 epochs" in err and "segwatch resume done --epochs N" in err


def test_resume_epochs_checks_the_live_table(tmp_path, capsys):
    rec = finished_run(tmp_path)
    assert segwatch_main(["resume", str(rec.dir), "--epochs", "100001", "--headless"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 100001" in err and "epochs" in err and "100000" in err
    assert not (rec.dir / "control.jsonl").exists() or b"epochs" not in (rec.dir / "control.jsonl").read_bytes()


def test_resume_epochs_on_a_live_run_points_to_set(tmp_path, capsys):
    rec = Record(tmp_path / "live")
    rec.start(epochs=10)  # no pid: liveness unknown, taken as alive (never a second trainer)
    rec.epochs_run(1, 2)
    assert segwatch_main(["resume", str(rec.dir), "--epochs", "20", "--headless"]) == 2
    assert "segwatch set live epochs=20" in capsys.readouterr().err


# --- the real trainer --------------------------------------------------------------------------

def events(run_dir: Path) -> list[dict]:
    out = []
    path = run_dir / "events.jsonl"
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def trainer(run_dir: Path, extra: list[str] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa.yaml"), "--run-dir", str(run_dir),
           "--device", "cpu"]
    for s in [*TINY, *extra]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lr_by_step(evs: list[dict]) -> dict[int, float]:
    """The LR each step used, from the step events (log_every=1: one per step; the last write wins)."""
    return {e["step"]: e["lr"] for e in evs if e.get("type") == "step"}


@pytest.mark.slow
def test_resume_epochs_trains_on_with_the_live_schedule(tmp_path):
    runs = tmp_path / "runs"
    a, b = runs / "a", runs / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    pa = trainer(a)
    pb = trainer(b, ["debug.step_delay=0.4"])  # slow enough to be told `set epochs 4` during epoch 2
    try:
        deadline = time.monotonic() + 240
        while not any(e.get("type") == "epoch" and e.get("epoch") == 1 for e in events(b)):
            assert pb.poll() is None and time.monotonic() < deadline, "run b did not finish epoch 1"
            time.sleep(0.1)
        s = subprocess.run([sys.executable, "-m", "app", "set", str(b), "epochs=4", "--wait", "--timeout", "120"],
                           cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert s.returncode == 0, s.stderr
        _, err_a = pa.communicate(timeout=240)
        assert pa.returncode == 0, err_a[-2000:]
        _, err_b = pb.communicate(timeout=240)
        assert pb.returncode == 0, err_b[-2000:]
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
                p.communicate()
    ev_a = events(a)
    assert [e["reason"] for e in ev_a if e["type"] == "end"] == ["completed"]
    done_steps = max(lr_by_step(ev_a))

    r = subprocess.run([sys.executable, "-m", "app", "resume", str(a), "--epochs", "4", "--device", "cpu",
                        "--interval", "0.2"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    ev_a = events(a)
    epochs_a = sorted(e["epoch"] for e in ev_a if e["type"] == "epoch")
    assert epochs_a == [1, 2, 3, 4]  # epochs 3 and 4 trained after the resume
    assert [e["reason"] for e in ev_a if e["type"] == "end"] == ["completed", "completed"]
    (ack,) = [e for e in ev_a if e["type"] == "ack"]
    assert ack["changes"] == {"epochs": [2, 4]}
    (cmd,) = [json.loads(x) for x in (a / "control.jsonl").read_text().splitlines() if x.strip()]
    assert cmd["id"] == ack["id"] and cmd["source"] == "resume" and cmd["reason"] == "resume --epochs 4"

    lr_a, lr_b = lr_by_step(ev_a), lr_by_step(events(b))
    after = sorted(s for s in lr_a if s > done_steps)
    assert len(after) == done_steps  # two more epochs of as many steps
    assert sorted(s for s in lr_b if s > done_steps) == after
    assert [lr_a[s] for s in after] == [lr_b[s] for s in after]  # the same schedule, to the bit
    # and it is the longer schedule: not the LR the 2-epoch run would have used (held at its floor)
    assert lr_a[after[0]] > lr_a[done_steps] * 2
