"""The overlay with a reference run, in a real terminal: a real 2-epoch run made first is the --ref of a
real run watched at 200x55 (the legend names both, the reference as `ref: baseline`), and at 80x24
the header, health and suggestion stay on screen with the --ref (the overlay gives way first).
Needs tmux (CI installs it in .ci/run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tmux_driver
from tmux_driver import trainer_alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.warmup_epochs=0",
        "training.batch_size=8", "training.log_every=1"]


def sets(extra: list[str]) -> list[str]:
    return [x for s in TINY + extra for x in ("--set", s)]


def test_reference_run_in_the_overlay_and_health_at_80x24(tmux, tmp_path):
    runs = tmp_path / "runs"
    # the reference: a real 2-epoch run, finished (headless: returns when it ends)
    made = subprocess.run([sys.executable, "-m", "app", "run", "configs/lmsa_focal.yaml",
                           *sets(["training.epochs=2"]), "--name", "baseline", "--runs-dir", str(runs),
                           "--device", "cpu", "--no-gpu", "--headless"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert '"type":"end","reason":"completed"' in (runs / "baseline" / "events.jsonl").read_text()
    ref_control = (runs / "baseline" / "control.jsonl").read_bytes()  # the trainer's own (empty) file
    # the live run: red from a NaN at step 3, so a suggestion is on screen
    live = runs / "lmsa_focal"
    cmd = [sys.executable, "-m", "app", "run", "configs/lmsa_focal.yaml",
           *sets(["training.epochs=60", "debug.step_delay=0.1", "debug.nan_at_step=3"]),
           "--ref", "baseline", "--runs-dir", str(runs), "--device", "cpu", "--no-gpu"]
    tmux("new-session", "-d", "-s", "big", "-x", "200", "-y", "55", tmux_driver.shell(cmd, ROOT))
    try:
        text = tmux.wait("big", lambda s: "━ lmsa_focal" in s and "┄ ref: baseline" in s, 180,
                         "the legend with the run and its reference")
        assert "val F · EMA off · x: epochs" in text
        # the live run's record is there (red from the NaN, with its suggestion) before the second cockpit
        text = tmux.wait("big", lambda s: " RED " in s and "→ " in s and "[enter]/a" in s, 180,
                         "a red run's suggestion at 200x55")
        assert len(text.splitlines()) <= 55 and "┄ ref: baseline" in text
        # e: the smoothing, said in the title
        tmux("send-keys", "-t", "big", "e")
        tmux.wait("big", lambda s: "val F · EMA 0.6 · x: epochs" in s, 15, "EMA 0.6 in the overlay's title")
        # the same run at 80x24 with the --ref: header, health and the suggestion on screen
        tmux("new-session", "-d", "-s", "small", "-x", "80", "-y", "24",
             tmux_driver.shell([sys.executable, "-m", "app", "attach", "lmsa_focal", "--ref", "baseline",
                                "--runs-dir", str(runs), "--no-gpu"], ROOT))
        text = tmux.wait("small", lambda s: " RED " in s and "→ " in s and "[enter]/a" in s, 60,
                         "a red run's suggestion at 80x24")
        assert len(text.splitlines()) <= 24 and "health" in text and "val F" in text
        assert "ref: baseline" not in text  # the overlay gave way
        tmux("send-keys", "-t", "small", "q")
        tmux.wait("small", lambda s: "Quit segwatch?" in s, 15, "the quit dialog")
        tmux("send-keys", "-t", "small", "d")
        tmux.wait("small", lambda s: "__EXIT__0" in s, 15, "the small cockpit to detach")
        # stop from the big one
        tmux("send-keys", "-t", "big", "q")
        tmux.wait("big", lambda s: "Quit segwatch?" in s, 15, "the quit dialog")
        tmux("send-keys", "-t", "big", "s")
        tmux.wait("big", lambda s: "__EXIT__0" in s, 30, "segwatch to exit after stopping")
        # nothing was ever sent to the reference
        assert (runs / "baseline" / "control.jsonl").read_bytes() == ref_control
    finally:
        if trainer_alive(live):
            os.kill(int((live / "trainer.pid").read_text()), signal.SIGKILL)
