"""Pilot tests: the cockpit's keys against a fake trainer that answers control commands.

Each test checks what reaches control.jsonl (what is sent) and what the pane shows.
"""

from __future__ import annotations

import pytest
from fake_trainer import DEFAULT_LIVE
from tui_helpers import control_lines, make_app, palette, pane_text, wait_for, wait_text

from app.health import load_rules, resolve_preset
from app.tui.actions import CommandDone
from app.tui.screens.confirm import ConfirmDialog
from app.tui.screens.help import HelpScreen
from app.tui.screens.quit_dialog import QuitDialog
from app.tui.widgets.header import Numbers

SIZE = (160, 60)


async def ready(pilot, app, epoch=3, index=0):
    await wait_for(pilot, lambda: index in app.views and app.views[index].epoch >= epoch, 10, f"epoch {epoch}")


def close(a, b) -> bool:
    """Equal values, floats within 1e-9 relative (lists element-wise)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9)
    return a == b


def sets(run_dir):
    return [c for c in control_lines(run_dir) if c["cmd"] == "set"]


async def test_pane_shows_the_run(fake):
    ft = fake(history=12)
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_text(pilot, app, "epoch 12/30")
        first = text.split("\n")[0]
        assert "alpha" in first and "GREEN" in first and "early" in first and "middle" not in first
        assert "val F" in text and "best" in text and "train F" in text
        assert "lr 3.00e-04" in text and "gamma 2.5" in text and "alpha 0.5" in text and "dropout 0.2" in text
        assert "per-class F" in text and "l_eye" in text and "mouth" in text
        assert "health" in text and "✓" in text
        assert app.panes[0].has_class("-green")


async def test_lr_down_sends_old_to_new_and_shows_it_applied(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    done: list[CommandDone] = []
    async with app.run_test(size=SIZE, message_hook=lambda m: done.append(m) if isinstance(m, CommandDone) else None) as pilot:
        await ready(pilot, app)
        await pilot.press("l")
        await wait_for(pilot, lambda: sets(ft.run_dir), 5, "a set command")
        cmd = sets(ft.run_dir)[0]
        assert cmd["values"] == {"lr": pytest.approx(1.8e-4)}
        assert cmd["reason"] == "preset: lr_down" and cmd["source"] == "tui"
        text = await wait_text(pilot, app, "applied at step")
        assert "lr 3.00e-04→1.80e-04" in text
        numbers = app.panes[0].query_one(Numbers)
        assert "lr 1.80e-04" in numbers.draw(numbers.view).plain
        assert done and done[0].error is None
        # the answer is also a toast, once: the adjustment log may be below the fold
        await wait_for(pilot, lambda: any("applied at step" in n.message for n in app._notifications), 5,
                       "the answer's toast")
        said = [n.message for n in app._notifications if "applied at step" in n.message]
        assert len(said) == 1 and said[0].startswith(f"{app.views[0].name}: set lr")
        assert not app.awaiting_answer[0]


async def test_pending_until_the_trainer_answers(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("p")  # pause first: a paused fake still answers, so hold answers instead
        await wait_text(pilot, app, "paused")
        ft.answered.clear()
        ft._ctl_offset = 10**9  # the fake stops reading control.jsonl: no answer comes
        await pilot.press("G")
        text = await wait_text(pilot, app, "pending")
        assert "gamma 2.5→3" in text


@pytest.mark.parametrize("key,preset", [("L", "lr_up"), ("g", "gamma_down"), ("G", "gamma_up"),
                                        ("u", "unstable"), ("o", "overfitting"), ("f", "underfitting")])
async def test_preset_keys_send_the_resolved_preset(fake, key, preset):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        live = dict(app.views[0].live)
        await pilot.press(key)
        await wait_for(pilot, lambda: sets(ft.run_dir), 5, "a set command")
        cmd = sets(ft.run_dir)[0]
        expected = resolve_preset(preset, live, load_rules(), epoch=app.views[0].epoch + 1)
        assert expected and close(cmd["values"], expected)
        assert cmd["reason"] == f"preset: {preset}"
        await wait_text(pilot, app, "applied")


async def test_enter_applies_the_suggested_action(fake):
    ft = fake(scenario="overfit", history=8)
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].actions, 10, "a suggested action")
        assert app.panes[0].has_class("-yellow")
        action = app.views[0].actions[0]
        assert "[enter]/a sends" in pane_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: sets(ft.run_dir), 5, "a set command")
        assert close(sets(ft.run_dir)[0]["values"], action.values)
        assert sets(ft.run_dir)[0]["reason"].startswith("suggested: ")


async def test_a_suggestion_just_applied_is_held_back_and_sent_again_only_when_confirmed(fake):
    """The overfit signals look at epochs from before the change for a while: the suggestion stays,
    and a second press would compound the relative preset. So the panel says it was applied, and
    `a` asks first."""
    ft = fake(scenario="overfit", history=8, step_delay=1.0)
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].actions, 10, "a suggested action")
        preset = app.views[0].actions[0].preset
        await pilot.press("a")
        await wait_for(pilot, lambda: app.views[0].actions and app.views[0].actions[0].settling, 10,
                       "the suggestion held back after its ack")
        act = app.views[0].actions[0]
        assert act.preset == preset and app.views[0].epoch < act.settled_after
        text = pane_text(app)
        assert f"{preset} applied in epoch {act.applied_epoch}" in text and "[enter]/a sends" not in text
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the confirm dialog")
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmDialog), 5, "the dialog closed")
        assert len(sets(ft.run_dir)) == 1
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the confirm dialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(sets(ft.run_dir)) == 2, 5, "the confirmed second set")
        assert sets(ft.run_dir)[1]["reason"] == f"suggested: {preset}"


async def test_undo_sends_the_previous_values(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("g")
        await wait_text(pilot, app, "applied")
        first = sets(ft.run_dir)[0]
        await pilot.press("z")
        await wait_for(pilot, lambda: len(sets(ft.run_dir)) == 2, 5, "the undo command")
        undo = sets(ft.run_dir)[1]
        assert undo["values"] == {"gamma": 2.5} and undo["reason"] == f"undo {first['id']} ({first['reason']})"
        await wait_for(pilot, lambda: app.views[0].live.get("gamma") == 2.5, 5, "gamma back to 2.5")
        await pilot.press("z")  # nothing left to undo: the undo itself is not undone
        await pilot.pause(0.3)
        assert len(sets(ft.run_dir)) == 2


async def test_refused_command_shows_the_reason(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        # another client (the CLI, a script) sends a value the trainer refuses
        with open(ft.run_dir / "control.jsonl", "a") as f:
            f.write('{"v": 1, "id": "abc123", "cmd": "set", "values": {"lr": 5}, "source": "cli"}\n')
        text = await wait_text(pilot, app, "refused")
        assert "lr = 5 is not allowed" in text and "[cli]" in text


async def test_pause_resume_and_checkpoint(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.views[0].status == "paused", 5, "paused")
        assert "paused" in pane_text(app).split("\n")[0]
        await pilot.press("p")
        await wait_for(pilot, lambda: app.views[0].status == "running", 5, "running again")
        await pilot.press("c")
        await wait_for(pilot, lambda: any(c["cmd"] == "checkpoint" for c in control_lines(ft.run_dir)), 5, "checkpoint")
        assert [c["cmd"] for c in control_lines(ft.run_dir)] == ["pause", "resume", "checkpoint"]


async def test_stop_asks_first(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("l")  # run keys are off while a dialog is open
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmDialog)
        assert control_lines(ft.run_dir) == []
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: app.views[0].status == "stopped", 5, "stopped")
        assert [c["cmd"] for c in control_lines(ft.run_dir)] == ["stop"]
        await pilot.press("l")  # a stopped run takes no adjustment
        await pilot.pause(0.2)
        assert [c["cmd"] for c in control_lines(ft.run_dir)] == ["stop"]


async def test_quit_detach_leaves_the_run_alone(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitDialog)
        await pilot.press("q", "d")
        await pilot.pause(0.1)
    assert app.return_code == 0
    assert control_lines(ft.run_dir) == []
    assert not ft.stopped and ft._thread.is_alive()


async def test_quit_stop_stops_every_live_run(fake):
    a, b = fake("a"), fake("b")
    app = make_app([a.run_dir, b.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 2, 10, "both runs")
        await pilot.press("q", "s")
        await pilot.pause(0.5)
    assert [c["cmd"] for c in control_lines(a.run_dir)] == ["stop"]
    assert [c["cmd"] for c in control_lines(b.run_dir)] == ["stop"]


async def test_help_lists_every_key(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        listed = {b.id for b in app.screen.bindings}
        assert {"lr_down", "lr_up", "gamma_down", "gamma_up", "preset_unstable", "preset_overfitting",
                "preset_underfitting", "apply_suggestion", "undo", "pause_resume", "stop_run", "checkpoint",
                "next_run", "select_1", "quit", "help"} <= listed
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_sets_any_live_value(fake):
    ft = fake()
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await palette(pilot, "set dropout 0.3")
        await wait_for(pilot, lambda: sets(ft.run_dir), 5, "set from the palette")
        assert sets(ft.run_dir)[0]["values"] == {"dropout": 0.3}
        await wait_text(pilot, app, "dropout 0.2→0.3")


async def test_select_runs_and_keys_go_to_the_selected_one(fake):
    a, b = fake("a"), fake("b")
    app = make_app([a.run_dir, b.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 2, 10, "both runs")
        assert app.panes[0].has_class("-selected")
        await pilot.press("2")
        assert app.selected == 1 and app.panes[1].has_class("-selected")
        await pilot.press("l")
        await wait_for(pilot, lambda: sets(b.run_dir), 5, "set on run b")
        assert sets(a.run_dir) == []
        await pilot.press("tab")
        assert app.selected == 0
        await pilot.press("9")  # no run 9: nothing happens
        assert app.selected == 0


async def test_finished_run_takes_no_adjustment(fake):
    ft = fake(epochs=3, history=3, hold=False)
    app = make_app([ft.run_dir])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].status == "finished", 10, "finished")
        await pilot.press("l", "p", "c")
        await pilot.pause(0.2)
        assert control_lines(ft.run_dir) == []
        assert DEFAULT_LIVE["lr"] == app.views[0].live["lr"]
