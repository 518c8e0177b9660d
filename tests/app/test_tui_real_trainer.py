"""The cockpit against the real trainer on a tiny config: press `l`, the trainer acks, the pane shows it;
then `s` stops it gracefully and `segwatch resume` restarts it from its checkpoint.

The trainer is started the way `segwatch run` starts it (app.launch: supervisor, own session).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_helpers import control_lines, make_app, pane_text, wait_for

from app import launch
from app.health import load_rules
from app.runlib import Run
from app.tui.widgets.header import Numbers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.epochs=30",
        "training.warmup_epochs=0", "training.batch_size=8", "training.log_every=1", "debug.step_delay=0.2"]


async def resume_and_stop(run_dir: Path) -> None:
    """`segwatch resume` restarts the stopped run from its checkpoint (headless: stdout is a pipe)."""
    p = subprocess.Popen([sys.executable, "-m", "app", "resume", str(run_dir), "--interval", "0.2"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        run = Run(run_dir)
        while time.monotonic() < deadline:
            run.refresh()
            st = run.state
            if st.start and st.start.get("resumed") and st.last_step and st.last_step["t"] > st.start["t"]:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the resumed trainer did not train")
        assert st.start["resume_epoch"] >= 0 and st.live["lr"] == pytest.approx(1.8e-4)  # the adjustment stays
        run.send("stop", reason="test over")
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "resuming" in err and "stopped" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


async def test_lr_key_reaches_the_real_trainer(tmp_path):
    (spec,) = launch.plan_runs([ROOT / "configs" / "lmsa_aggressive.yaml"], TINY, runs_dir=tmp_path, device="cpu")
    launch.start(spec)
    app = make_app([spec.run_dir], interval=0.25, rules=[load_rules()])
    app.watcher.specs = [spec]
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].step is not None, 90, "the first step")
            assert app.views[0].live["lr"] == pytest.approx(3e-4)
            await pilot.press("l")
            await wait_for(pilot, lambda: "applied at step" in pane_text(app), 60, "the trainer's ack")
            text = pane_text(app)
            assert "lr 3.00e-04→1.80e-04" in text
            numbers = app.panes[0].parts[1]
            assert isinstance(numbers, Numbers) and "lr 1.80e-04" in numbers.draw(numbers.view).plain
            adj = app.views[0].adjustments[-1]
            assert adj.status == "applied" and adj.changes == {"lr": [pytest.approx(3e-4), pytest.approx(1.8e-4)]}
            # and a graceful stop through the same channel
            await pilot.press("s", "y")
            await wait_for(pilot, lambda: app.views[0].status == "stopped", 60, "the trainer to stop")
        assert [c["cmd"] for c in control_lines(spec.run_dir)] == ["set", "stop"]
        assert spec.proc.wait(30) == 0
        await resume_and_stop(spec.run_dir)
    finally:
        if spec.proc.poll() is None:
            spec.proc.terminate()
            spec.proc.wait(30)
