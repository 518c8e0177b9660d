"""The cockpit as a picture (pytest-textual-snapshot): finished fake-trainer runs at 80x24 and
160x50, compared with the SVGs committed in tests/app/__snapshots__/.

Deterministic: the records are written whole by the fake trainer into run directories of fixed
names (the frame shows a run's name, never its folder) and every clock in them is replaced by a
fixed one (event times, meta.json's start, the pid), so nothing in the frame depends on when or
where the test runs. After a deliberate change of the cockpit's
look: ``python -m pytest tests/app/test_tui_snapshots.py --snapshot-update``, look at the SVGs,
commit them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fake_trainer import FakeTrainer
from tui_helpers import make_app, wait_for

from app.tui.widgets.plots import ViewPlot

SETTLED_LOOKS = 5  # the same frame 5 times, 0.3 s apart: longer than a pane's 1 s layout tick
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: every event of the records is at T0 + seq seconds


def finished_run(runs_dir: Path, name: str, epochs: int, scenario: str) -> Path:
    """A run the fake trainer trained to its end (in this process, no thread), with fixed clocks."""
    run_dir = runs_dir / name
    FakeTrainer(run_dir, epochs=epochs, history=epochs, hold=False, scenario=scenario).run()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    for ev in events:
        ev["t"] = T0 + ev["seq"]
        if ev["type"] == "start":
            ev["pid"] = 1
    (run_dir / "events.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in events))
    meta = json.loads((run_dir / "meta.json").read_text())
    meta.update(start_time=T0, pid=1)
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return run_dir


@pytest.fixture
def runs(tmp_path):
    # the second overfits: yellow, with the health rules' suggestion
    return [finished_run(tmp_path, "lmsa_focal", 12, "healthy"), finished_run(tmp_path, "lmsa_aggressive", 12, "overfit")]


def _loaded(app, n: int):
    """Every run read to its end and every plot drawn with it: plots redraw at most every
    ViewPlot.min_interval, the trailing one with the cockpit's clock, so the picture waits for no
    redraw to be pending."""
    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: len(app.views) == n and all(v.over for v in app.views.values()), 20,
                       "every run read to its end")
        await pilot.pause()
        plots = list(app.query(ViewPlot))
        await wait_for(pilot, lambda: not any(p.redraw_pending for p in plots), 20, "no plot redraw pending")
        # the panes fit their plots to the room the health panel leaves after a layout pass, and heal
        # a stale one at their 1 s tick: the picture is taken once the frame stayed the same that long
        frames, deadline = [app.export_screenshot()], time.monotonic() + 20
        while len(frames) < SETTLED_LOOKS or len(set(frames[-SETTLED_LOOKS:])) > 1:
            assert time.monotonic() < deadline, "the frame never settled"
            await pilot.pause(0.3)
            frames.append(app.export_screenshot())
    return run_before


def test_one_run_at_80x24(snap_compare, runs):
    app = make_app(runs[:1], interval=0.05)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded(app, 1))


def test_two_runs_at_160x50(snap_compare, runs):
    app = make_app(runs, interval=0.05)
    assert snap_compare(app, terminal_size=(160, 50), run_before=_loaded(app, 2))
