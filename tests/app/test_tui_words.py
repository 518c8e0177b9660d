"""The details that cost trust: undo says what it undoes, the palette validates as you type,
`segwatch set` says "did you mean", "phase none" is words, headless shows gamma only for focal runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from fake_trainer import FakeTrainer
from textual.command import CommandList
from tui_helpers import make_app, pane_text, wait_for

from app.headless import follow
from app.health import load_rules
from app.runlib import Run

ROOT = Path(__file__).resolve().parents[2]


async def test_undo_says_what_it_undoes(tmp_path):
    ft = FakeTrainer(tmp_path / "a", epochs=40, history=3, step_delay=0.1).start()
    app = make_app([ft.run_dir])
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 3, 20, "history")
            await pilot.press("u")
            await wait_for(pilot, lambda: "applied at step" in pane_text(app), 20, "the preset applied")
            await pilot.press("z")
            await wait_for(pilot, lambda: "undo preset: unstable" in pane_text(app), 20, "the undo, in words")
            undo = app.views[0].adjustments[-1]
            assert undo.reason.startswith("undo ") and undo.reason.endswith("(preset: unstable)")
    finally:
        ft.stop_thread()


async def test_palette_refuses_a_bad_value_as_you_type(tmp_path):
    ft = FakeTrainer(tmp_path / "a", epochs=40, history=3, step_delay=0.1).start()
    app = make_app([ft.run_dir])
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 3, 20, "history")
            await pilot.press("ctrl+p")
            await pilot.press(*"set lr 5")

            def prompts() -> list[str]:
                try:
                    cl = app.screen.query_one(CommandList)
                except Exception:
                    return []
                return [str(cl.get_option_at_index(i).prompt) for i in range(cl.option_count)]

            await wait_for(pilot, lambda: any("✗ set lr 5" in p for p in prompts()), 10, "the refusal while typing")
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert not (ft.run_dir / "control.jsonl").exists() or not (ft.run_dir / "control.jsonl").read_text()
            await pilot.press("ctrl+p")
            await pilot.press(*"set lr 2e-4")
            await wait_for(pilot, lambda: any("set lr 3.00e-04 → 2e-4" in p for p in prompts()), 10, "a valid one")
    finally:
        ft.stop_thread()


async def test_phase_before_the_first_epoch_is_words(tmp_path):
    ft = FakeTrainer(tmp_path / "a", epochs=10, history=0, step_delay=5.0).start()  # epoch 1 takes 20 s
    app = make_app([ft.run_dir])
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].status == "running", 10, "the view")
            text = pane_text(app)
            assert app.views[0].phase == "none"
            assert "before epoch 1" in text and "health  phase before epoch 1" in text, text
            assert "phase none" not in text and "early" not in text
            assert app.panes[0].border_subtitle == "running · before epoch 1"
    finally:
        ft.stop_thread()


def test_set_says_did_you_mean(tmp_path):
    ft = FakeTrainer(tmp_path / "a", epochs=40, history=2, step_delay=0.2).start()
    try:
        p = subprocess.run([sys.executable, "-m", "app", "set", str(ft.run_dir), "lrr=1e-4"], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert p.returncode == 2 and "did you mean 'lr'?" in p.stderr, p.stderr
    finally:
        ft.stop_thread()


def test_headless_shows_gamma_only_for_focal_runs(tmp_path):
    a = FakeTrainer(tmp_path / "focal", epochs=2, history=2, hold=False)
    b = FakeTrainer(tmp_path / "dice", epochs=2, history=2, hold=False, live={"use_focal": False})
    a.run()
    b.run()
    out = io.StringIO()
    follow([Run(a.run_dir), Run(b.run_dir)], [load_rules(), load_rules()], interval=0.01, out=out, timeout=10)
    lines = [ln for ln in out.getvalue().splitlines() if " epoch " in ln and "/2 " in ln]
    assert len(lines) == 4
    assert all("gamma 2.5" in ln for ln in lines if ln.split()[1] == "focal")
    assert all("gamma" not in ln for ln in lines if ln.split()[1] == "dice")


async def test_the_header_says_the_warmup_was_shrunk(tmp_path):
    from app.tui.app import SegwatchApp

    ft = FakeTrainer(tmp_path / "a", epochs=40, history=2, step_delay=0.2).start()
    note = "a: --set training.epochs=40 shrank the warmup: training.warmup_epochs 10 -> 1 (--set training.warmup_epochs=N to choose)"
    app = SegwatchApp([Run(ft.run_dir)], [load_rules()], interval=0.1, gpu=False, pane_notes=[note])
    try:
        async with app.run_test(size=(160, 60)) as pilot:
            await wait_for(pilot, lambda: "shrank the warmup" in pane_text(app), 10, "the note in the header")
            assert "ⓘ --set training.epochs=40 shrank the warmup: training.warmup_epochs 10 -> 1" in pane_text(app)
    finally:
        ft.stop_thread()
