"""Any terminal size: what matters stays on screen, dialogs are never cut, `q` asks only when needed."""

from __future__ import annotations

import re

import pytest
from fake_trainer import FakeTrainer
from textual.widgets import Button, Label
from tui_helpers import make_app, wait_for

from app.tui.screens.confirm import ConfirmDialog
from app.tui.screens.quit_dialog import QuitDialog


def screen_lines(app) -> list[str]:
    """What the terminal shows now, one string per row (the compositor's full update)."""
    update = app.screen._compositor.render_full_update(simplify=True)
    return ["".join(seg.text for strip in row for seg in strip) for row in update.strips]


def rendered(widget) -> str:
    """The text shown on screen in a widget's region, lines joined, spaces collapsed."""
    r = widget.region
    rows = screen_lines(widget.app)[r.y:r.bottom]
    return " ".join(" ".join(row[r.x:r.right] for row in rows).split())


def assert_whole(dialog_screen) -> None:
    box = dialog_screen.query_one(".dialog")
    inside = box.content_region
    for w in [*dialog_screen.query(Label), *dialog_screen.query(Button)]:
        assert inside.contains_region(w.region), f"{w} at {w.region} is outside the dialog {inside}"
        want = " ".join(str(w.content if isinstance(w, Label) else w.label).split())
        assert want in rendered(w), f"cut: {want!r} shows as {rendered(w)!r}"


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 50), (200, 55)])
async def test_dialogs_are_never_cut(tmp_path, size):
    ft = FakeTrainer(tmp_path / "a", epochs=30, history=3, step_delay=0.2).start()
    app = make_app([ft.run_dir])
    try:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 3, 20, "the history")
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), 5, "the quit dialog")
            await pilot.pause(0.2)
            assert_whole(app.screen)
            assert "Stop asks them to stop after the current step (checkpoint kept)." in rendered(
                app.screen.query(".dialog-text").first())
            await pilot.press("c")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the stop dialog")
            await pilot.pause(0.2)
            assert_whole(app.screen)
            await pilot.press("n")
            # the help screen: its box inside the terminal, its text wrapped, not cut
            from app.tui.screens.help import INTRO, HelpScreen

            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help screen")
            await pilot.pause(0.2)
            box = app.screen.query_one(".help-box")
            assert app.screen.region.contains_region(box.region), (box.region, app.screen.region)
            assert " ".join(INTRO.split()) in rendered(app.screen.query_one(".dialog-text"))
    finally:
        ft.stop_thread()


async def test_q_quits_without_asking_when_no_trainer_runs(tmp_path):
    ft = FakeTrainer(tmp_path / "a", epochs=3, history=3, hold=False)
    ft.run()
    app = make_app([ft.run_dir])
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].over, 20, "the finished run")
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, 5, "the app to quit")
        assert not isinstance(app.screen, QuitDialog)
    assert app.return_code == 0


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_status_epoch_val_f_and_suggestion_visible_without_scrolling(tmp_path, size):
    # overfitting: a yellow/red verdict with a suggested action
    ft = FakeTrainer(tmp_path / "a", epochs=40, history=14, step_delay=0.2, scenario="overfit").start()
    app = make_app([ft.run_dir])
    try:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 14 and app.views[0].actions, 20,
                           "an epoch with a suggestion")
            pane = app.panes[0]
            header, numbers, health = pane.parts[0], pane.parts[1], pane.parts[4]
            want = " ".join(str(app.views[0].actions[0].text).split())

            def on_screen() -> bool:
                visible = pane.content_region
                return (all(visible.contains_region(w.region) for w in (header, numbers, health))
                        and bool(re.search(r"epoch \d+/40 .* ETA ", rendered(header)))
                        and want in rendered(health))

            await wait_for(pilot, on_screen, 10, "header, numbers and health with the suggestion on screen")
            assert pane.scroll_y == 0
            assert app.views[0].colour.upper() in rendered(header)
            assert "val F" in rendered(numbers) and "best" in rendered(numbers)
            assert "→" in rendered(health) and "[enter]/a" in rendered(health)
    finally:
        ft.stop_thread()
