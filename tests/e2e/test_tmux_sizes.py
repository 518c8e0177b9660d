"""A real trainer turning red in a real terminal, at 80x24 and 200x55: the status, epoch/ETA, val F
and the health signal with its suggested action on screen without scrolling; the bell and the
OSC 9/777 notification written to the terminal (read raw with `pipe-pane`); the quit dialog's
text whole; re-attached after the run stopped, `q` quits without asking and nothing is notified
again. Needs tmux (CI installs it in .ci/run).
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

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.epochs=60",
        "training.warmup_epochs=0", "training.batch_size=8", "training.log_every=1", "debug.step_delay=0.1",
        "debug.nan_at_step=3"]


def wait_file(path: Path, pred, timeout: float, what: str) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if pred(data):
            return data
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {data[-400:]!r}")


@pytest.mark.parametrize("width,height", [(80, 24), (200, 55)])
def test_red_run_at_any_size(tmux, tmp_path, width, height):
    runs = tmp_path / "runs"
    sets = [x for s in TINY for x in ("--set", s)]
    cmd = [sys.executable, "-m", "app", "run", "configs/lmsa_focal.yaml", *sets, "--runs-dir", str(runs),
           "--device", "cpu", "--no-gpu"]
    run_dir = runs / "lmsa_focal"
    raw = tmp_path / "raw.out"
    tmux("new-session", "-d", "-s", "sz", "-x", str(width), "-y", str(height), tmux_driver.shell(cmd, ROOT))
    tmux("pipe-pane", "-t", "sz", "-o", f"cat >> {raw}")
    try:
        # red from the NaN at step 3, with its suggested action, all on the first screen
        text = tmux.wait("sz", lambda s: " RED " in s and "→ " in s and "[enter]/a" in s, 180, "a red run's suggestion")
        lines = text.splitlines()
        assert len(lines) <= height
        assert re.search(r"epoch \d+/60 ", text) and "val F" in text and "health" in text
        assert any("✗" in ln or "⚠" in ln for ln in lines), text  # the failing signal
        # the terminal got the bell and the desktop notification (inside tmux: its passthrough)
        data = wait_file(raw, lambda d: b"]9;segwatch: lmsa_focal RED" in d, 30, "the OSC 9 notification")
        assert b"\x07" in data and b"]777;notify;segwatch: lmsa_focal RED;" in data
        assert data.count(b"]9;segwatch: lmsa_focal RED") == 1
        # the quit dialog, whole
        tmux("send-keys", "-t", "sz", "q")
        tmux.wait("sz", lambda s: "Quit segwatch?" in s and "(checkpoint kept)." in s and "Detach (d)" in s
                  and "Stop runs (s)" in s and "Cancel (c)" in s, 15, "the whole quit dialog")
        tmux("send-keys", "-t", "sz", "s")
        tmux.wait("sz", lambda s: "__EXIT__0" in s, 30, "segwatch to exit after stopping")
        deadline = time.monotonic() + 60
        while trainer_alive(run_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not trainer_alive(run_dir)
        # re-attach to the stopped run: its summary, q quits at once, nothing notified again
        raw2 = tmp_path / "raw2.out"
        tmux("new-window", "-t", "sz", "-n", "again",
             tmux_driver.shell([sys.executable, "-m", "app", "attach", "--runs-dir", str(runs), "lmsa_focal", "--no-gpu"],
                               ROOT))
        tmux("pipe-pane", "-t", "sz:again", "-o", f"cat >> {raw2}")
        text = tmux.wait("sz:again", lambda s: "■ stopped after" in s, 30, "the end summary")
        assert "segwatch resume lmsa_focal" in text and "segwatch report lmsa_focal" in text
        tmux("send-keys", "-t", "sz:again", "q")
        text = tmux.wait("sz:again", lambda s: "__EXIT__" in s, 15, "q to quit without asking")
        assert "__EXIT__0" in text and "Quit segwatch?" not in text
        assert b"]9;" not in (raw2.read_bytes() if raw2.exists() else b"")
    finally:
        if trainer_alive(run_dir):
            os.kill(int((run_dir / "trainer.pid").read_text()), signal.SIGKILL)
