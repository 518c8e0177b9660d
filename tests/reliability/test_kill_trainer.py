"""The trainer killed (SIGKILL) mid-epoch and mid-checkpoint-write.

The monitor (app.runlib.Run, and the cockpit via Pilot) shows the run crashed within two
seconds; `segwatch resume` continues from the last complete checkpoint, which is never a torn
file; the history shows each epoch once; adjustments stay in force.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from faults import CONFIGS, ROOT, TINY, answers, env, events, segwatch, wait_for

from app import launch
from app.runlib import Run
from trainer.record import atomic_write_bytes

POLL = 0.05  # the monitor's poll interval in these tests; "within two seconds" is 40 polls


def start_supervised(runs: Path, *sets: str) -> launch.LaunchSpec:
    """Start a tiny trainer exactly as `segwatch run` does (supervisor, own session)."""
    (spec,) = launch.plan_runs([CONFIGS / "lmsa_focal.yaml"], [*TINY, *sets], runs_dir=runs, device="cpu")
    return launch.start(spec)


def trainer_pid(run_dir: Path) -> int:
    return wait_for(lambda: _read_pid(run_dir), 120, "trainer.pid")


def _read_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "trainer.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def refreshed(run_dir: Path) -> Run:
    r = Run(run_dir)
    r.refresh()
    return r


def kill_and_time_crash(run: Run, pid: int) -> float:
    """SIGKILL ``pid``; refresh ``run`` every POLL s until it shows crashed; the seconds it took."""
    run.refresh()
    assert run.state.status == "running", run.state.status_detail()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while run.state.status != "crashed":
        assert time.monotonic() - t0 < 30, f"still {run.state.status_detail()} 30 s after SIGKILL"
        time.sleep(POLL)
        run.refresh()
    return time.monotonic() - t0


def test_sigkill_mid_epoch_crashed_within_2s_then_resume_keeps_history_and_adjustments(tmp_path):
    spec = start_supervised(tmp_path, "training.epochs=4", "debug.step_delay=0.1")
    d = spec.run_dir
    try:
        wait_for(lambda: (d / "events.jsonl").exists() and events(d, "step"), 120, "the first step")
        run = refreshed(d)
        before_ckpt = run.send("set", {"gamma": 1.0}, reason="before the checkpoint")  # saved in last.pt
        wait_for(lambda: [c for c in events(d, "checkpoint") if c["kind"] == "last" and c["epoch"] == 1], 120,
                 "the epoch 1 checkpoint")
        after_ckpt = run.send("set", {"dropout": 0.3}, reason="after the checkpoint")  # only in events.jsonl
        ack = wait_for(lambda: answers(d, after_ckpt), 60, "the dropout ack")[0]
        wait_for(lambda: [s for s in events(d, "step") if s["step"] >= ack["step"]], 60, "a step with dropout 0.3")
        assert [a["type"] for a in answers(d, before_ckpt)] == ["ack"]
        took = kill_and_time_crash(run, trainer_pid(d))
        assert took < 2.0, f"the monitor showed the crash {took:.2f} s after SIGKILL"
        assert "SIGKILL" in (run.state.crash_reason or "") or "gone" in (run.state.crash_reason or "")
        spec.proc.wait(30)
    finally:
        if spec.proc.poll() is None:
            os.killpg(spec.proc.pid, signal.SIGKILL)
    assert not [e for e in events(d, "end")]
    # `segwatch resume` (headless: stdout is not a terminal) restarts it and follows it to the end
    p = segwatch("resume", str(d), "--device", "cpu", "--interval", "0.2", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "resuming" in p.stderr and "CRASHED" not in p.stdout
    r = refreshed(d)
    assert r.state.status == "finished", r.state.status_detail()
    assert [e["epoch"] for e in r.state.history()] == [1, 2, 3, 4]  # each epoch once
    starts = events(d, "start")
    assert [s["resume_epoch"] for s in starts] == [0, 1]
    assert starts[1]["live"]["gamma"] == 1.0 and starts[1]["live"]["dropout"] == 0.3
    for e in r.state.history()[1:]:  # the epochs trained after the resume ran with both adjustments
        assert e["gamma"] == 1.0 and e["dropout"] == 0.3
    assert r.state.live["gamma"] == 1.0 and r.state.live["dropout"] == 0.3
    assert [a.status for a in r.state.adjustments] == ["applied", "applied"] and not r.state.pending()
    for cid in (before_ckpt, after_ckpt):
        assert len(answers(d, cid)) == 1  # answered once, never re-answered by the resumed trainer
    evs = events(d)
    assert [e["seq"] for e in evs] == list(range(len(evs)))


def checkpoint_epoch(path: Path) -> int:
    """Load a checkpoint the way the trainer does (weights_only=True); its epoch."""
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_sigkill_mid_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    spec = start_supervised(tmp_path, "training.epochs=3", "debug.checkpoint_write_pause=3")
    d = spec.run_dir
    ck = d / "checkpoints"
    try:
        wait_for(lambda: (d / "events.jsonl").exists() and [e for e in events(d, "epoch") if e["epoch"] == 2], 180,
                 "the end of epoch 2")
        tmp = wait_for(lambda: list(ck.glob(".last.pt.*.tmp")), 30, "epoch 2's last.pt being written")[0]
        os.kill(trainer_pid(d), signal.SIGKILL)  # halfway through the write (it pauses there 3 s)
        spec.proc.wait(30)
    finally:
        if spec.proc.poll() is None:
            os.killpg(spec.proc.pid, signal.SIGKILL)
    assert tmp.exists() and 0 < tmp.stat().st_size < (ck / "last.pt").stat().st_size  # a torn temp file...
    assert checkpoint_epoch(ck / "last.pt") == 1  # ...and last.pt whole, from the previous epoch
    assert not [c for c in events(d, "checkpoint") if c["epoch"] == 2]
    p = segwatch("resume", str(d), "--device", "cpu", "--interval", "0.2", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not list(ck.glob(".*.tmp")), "the torn temp file was left behind"
    assert checkpoint_epoch(ck / "last.pt") == 3
    r = refreshed(d)
    assert r.state.status == "finished" and [e["epoch"] for e in r.state.history()] == [1, 2, 3]


_WRITER = r"""
import hashlib, os, sys
from pathlib import Path
from trainer.record import atomic_write_bytes
path, i = Path(sys.argv[1]), 0
while True:
    i += 1
    body = os.urandom(4096 * (1 + i % 64))
    atomic_write_bytes(path, hashlib.sha256(body).digest() + body)
