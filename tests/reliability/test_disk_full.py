"""Disk full on a checkpoint write. The real fault where the machine allows it: the run directory
lives on a small tmpfs that a ballast file fills up after epoch 1's checkpoints. Elsewhere (no
root / no CAP_SYS_ADMIN) that test skips saying so, and the same path is driven by the
debug.checkpoint_enospc_from_epoch hook (an OSError(ENOSPC) raised halfway through the write).

Either way: the previous checkpoint is intact, the failure is a `checkpoint_failed` warning
event, no temp file is left, and the run can be resumed from the intact checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from faults import events, popen_trainer, segwatch, trainer_argv, wait_for

from app.runlib import Run


def ckpt_epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def fill(folder: Path, keep_free: int) -> Path:
    """Fill the filesystem of ``folder`` with a ballast file, then give back ``keep_free`` bytes."""
    ballast = folder / "ballast"
    chunk = b"\0" * (1 << 16)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - keep_free))
    finally:
        os.close(fd)
    return ballast


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "segwatch-test", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or 'mount failed'}): not root or no "
                    "CAP_SYS_ADMIN; test_enospc_hook drives the same code path")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _check_failed_write(run: Path, epoch: int) -> None:
    ck = run / "checkpoints"
    failed = [w for w in events(run, "warning") if w["code"] == "checkpoint_failed"]
    assert failed and "No space left on device" in failed[0]["message"] and "intact" in failed[0]["message"]
    assert ckpt_epoch(ck / "last.pt") == epoch  # the previous checkpoint, whole
    assert not list(ck.glob(".*.tmp"))  # the half-written temp file was removed
    r = Run(run)
    r.refresh()
    assert r.state.warning_counts["checkpoint_failed"] >= 1


def test_real_enospc_on_a_small_filesystem(small_fs):
    run = small_fs / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=4", "debug.step_delay=0.6"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and {c["kind"] for c in events(run, "checkpoint") if c["epoch"] == 1}
                 == {"last", "best"}, 180, "epoch 1's checkpoints")
        ballast = fill(small_fs, keep_free=256 << 10)  # room for events, not for another checkpoint
        wait_for(lambda: [w for w in events(run, "warning") if w["code"] == "checkpoint_failed"], 120,
                 "the failed checkpoint write")
        wait_for(lambda: [s for s in events(run, "step") if s["epoch"] >= 3], 120, "training going on after it")
        _check_failed_write(run, 1)
        os.kill(proc.pid, signal.SIGKILL)  # the machine goes down before any later checkpoint
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ballast.unlink()  # space is freed; the run resumes from the intact checkpoint
    p = segwatch("resume", str(run), "--device", "cpu", "--interval", "0.2", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [s["resume_epoch"] for s in events(run, "start")] == [0, 1]
    assert ckpt_epoch(run / "checkpoints" / "last.pt") == 4
    r = Run(run)
    r.refresh()
    assert r.state.status == "finished" and [e["epoch"] for e in r.state.history()] == [1, 2, 3, 4]


def test_enospc_hook(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=3", "debug.step_delay=0.3",
                                      "debug.checkpoint_enospc_from_epoch=2"))
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and [w for w in events(run, "warning")
                                                               if w["code"] == "checkpoint_failed"], 180,
                 "the failed checkpoint write")
        _check_failed_write(run, 1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    p = segwatch("resume", str(run), "--device", "cpu", "--interval", "0.2", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr  # (the hook is in the checkpoint's config: it fails on)
    assert [s["resume_epoch"] for s in events(run, "start")] == [0, 1]
    assert ckpt_epoch(run / "checkpoints" / "last.pt") == 1
    r = Run(run)
    r.refresh()
    assert r.state.status == "finished" and [e["epoch"] for e in r.state.history()] == [1, 2, 3]
