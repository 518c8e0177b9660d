"""End to end in a real terminal: tmux runs `segwatch run` with two tiny configs.

It reads the screen with `capture-pane`, presses keys, detaches with `q`, checks the trainers
survived (also a cockpit whose terminal is killed: SIGHUP, as with a dropped SSH connection),
re-attaches with `segwatch attach` and finds the history, then quits with "stop runs". Each wait polls the screen
with a deadline (no bare sleeps). Needs tmux (CI installs it in .ci/run).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import tmux_driver
from tmux_driver import trainer_alive

from app.runlib import Run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.epochs=40",
        "training.warmup_epochs=0", "training.batch_size=8", "training.log_every=1", "debug.step_delay=0.15"]
W, H = 220, 60


def shell(cmd: list[str]) -> str:
    return tmux_driver.shell(cmd, ROOT)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_run_keys_detach_and_attach(tmux, tmp_path):
    runs = tmp_path / "runs"
    sets = [x for s in TINY for x in ("--set", s)]
    cmd = [sys.executable, "-m", "app", "run", "configs/lmsa_focal.yaml", "configs/lmsa_aggressive.yaml",
           *sets, "--runs-dir", str(runs), "--device", "cpu", "--no-gpu"]
    dirs = [runs / "lmsa_focal", runs / "lmsa_aggressive"]
    tmux("new-session", "-d", "-s", "e2e", "-x", str(W), "-y", str(H), shell(cmd))
    try:
        # both panes, side by side, each training (step events) with a status colour
        text = tmux.wait("e2e", lambda s: "1 lmsa_focal" in s and "2 lmsa_aggressive" in s, 30, "two panes")
        assert any("1 lmsa_focal" in ln and "2 lmsa_aggressive" in ln for ln in text.splitlines())
        tmux.wait("e2e", lambda s: len(re.findall(r"samples/s  step \d", s)) >= 2, 90, "steps in both panes")
        text = tmux.wait("e2e", lambda s: sum(s.count(f" {c} ") for c in ("GREEN", "YELLOW", "RED")) >= 2, 30,
                         "status badges")
        coloured = tmux.screen("e2e", escapes=True)
        assert "\x1b[" in coloured and any(f" {c} " in coloured for c in ("GREEN", "YELLOW"))
        # press l on the selected (first) run: the real trainer acks, the pane shows it applied
        tmux("send-keys", "-t", "e2e", "l")
        text = tmux.wait("e2e", lambda s: "applied at step" in s, 30, "the adjustment applied")
        assert "lr 3.00e-04→1.80e-04" in text or "lr 5.00e-04→3.00e-04" in text
        # quit -> dialog -> detach; the trainers keep running
        tmux("send-keys", "-t", "e2e", "q")
        tmux.wait("e2e", lambda s: "Quit segwatch?" in s and "Detach" in s, 10, "the quit dialog")
        tmux("send-keys", "-t", "e2e", "d")
        text = tmux.wait("e2e", lambda s: "__EXIT__" in s, 15, "segwatch to exit")
        assert "__EXIT__0" in text and "detached" in text
        assert all(trainer_alive(d) for d in dirs), "a trainer died with the TUI"
        # a dropped connection: the terminal of an attached cockpit goes away (SIGHUP)
        tmux("new-window", "-t", "e2e", "-n", "hup",
             shell([sys.executable, "-m", "app", "attach", "--runs-dir", str(runs), "--no-gpu"]))
        tmux.wait("e2e:hup", lambda s: "lmsa_focal" in s and "lmsa_aggressive" in s, 30, "a second cockpit")
        shell_pid = int(tmux("display", "-p", "-t", "e2e:hup", "#{pane_pid}").strip())
        tmux("kill-window", "-t", "e2e:hup")
        deadline = time.monotonic() + 15
        while pid_alive(shell_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(shell_pid), "the cockpit's terminal did not go away"
        assert all(trainer_alive(d) for d in dirs), "a trainer died with the terminal"
        # re-attach: the whole history, the adjustment included
        tmux("new-window", "-t", "e2e", "-n", "again",
             shell([sys.executable, "-m", "app", "attach", "--runs-dir", str(runs), "--no-gpu"]))
        text = tmux.wait("e2e:again", lambda s: "lmsa_focal" in s and "lmsa_aggressive" in s and "applied at step" in s,
                         30, "the re-attached cockpit with its history")
        assert "preset: lr_down" in text
        tmux("send-keys", "-t", "e2e:again", "q")
        tmux.wait("e2e:again", lambda s: "Stop runs" in s, 10, "the quit dialog")
        tmux("send-keys", "-t", "e2e:again", "s")
        tmux.wait("e2e:again", lambda s: "__EXIT__0" in s, 15, "segwatch to exit after stopping")
        deadline = time.monotonic() + 60
        while any(trainer_alive(d) for d in dirs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(trainer_alive(d) for d in dirs)
        for d in dirs:
            r = Run(d)
            r.refresh()
            assert r.state.status == "stopped", (d, r.state.status_detail())
    finally:
        for d in dirs:
            if trainer_alive(d):
                os.kill(int((d / "trainer.pid").read_text()), signal.SIGKILL)
