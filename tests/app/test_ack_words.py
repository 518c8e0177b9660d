"""What an answered command says, and that it agrees with the header's step.

An ack's ``step`` is the first step that runs with a set/pause/resume (the header, which shows the
last step done, reads one less) and the last step done for stop/checkpoint; an ack given while
an epoch validates carries ``phase: "validation"`` (docs/control.md, "Answers"). Checked on the
wording function, in the cockpit against the fake trainer (which validates for ``val_delay``
seconds, as the real one answers commands while validating), and with the real trainer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trainer import FakeTrainer
from tui_helpers import make_app, pane_text, wait_for

from app.runlib import Run
from app.runlib.records import answer_words

ROOT = Path(__file__).resolve().parents[2]
SIZE = (160, 60)


def test_answer_words():
    assert answer_words("set", "applied", 81, 2, "validation") == "applied at step 81 (during validation of epoch 2)"
    assert answer_words("set", "applied", 81, 2, None) == "applied at step 81 (epoch 2)"
    assert answer_words("pause", "applied", 92, 3, None) == "paused after step 91 (epoch 3)"
    assert answer_words("pause", "applied", 81, 2, "validation") == "paused after step 80 (during validation of epoch 2)"
    assert answer_words("resume", "applied", 92, 3, None) == "resumed at step 92 (epoch 3)"
    assert answer_words("stop", "applied", 91, 3, None) == "stopped after step 91 (epoch 3)"
    assert answer_words("checkpoint", "applied", 91, 3, None) == "written after step 91 (epoch 3)"
    assert answer_words("set", "refused", 81, 2, None) == "" and answer_words("set", "applied", None, 2, None) == ""


async def test_keys_during_validation_say_so_and_pause_agrees_with_the_header(tmp_path):
    # epochs 1-2 as history, then epoch 3's 4 steps and a long validation: the keys land in it
    ft = FakeTrainer(tmp_path / "alpha", epochs=30, history=2, step_delay=0.05, val_delay=60).start()
    try:
        app = make_app([ft.run_dir])
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].step == 12, 20, "epoch 3's last step")
            assert ft.phase == "validation"
            await pilot.press("g")
            await wait_for(pilot, lambda: any(a.status == "applied" for a in app.views[0].adjustments), 10, "g acked")
            await pilot.press("G")
            await wait_for(pilot, lambda: sum(a.status == "applied" for a in app.views[0].adjustments) == 2, 10,
                           "G acked")
            text = pane_text(app)
            # both answers in the adjustment log, and the newest also on the header's "last change" line
            assert text.count("applied at step 13 (during validation of epoch 3)") == 3, text
            assert "last change gamma 2→2.5  applied at step 13 (during validation of epoch 3)" in text  # then its reason
            await pilot.press("p")
            await wait_for(pilot, lambda: app.views[0].status == "paused", 10, "paused")
            await wait_for(pilot, lambda: "paused after step" in pane_text(app), 10, "the pause's answer")
            text = pane_text(app)
            header = text.split("\n")[0]
            assert "paused at epoch 3, step 12" in header, header
            assert "paused after step 12 (during validation of epoch 3)" in text
            assert "step 13" not in header
    finally:
        ft.stop_thread()


# --- the real trainer --------------------------------------------------------------------------

@pytest.mark.slow
def test_real_trainer_answers_during_validation_with_the_header_step(tmp_path):
    """Commands written after the last step event of epoch 1 are read at validation's first control
    point (the step's own read is over): the acks say validation, and the pause's step agrees with
    the state's 'paused at'."""
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa_focal.yaml"), "--run-dir",
           str(run_dir), "--device", "cpu"]
    for s in ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.batch_size=8",
              "training.epochs=2", "training.warmup_epochs=0", "training.log_every=1", "model.width=8",
              "debug.val_delay=3"]:
        cmd += ["--set", s]
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = Run(run_dir)
        deadline = time.monotonic() + 180
        while not (run.state.last_step and run.state.last_step.get("step") == 2):  # epoch 1's last step (2 a epoch)
            assert p.poll() is None and time.monotonic() < deadline, "no step 2"
            time.sleep(0.05)
            run.refresh()
        ids = [run.send("set", {"gamma": 1.5}, reason="g"), run.send("set", {"gamma": 2.0}, reason="G"),
               run.send("pause", reason="p")]
        answers = [run.wait_for_answer(i, 60) for i in ids]
        assert all(a is not None and a["type"] == "ack" for a in answers), answers
        assert all(a.get("phase") == "validation" and a["epoch"] == 1 for a in answers), answers
        assert [a["step"] for a in answers] == [3, 3, 3]
        words = [run.state.adjustment(i).when() for i in ids]
        assert words == ["applied at step 3 (during validation of epoch 1)"] * 2 + [
            "paused after step 2 (during validation of epoch 1)"]
        while run.state.status != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
            run.refresh()
        assert run.state.status_detail() == "paused at epoch 1, step 2"  # the header's words: the same step
        r = run.send("resume", reason="go on")
        assert run.wait_for_answer(r, 60)["type"] == "ack"
        assert run.state.adjustment(r).when() == "resumed at step 3 (during validation of epoch 1)"
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
