"""The overlay: every run on screen (and reference runs) on one val F / train loss plot, with a legend,
EMA smoothing (`e`) and epoch/step x axes (`x`); references from --ref or the palette's `ref RUN`."""

from __future__ import annotations

import re

import pytest
from rich.style import Style
from fake_trainer import FakeTrainer
from tui_helpers import control_lines, make_app, palette, wait_for

from app.cli import main
from app.refs import RefError, load_ref
from app.tui.widgets.overlay import REF_COLOURS, RUN_COLOURS, ema


def screen_text(app) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(seg.text for strip in row for seg in strip) for row in update.strips)


def legend_styles(app) -> dict[str, str]:
    """Each legend entry (a run's name, 'ref: NAME') with its style."""
    t = app.overlay.legend.render()
    return {t.plain[s.start:s.end]: str(s.style) for s in t.spans}


@pytest.fixture
def fakes(fake):
    """The conftest's fake trainers, longer and quicker: 40 epochs, 6 of history, 0.2 s a step."""
    fake.defaults.update(epochs=40, history=6, step_delay=0.2)
    return fake


def finished(tmp_path, name="baseline", epochs=5):
    ft = FakeTrainer(tmp_path / name, epochs=epochs, history=epochs, hold=False)
    ft.run()
    return ft.run_dir


def test_ema_smooths_from_the_first_value():
    assert ema([0.0, 1.0, 1.0], 0.5) == [0.0, 0.5, 0.75]
    assert ema([0.2, 0.4], None) == [0.2, 0.4]


async def test_overlay_legend_ema_and_step_axis(fakes):
    a = fakes("alpha", steps_per_epoch=4)
    b = fakes("bravo", steps_per_epoch=8)  # half the batch size: twice the steps per epoch
    app = make_app([a.run_dir, b.run_dir])
    async with app.run_test(size=(200, 55)) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 2 and min(v.epoch for v in app.views.values()) >= 6, 20,
                       "both histories")
        await wait_for(pilot, lambda: "val F · EMA off · x: epochs" in screen_text(app), 10, "the overlay's title")
        assert app.overlay.display
        styles = legend_styles(app)
        # each run by name, in its own colour
        assert styles["alpha"] == "rgb({},{},{})".format(*RUN_COLOURS[0])
        assert styles["bravo"] == "rgb({},{},{})".format(*RUN_COLOURS[1])
        assert "train loss · EMA off · x: epochs" in screen_text(app)
        # e: EMA 0.6, said in both titles and the legend; the drawn values are smoothed
        await pilot.press("e")
        await wait_for(pilot, lambda: "val F · EMA 0.6 · x: epochs" in screen_text(app), 5, "EMA 0.6 in the title")
        assert "train loss · EMA 0.6" in screen_text(app) and "EMA 0.6 (e)" in app.overlay.legend.render().plain
        await pilot.press("e", "e")
        await wait_for(pilot, lambda: "val F · EMA 0.9" in screen_text(app), 5, "EMA 0.9")
        await pilot.press("e")
        await wait_for(pilot, lambda: "val F · EMA off" in screen_text(app), 5, "EMA off again")
        # x: step-aligned; bravo's curve reaches twice alpha's x at the same epoch count
        f_plot = app.overlay.f_plot
        await pilot.press("x")
        await wait_for(pilot, lambda: "val F · EMA off · x: steps" in screen_text(app), 5, "the step axis")
        xs = {c.name: c.f[0][-1] * c.spe for c in f_plot.view.curves}
        eps = {c.name: c.f[0][-1] for c in f_plot.view.curves}
        assert xs["bravo"] / eps["bravo"] == 8 and xs["alpha"] / eps["alpha"] == 4
        xlabels = [ln for ln in screen_text(app).splitlines() if re.search(r"\bstep\b", ln)]
        assert xlabels, "the step axis label"
        await pilot.press("x")
        await wait_for(pilot, lambda: "val F · EMA off · x: epochs" in screen_text(app), 5, "back to epochs")


async def test_overlay_collapses_first_on_small_terminals(fakes):
    a, b = fakes("alpha"), fakes("bravo")
    app = make_app([a.run_dir, b.run_dir])
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 2, 20, "both runs")
        await pilot.pause(0.3)
        assert not app.overlay.display
        await pilot.resize_terminal(200, 55)
        await wait_for(pilot, lambda: app.overlay.display and "val F · EMA off" in screen_text(app), 10,
                       "the overlay shown on a tall terminal")


async def test_ref_is_drawn_and_no_key_acts_on_it(fakes, tmp_path):
    ref_dir = finished(tmp_path)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in ref_dir.iterdir())
    live = fakes("alpha")
    app = make_app([live.run_dir], refs=[load_ref(str(ref_dir), tmp_path)])
    async with app.run_test(size=(200, 55)) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 6, 20, "the live run")
        await wait_for(pilot, lambda: "ref: baseline" in app.overlay.legend.render().plain, 5, "the ref in the legend")
        styles = legend_styles(app)
        assert Style.parse(styles["ref: baseline"]) == Style.parse("dim rgb({},{},{})".format(*REF_COLOURS[0]))
        ref_curve = next(c for c in app.overlay.f_plot.view.curves if c.ref)
        assert ref_curve.f[0] == (1, 2, 3, 4, 5) and ref_curve.name == "baseline"
        # the reference has no pane and cannot be selected; the keys act on the live run only
        assert len(app.panes) == 1 and len(app.watcher.runs) == 1
        await pilot.press("2", "tab")
        assert app.selected == 0
        await pilot.press("l")
        await wait_for(pilot, lambda: any(c["cmd"] == "set" for c in control_lines(live.run_dir)), 5, "the LR set")
        await pilot.press("p")
        await wait_for(pilot, lambda: any(c["cmd"] == "pause" for c in control_lines(live.run_dir)), 5, "the pause")
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in ref_dir.iterdir()) == before
    assert not (ref_dir / "control.jsonl").exists()


async def test_palette_ref_adds_a_reference(fakes, tmp_path):
    finished(tmp_path, "oldrun")
    live = fakes("alpha")
    app = make_app([live.run_dir], runs_dir=str(tmp_path))
    async with app.run_test(size=(200, 55)) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 3, 20, "the live run")
        assert not app.overlay.display  # one curve: nothing to overlay
        await palette(pilot, "ref oldrun")
        await wait_for(pilot, lambda: app.overlay.display and "ref: oldrun" in app.overlay.legend.render().plain, 10,
                       "the palette's ref in the overlay")
        assert [r.name for r in app.refs] == ["oldrun"] and len(app.panes) == 1


def test_bad_ref_is_a_clear_error(tmp_path, capsys):
    live = finished(tmp_path, "alpha", epochs=2)
    (tmp_path / "notarun").mkdir()
    (tmp_path / "afile").write_text("x")
    for bad, words in ((tmp_path / "notarun", "is a folder but not a run"), (tmp_path / "afile", "not a folder"),
                       (tmp_path / "missing", "no such folder")):
        rc = main(["attach", str(live), "--ref", str(bad), "--runs-dir", str(tmp_path), "--headless"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"--ref {bad}" in err and words in err, err
    with pytest.raises(RefError, match="no run 'nope'"):
        load_ref("nope", tmp_path)
