"""Torn and corrupt records under a running monitor: a truncated last line, garbage and binary
bytes, a 10 MB line, an events file emptied, deleted or replaced, hostile field values. The
monitor keeps running, skips and counts what it cannot read, and shows the count."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

from faults import events, popen_trainer, trainer_argv, wait_for
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.headless import Follower
from app.health import load_rules
from app.runlib import Run, RunState
from app.snapshot import build_view

TYPES = ["start", "step", "epoch", "checkpoint", "warning", "ack", "nack", "paused", "resumed", "end", "other", None, 5]
FIELDS = ["epoch", "step", "loss", "lr", "gamma", "t", "seq", "resume_epoch", "epochs", "steps_per_epoch", "live",
          "val_f", "train_f", "val_loss", "train_loss", "per_class_f", "best_val_f", "best_epoch", "eta_s", "kind",
          "code", "message", "id", "cmd", "changes", "reason", "error", "line", "nonfinite", "samples_per_s",
          "skipped_steps", "pid", "name", "alpha", "dropout", "data_wait", "device", "world_size"]
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.integers(min_value=10**30, max_value=10**40),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                     max_leaves=30)
good = {  # plausible values, so hostile ones get mixed into otherwise sensible records
    "epoch": st.integers(1, 5), "step": st.integers(1, 50), "seq": st.integers(0, 100), "t": st.floats(1e9, 2e9),
    "steps_per_epoch": st.integers(1, 5), "epochs": st.integers(1, 6), "resume_epoch": st.integers(0, 3),
    "val_f": st.floats(0, 1), "loss": st.floats(0, 3), "lr": st.floats(1e-5, 1e-2),
}


@st.composite
def event(draw):
    ev = {"v": 1, "type": draw(st.sampled_from(TYPES))}
    for k in draw(st.lists(st.sampled_from(FIELDS), max_size=10, unique=True)):
        ev[k] = draw(good[k]) if k in good and draw(st.booleans()) else draw(value)
    return ev


def _widgets() -> list:
    from app.tui.widgets.adjust_log import AdjustLog
    from app.tui.widgets.class_table import ClassTable
    from app.tui.widgets.header import Numbers, PaneHeader
    from app.tui.widgets.health_panel import HealthPanel

    return [PaneHeader(), Numbers(), HealthPanel(), ClassTable(), AdjustLog()]


WIDGETS = _widgets()


class _FakeRun:
    def __init__(self, state: RunState):
        self.state, self.path, self.name = state, Path("."), "fuzz"

    def stderr_tail(self, n: int = 5, max_bytes: int = 0) -> list[str]:
        return []  # RunState(None): no run directory, no stderr.log


@pytest.mark.slow  # hundreds of generated records: more than a few seconds
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=st.lists(event(), max_size=25), cmds=st.lists(st.dictionaries(st.sampled_from(["id", "cmd", "values", "t", "reason"]), value), max_size=4))
def test_hostile_field_values_never_break_the_monitor(evs, cmds):
    """Whatever a well-formed JSON record holds, the state, the cockpit's view and the headless
    lines are built without an exception (bad events are counted instead)."""
    st_ = RunState(None, name="fuzz")
    for i, c in enumerate(cmds, 1):
        st_.apply_command(c, i)
    for ev in evs:
        st_.apply(ev)
    _ = (st_.status, st_.status_detail(), st_.crash_reason, st_.history(), st_.pending(), st_.epoch_in_progress())
    rules = load_rules()
    view = build_view(0, _FakeRun(st_), rules)
    assert view.status == st_.status
    for widget in WIDGETS:  # the cockpit's text widgets draw it
        widget.draw(view)
    out = io.StringIO()
    f = Follower([_FakeRun(st_)], [rules], out)
    f._report(0, _FakeRun(st_))


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name("events.replacement")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# (what, how) applied one after the other to events.jsonl while the cockpit watches it
FAULTS = [
    ("torn line, then terminated", lambda p: _append(p, b'{"v":1,"seq":9999,"type":"epo\n')),
    ("garbage text", lambda p: _append(p, b"this is not json at all\n{\"unclosed\": \n")),
    ("binary bytes", lambda p: _append(p, bytes(random.Random(7).randrange(256) for _ in range(4000)).replace(b"\n", b"") + b"\n")),
    ("a 10 MB line", lambda p: _append(p, b'{"v":1,"type":"step","junk":"' + b"x" * (10 << 20) + b'"}\n')),
    ("hostile field values", lambda p: _append(p, b'{"v":1,"seq":5000,"type":"epoch","epoch":[1],"t":"soon","eta_s":NaN}\n'
                                                  b'{"v":1,"seq":5001,"type":"step","epoch":1,"step":"x","lr":true}\n')),
    ("emptied", lambda p: p.write_bytes(b"")),
    ("deleted", lambda p: p.unlink()),
    ("replaced by garbage", lambda p: _replace(p, b"\x00\x01 garbage\n" * 3)),
]


async def test_cockpit_keeps_running_skips_counts_and_shows_unreadable_lines(tmp_path):
    """A fake trainer (thread) writes the record; the faults land in events.jsonl one by one.
    After each, the cockpit still follows new events, and the pane shows the skipped count."""
    from fake_trainer import FakeTrainer
    from tui_helpers import make_app, pane_text
    from tui_helpers import wait_for as pilot_wait

    d = tmp_path / "r"
    ft = FakeTrainer(d, epochs=10_000, step_delay=0.05).start()
    app = make_app([d], interval=0.1)
    events_path = d / "events.jsonl"
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot_wait(pilot, lambda: 0 in app.views and app.views[0].step is not None, 30, "the first step")
            run = app.watcher.runs[0]
            for what, inject in FAULTS:
                before, gen, seen = run.state.unreadable, run.generation, run.state.events_seen
                if what == "deleted":  # hold the writer, or it recreates the file at once
                    ft.paused = True
                    await pilot.pause(0.3)
                inject(events_path)
                if what == "deleted":
                    await pilot_wait(pilot, lambda: "events.jsonl is gone" in pane_text(app), 10, "the missing file noted")
                    assert app.views[0].status == "running"
                    ft.paused = False
                    await pilot_wait(pilot, lambda: run.generation > gen and run.state.events_seen > 3, 30,
                                     "the recreated file followed")
                    continue
                if what in ("emptied", "replaced by garbage"):
                    await pilot_wait(pilot, lambda: run.generation > gen and run.state.events_seen > 3, 30,
                                     f"the state rebuilt and new events after: {what}")
                    await pilot_wait(pilot, lambda: "truncated or replaced" in pane_text(app), 10, f"the rebuild noted: {what}")
                    if what == "replaced by garbage":
                        await pilot_wait(pilot, lambda: "3 unreadable record lines" in pane_text(app), 10, "the count shown")
                    continue
                await pilot_wait(pilot, lambda: run.state.events_seen > seen + 3, 30, f"new events after: {what}")
                assert run.state.unreadable > before, what
                await pilot_wait(pilot, lambda: f"{run.state.unreadable} unreadable record line" in pane_text(app), 10,
                                 f"the count shown after: {what}")
            text = pane_text(app)
            assert "unreadable record line" in text
            assert app.views[0].status == "running" and not app.watcher.errors, app.watcher.errors
            step = app.views[0].step
            await pilot_wait(pilot, lambda: app.views[0].step and app.views[0].step > step, 10, "the run followed on")
    finally:
        ft.stop_thread()


def test_real_trainer_writes_on_when_its_events_file_is_deleted_or_replaced(tmp_path):
    run = tmp_path / "r"
    proc = popen_trainer(trainer_argv(run, "training.epochs=3", "debug.step_delay=0.15"))
    mon = Run(run)
    path = run / "events.jsonl"
    try:
        wait_for(lambda: path.exists() and events(run, "epoch"), 180, "the first epoch")
        path.unlink()
        wait_for(lambda: path.exists() and [w for w in events(run, "warning") if w["code"] == "record_replaced"],
                 60, "the trainer writing a new events.jsonl")
        mon.refresh()
        assert mon.state.status == "running", mon.state.status_detail()
        _replace(path, b"garbage one\ngarbage two\n")
        wait_for(lambda: len([w for w in events(run, "warning") if w["code"] == "record_replaced"]) == 1
                 and events(run, "step"), 60, "the trainer writing on in the replacement")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    mon.refresh()
    st_ = mon.state
    assert st_.status == "finished" and st_.end["reason"] == "completed", st_.status_detail()
    assert st_.unreadable == 2 and "replaced" in st_.read_note
    assert max(st_.epochs) == 3  # the epochs after the replacement reached the monitor
