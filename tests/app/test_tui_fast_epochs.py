"""Fast epochs: a pane redraws at most once per PANE_EVERY (views arriving faster are coalesced,
the newest drawn), and a pane hidden behind the run table draws nothing until it is shown
(bench/tui_fast_epochs.py measures the CPU)."""

from __future__ import annotations

import dataclasses

from tui_helpers import make_app, wait_for


def start(fake, n: int, **kw) -> list:
    """n fake trainers (stopped by the ``fake`` fixture after the test)."""
    return [fake(f"run{i}", **kw) for i in range(n)]


async def ended_pane(pilot, app):
    """The pane of run 0 once the run ended and its last view is drawn; that view."""
    await wait_for(pilot, lambda: app.views.get(0) is not None and app.views[0].over, 30, "the run ended")
    pane = app.panes[0]
    await wait_for(pilot, lambda: pane.view is app.views[0], 5, "its last view drawn")
    return pane, app.views[0]


async def test_urgent_changes_are_drawn_at_once(fake):
    fts = start(fake, 1, epochs=3, history=3, step_delay=0.01, hold=False)
    app = make_app([f.run_dir for f in fts])
    async with app.run_test(size=(120, 40)) as pilot:
        pane, base = await ended_pane(pilot, app)
        pane.set_view(dataclasses.replace(base, epoch=base.epoch + 1, built_t=base.built_t + 1))
        red = dataclasses.replace(base, colour="red", status="crashed", built_t=base.built_t + 2)
        pane.set_view(red)
        assert pane.view is red  # a run turning red is never held back


async def test_hidden_panes_draw_nothing_until_shown(fake):
    fts = start(fake, 6, epochs=40, history=6, step_delay=0.3)
    app = make_app([f.run_dir for f in fts])
    async with app.run_test(size=(200, 55)) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 6 and all(v.epoch >= 6 for v in app.views.values()), 30,
                       "six runs with history")
        assert app.table_mode
        await wait_for(pilot, lambda: app.panes[0].view is not None, 5, "the selected pane drawn")
        for i in range(1, 6):  # kept, not drawn: their widgets never saw a view
            pane = app.panes[i]
            assert pane.view is None and pane._pending is not None
            assert all(w.view is None for w in pane.parts if hasattr(w, "view"))
        await pilot.press("tab")
        pane = app.panes[1]
        await wait_for(pilot, lambda: pane.view is not None and pane.parts[0].view is not None, 5, "pane 2 drawn")
        assert f"epoch {pane.view.epoch}/" in pane.parts[0].render().plain


async def test_views_faster_than_a_pane_redraws_are_coalesced(fake):
    fts = start(fake, 1, epochs=3, history=3, step_delay=0.01, hold=False)
    app = make_app([f.run_dir for f in fts])
    async with app.run_test(size=(120, 40)) as pilot:
        pane, base = await ended_pane(pilot, app)
        # progress only (not urgent): three more epochs, faster than a pane redraws
        v1, v2, v3 = (dataclasses.replace(base, epoch=base.epoch + k, built_t=base.built_t + k) for k in (1, 2, 3))
        pane.set_view(v1)
        pane.set_view(v2)
        pane.set_view(v3)
        # at most one of the three drawn at once (the first, when the pane was quiet for a
        # second), the newest kept for the pane's next redraw; v2 is never drawn
        assert pane.view is not v2 and pane.view is not v3
        assert pane._pending is v3
        await wait_for(pilot, lambda: pane.view is v3, 5, "the newest view drawn")
        assert pane.parts[0].view is v3


async def test_coalesced_panes_redraw_in_one_clock_tick(fake):
    """Two panes last drawn at different moments, each given a newer view within its second: both
    wait for the cockpit's clock and are drawn in the same tick (one screen update), not each by a
    timer of its own (bench/tui_fast_epochs.py: 2 runs at 2 epochs/s)."""
    fts = start(fake, 2, epochs=3, history=3, step_delay=0.01, hold=False)
    app = make_app([f.run_dir for f in fts])
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: len(app.views) == 2 and all(v.over for v in app.views.values()), 30,
                       "both runs ended")
        a, b = app.panes[0], app.panes[1]
        await wait_for(pilot, lambda: a.view is app.views[0] and b.view is app.views[1], 5, "both drawn")
        await wait_for(pilot, lambda: a._drawn_t + 1.0 < __import__("time").monotonic(), 5, "pane 1 quiet")
        va, vb = app.views[0], app.views[1]
        a.set_view(dataclasses.replace(va, epoch=va.epoch + 1, built_t=va.built_t + 1))  # quiet: drawn at once
        assert a._pending is None
        tick = app.clock_ticks
        await wait_for(pilot, lambda: app.clock_ticks > tick, 5, "a clock tick")
        await wait_for(pilot, lambda: b._drawn_t + 1.0 < __import__("time").monotonic(), 5, "pane 2 quiet")
        b.set_view(dataclasses.replace(vb, epoch=vb.epoch + 1, built_t=vb.built_t + 1))  # drawn at once too
        assert b._pending is None
        # now both are within their second, last drawn at different moments: newer views wait
        a2 = dataclasses.replace(va, epoch=va.epoch + 2, built_t=va.built_t + 2)
        b2 = dataclasses.replace(vb, epoch=vb.epoch + 2, built_t=vb.built_t + 2)
        a.set_view(a2)
        b.set_view(b2)
        assert a._pending is a2 and b._pending is b2
        await wait_for(pilot, lambda: a.view is a2 and b.view is b2, 5, "both newer views drawn")
        assert a.drawn_tick == b.drawn_tick is not None


async def test_collapsed_plots_build_nothing_until_shown(fake):
    """At 80x24 a pane's plots are collapsed: fast epochs build no plotext figure for them; a
    bigger terminal shows them, drawn with the newest view."""
    fts = start(fake, 1, epochs=40, history=4, step_delay=0.05)
    app = make_app([f.run_dir for f in fts])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 6, 30, "epoch 6")
        pane = app.panes[0]
        await wait_for(pilot, lambda: pane.view is not None and pane.view.epoch >= 6, 5, "the pane drawn")
        assert not pane.plots.display
        loss, fplot = pane.parts[2], pane.parts[3]
        gens, seen = (loss._gen, fplot._gen), pane.view.epoch  # (the first view may come before the collapse)
        await wait_for(pilot, lambda: pane.view.epoch >= seen + 4, 10, "four more epochs drawn")
        assert (loss._gen, fplot._gen) == gens  # views came, no figure was built
        await pilot.resize_terminal(160, 60)
        await wait_for(pilot, lambda: pane.plots.display and fplot._gen > gens[1] and loss._gen > gens[0], 10,
                       "plots drawn")
        assert fplot.view is not None and fplot.view.epoch >= seen + 4

