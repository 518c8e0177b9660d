"""Runs as a collection: with more runs than full panes fit, a row per run (colour, phase,
epoch/ETA, val F, best, the failing signal and its suggested action) and the selected run's pane;
the keys act on the selected run."""

from __future__ import annotations

from fake_trainer import FakeTrainer
from test_tui_sizes import rendered
from tui_helpers import control_lines, make_app, wait_for


def start(tmp_path, n: int) -> list[FakeTrainer]:
    return [FakeTrainer(tmp_path / f"run{i}", epochs=40, history=14, step_delay=0.3,
                        scenario="overfit" if i % 2 else "healthy").start() for i in range(n)]


async def test_six_runs_at_200x55_make_a_table_with_the_selected_pane_beside(tmp_path):
    fts = start(tmp_path, 6)
    app = make_app([f.run_dir for f in fts])
    try:
        async with app.run_test(size=(200, 55)) as pilot:
            await wait_for(pilot, lambda: len(app.views) == 6 and all(v.epoch >= 14 for v in app.views.values()), 30,
                           "six runs with history")
            assert app.table_mode and app.run_table.display
            await wait_for(pilot, lambda: "6 run5" in rendered(app.run_table), 5, "six rows")
            table = rendered(app.run_table)
            for i in range(6):
                assert f"{i + 1} run{i}" in table
            assert table.count("⚠ Val loss") == 3 and table.count("✓ all signals ok") == 3
            assert "→ Early-phase warning" in table and "14/40" in table
            # the selected run's pane beside the table (wide), the others hidden
            shown = [i for i, p in app.panes.items() if p.display and p.region.width]
            assert shown == [0]
            assert app.panes[0].region.x > app.run_table.region.x + app.run_table.region.width - 1
            await pilot.press("tab")
            await wait_for(pilot, lambda: [i for i, p in app.panes.items() if p.region.width] == [1], 5, "pane 2")
            pane = app.panes[1]
            assert pane.content_region.contains_region(pane.parts[4].region)  # its health, on screen
            await pilot.press("l")  # acts on the selected run
            await wait_for(pilot, lambda: control_lines(fts[1].run_dir), 10, "the command in run1's control.jsonl")
            assert control_lines(fts[1].run_dir)[0]["values"] == {"lr": 1.8e-4}
            assert not control_lines(fts[0].run_dir)
    finally:
        for f in fts:
            f.stop_thread()


async def test_two_runs_table_at_80x24_panes_at_200x55(tmp_path):
    fts = start(tmp_path, 2)
    app = make_app([f.run_dir for f in fts])
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: len(app.views) == 2 and all(v.epoch >= 14 for v in app.views.values()), 30,
                           "two runs")
            assert app.table_mode
            pane = app.panes[0]
            await wait_for(pilot, lambda: pane.region.height and pane.content_region.contains_region(pane.parts[4].region)
                           and app.run_table.region.bottom <= pane.region.y, 5, "table above the pane, health visible")
            await pilot.resize_terminal(200, 55)
            await wait_for(pilot, lambda: not app.table_mode, 5, "the panes mode")
            await wait_for(pilot, lambda: all(p.region.width for p in app.panes.values()), 5,
                           f"both panes side by side {[p.region for p in app.panes.values()]} {app.size}")
            assert not app.run_table.display or not app.run_table.region.height
    finally:
        for f in fts:
            f.stop_thread()
