"""The monitor killed: `segwatch run` (the cockpit, in a real terminal: tmux) is SIGKILLed right
after it sent a command the trainer had not answered yet. The trainer goes on, answers the
pending command, and `segwatch attach` shows the whole history with the command applied."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import tmux_driver
from faults import ROOT, TINY, descendants, events, segwatch, wait_for

from app.runlib import Run

pytestmark = pytest.mark.slow
W, H = 200, 60


def shell(cmd: list[str]) -> str:
    return tmux_driver.shell(cmd, ROOT, "OMP_NUM_THREADS=1")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_sigkilled_cockpit_loses_nothing(tmux, tmp_path):
    runs = tmp_path / "runs"
    d = runs / "lmsa_focal"
    sets = [x for s in [*TINY, "training.epochs=40", "debug.step_delay=0.3"] for x in ("--set", s)]
    tmux("new-session", "-d", "-s", "rel", "-x", str(W), "-y", str(H),
         shell([sys.executable, "-m", "app", "run", "configs/lmsa_focal.yaml", *sets, "--runs-dir", str(runs),
                "--device", "cpu", "--no-gpu"]))
    trainer = None
    try:
        tmux.wait("rel", lambda s: "samples/s  step" in s, 120, "steps in the cockpit")
        assert not (d / "exit.json").exists()
        wait_for(lambda: events(d, "epoch"), 120, "a finished epoch")
        trainer = int((d / "trainer.pid").read_text())
        supervisor = int(Path(f"/proc/{trainer}/stat").read_text().rsplit(")", 1)[1].split()[1])
        shell_pid = int(tmux("display", "-p", "-t", "rel", "#{pane_pid}").strip())
        cockpit = wait_for(lambda: [p for p in descendants(shell_pid) if b"app" in Path(f"/proc/{p}/cmdline").read_bytes()
                                    and alive(p)], 10, "the cockpit's pid")[0]
        os.kill(trainer, signal.SIGSTOP)  # hold the trainer: the command below stays unanswered
        try:
            tmux("send-keys", "-t", "rel", "l")  # lr x0.6: the cockpit appends it to control.jsonl
            wait_for(lambda: (d / "control.jsonl").read_bytes().count(b"\n") == 1, 30, "the command line")
            os.kill(cockpit, signal.SIGKILL)
            wait_for(lambda: not alive(cockpit), 10, "the cockpit to die")
            assert not [e for e in events(d) if e["type"] in ("ack", "nack")], "answered before the kill"
        finally:
            os.kill(trainer, signal.SIGCONT)
        tmux.wait("rel", lambda s: "__EXIT__137" in s, 15, "the shell to see the SIGKILL")
        tmux("kill-session", "-t", "rel")  # and then its terminal goes away too (SIGHUP), as over SSH
        # the trainer goes on and answers the pending command
        ack = wait_for(lambda: events(d, "ack"), 60, "the pending command's answer")[0]
        assert ack["changes"]["lr"][1] == pytest.approx(ack["changes"]["lr"][0] * 0.6)
        step = events(d, "step")[-1]["step"]
        wait_for(lambda: events(d, "step")[-1]["step"] > step + 3, 60, "more steps without a monitor")
        assert alive(trainer) and alive(supervisor)  # the supervisor too: it will record how the run ends
        # a new cockpit shows the whole history and the command applied
        tmux("new-session", "-d", "-s", "again", "-x", str(W), "-y", str(H),
             shell([sys.executable, "-m", "app", "attach", "lmsa_focal", "--runs-dir", str(runs), "--no-gpu"]))
        text = tmux.wait("again", lambda s: "applied at step" in s and "epoch" in s, 60, "the re-attached cockpit")
        assert "lr 5.00e-04→3.00e-04" in text, text  # lmsa_focal's 5e-4 x 0.6
        r = Run(d)
        r.refresh()
        done = r.state.last_epoch
        assert [e["epoch"] for e in r.state.history()] == list(range(1, done + 1))
        assert any(f"epoch {e}/40" in text for e in (done - 1, done, done + 1)), text
        assert [a.status for a in r.state.adjustments] == ["applied"] and not r.state.pending()
    finally:
        if trainer and alive(trainer):
            p = segwatch("stop", str(d), "--wait", "--timeout", "60")
            if p.returncode != 0 and alive(trainer):
                os.kill(trainer, signal.SIGKILL)
