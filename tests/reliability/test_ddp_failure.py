"""DDP rank failure: two gloo processes under torchrun (the trainer re-execs itself with
--nproc-per-node 2). Kill one worker (SIGKILL) or freeze it (SIGSTOP): the other exits within
the collective timeout (training.dist_timeout) instead of hanging, the whole launch exits
non-zero, and the monitor shows the run crashed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from faults import children, events, popen_trainer, trainer_argv, wait_for

from app.runlib import Run

pytestmark = pytest.mark.slow


def worker_pids(agent: int) -> dict[int, int]:
    """rank -> pid of the trainer workers torchrun (pid ``agent``) started."""
    out = {}
    for pid in children(agent):
        try:
            env = dict(x.split("=", 1) for x in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in x)
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"trainer" in cmd and "RANK" in env:
            out[int(env["RANK"])] = pid
    return out if len(out) == 2 else {}


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("victim, sig, timeout", [(1, signal.SIGKILL, 120), (0, signal.SIGKILL, 120), (1, signal.SIGSTOP, 10)],
                         ids=["kill-rank1", "kill-rank0", "freeze-rank1"])
def test_a_failed_rank_ends_the_run_instead_of_hanging(tmp_path, victim, sig, timeout):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=20", "debug.step_delay=0.1", "data.synthetic_train=64",
                                      f"training.dist_timeout={timeout}", config="baseline.yaml") + ["--nproc-per-node", "2"])
    ranks = {}
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events(run, "step"), 180, "the first DDP step")
        ranks = wait_for(lambda: worker_pids(proc.pid), 30, "the two workers")
        other = ranks[1 - victim]
        t0 = time.monotonic()
        os.kill(ranks[victim], sig)
        wait_for(lambda: gone(other), timeout + 60, f"rank {1 - victim} to exit")
        other_took = time.monotonic() - t0
        rc = proc.wait(timeout + 120)
        took = time.monotonic() - t0
    finally:
        for pid in ranks.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
    assert other_took < timeout + 30, f"rank {1 - victim} hung {other_took:.0f} s (collective timeout {timeout} s)"
    assert rc != 0 and took < timeout + 90
    r = Run(run)
    r.refresh()
    assert r.state.status == "crashed", r.state.status_detail()
    if victim == 1:  # rank 0 lived to write the crash, naming the collective that failed
        assert events(run, "end")[-1]["reason"] == "crashed"