"""


@pytest.mark.slow  # 40 child processes killed one by one: more than a few seconds
def test_many_kills_at_random_moments_never_tear_the_file(tmp_path):
    """A writer rewriting a file through atomic_write_bytes (the checkpoint writer's path),
    SIGKILLed at 40 random moments: the file is always whole (its checksum holds)."""
    import hashlib

    target = tmp_path / "last.pt"
    atomic_write_bytes(target, hashlib.sha256(b"first").digest() + b"first")
    rng = random.Random(1234)
    for _ in range(40):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=ROOT, env=env())
        time.sleep(0.3 + rng.random() * 0.3)  # python start-up, then a random moment of writing
        proc.kill()
        proc.wait(30)
        data = target.read_bytes()
        assert hashlib.sha256(data[32:]).digest() == data[:32], "a torn file"
    assert len(list(tmp_path.glob(".*.tmp"))) <= 40  # the temp files of the killed writes, never the target


async def test_cockpit_shows_a_sigkilled_trainer_crashed_within_2s(tmp_path):
    from tui_helpers import make_app, pane_text
    from tui_helpers import wait_for as pilot_wait

    spec = start_supervised(tmp_path, "training.epochs=30", "debug.step_delay=0.1")
    d = spec.run_dir
    app = make_app([d], interval=0.25)
    app.watcher.specs = [spec]
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot_wait(pilot, lambda: 0 in app.views and app.views[0].step is not None, 120, "the first step")
            os.kill(trainer_pid(d), signal.SIGKILL)
            t0 = time.monotonic()
            await pilot_wait(pilot, lambda: "killed by SIGKILL" in pane_text(app), 10, "the crash in the pane")
            took = time.monotonic() - t0
            assert app.views[0].status == "crashed" and app.views[0].colour == "red"
        assert took < 2.0, f"the cockpit showed the crash {took:.2f} s after SIGKILL"
    finally:
        if spec.proc.poll() is None:
            os.killpg(spec.proc.pid, signal.SIGKILL)


def test_resume_state_loads_onto_the_cpu_whatever_the_device(tmp_path):
    """`--resume --device cuda` mapped the whole checkpoint, RNG states included, onto the GPU,
    and torch.set_rng_state refuses a non-CPU tensor: a GPU resume crashed. Simulated here with
    the 'meta' device (no GPU needed): the state must come back on the CPU and restore cleanly."""
    from trainer import checkpoint as ckpt
    from trainer.rundir import load_resume

    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    from trainer.core.config import load_config

    cfg = load_config(CONFIGS / "baseline.yaml", TINY)
    ckpt.save(run / "checkpoints" / "last.pt", {"model": {"w": torch.ones(2)}, "optimizer": {}, "epoch": 1, "live": {},
                                                "config": cfg.to_dict(), "rng": ckpt.rng_state()})
    _, state = load_resume(run, torch.device("meta"))
    assert state["model"]["w"].device.type == "cpu"
    ckpt.set_rng_state(state["rng"])


def test_a_second_trainer_on_the_same_run_is_refused(tmp_path):
    """Two `resume`s of one run (two terminals, two monitors) would interleave two trainers'
    events and checkpoints: the second is refused (exit 2, one line) and the record stays whole."""
    from faults import popen_trainer, run_trainer, trainer_argv

    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=30", "debug.step_delay=0.1"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "checkpoint"), 120, "a checkpoint")
        pid = trainer_pid(run)
        for argv, says in ((["--resume", str(run), "--device", "cpu"], f"another trainer (pid {pid}) is writing this run"),
                           (["--config", str(CONFIGS / "baseline.yaml"), "--run-dir", str(run), "--device", "cpu",
                             *[x for s in TINY for x in ("--set", s)]], "it already holds a run")):
            p = run_trainer(argv, timeout=120)
            assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
            assert says in p.stderr
        assert len(events(run, "start")) == 1 and trainer_pid(run) == pid
        assert (run / "config.yaml").read_text().startswith("name: lmsa_focal")
        step = events(run, "step")[-1]["step"]
        wait_for(lambda: events(run, "step")[-1]["step"] > step, 60, "the first trainer going on")
    finally:
        proc.kill()
        proc.wait(30)
