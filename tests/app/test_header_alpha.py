"""The cockpit's pane header: it shows that a run's focal alpha weights background above the face parts
(issue 12), and its epoch line fits a narrow pane."""

from app.health import load_rules
from app.runlib import Run
from app.snapshot import build_view
from app.tui.widgets.header import PaneHeader

from _runrecord import Record

NOTE = "focal_alpha 0.25 weights background 0.75 against 0.25 for the face parts on average (3.0x more on background)"


def header_text(rec: Record) -> str:
    run = Run(rec.dir)
    run.refresh()
    return PaneHeader().draw(build_view(0, run, load_rules())).plain


def test_header_badges_a_background_heavy_alpha(tmp_path):
    rec = Record(tmp_path / "plan")
    rec.start()
    rec.warning("alpha_background", NOTE)
    rec.epoch_event(1, 0.1)
    text = header_text(rec)
    assert "ALPHA FAVOURS BACKGROUND" in text and NOTE[:100] in text
    assert "alpha_background ×1" not in text  # a badge and its line, not a generic warning


def test_header_is_quiet_without_it(tmp_path):
    rec = Record(tmp_path / "balanced")
    rec.start()
    rec.epoch_event(1, 0.1)
    assert "ALPHA" not in header_text(rec)


def test_the_line_keeps_the_way_out_whole(tmp_path):
    """The trainer's note is 250 characters; cut at 160 it ended in "alpha for the parts, 1" and lost
    the advice. With the start event's numbers the pane says the weights and the way out, whole."""
    long_note = NOTE + "; a scalar alpha is kornia's: alpha for the parts, 1 - alpha for background); " \
        "'focal_alpha: balanced' weights the rare parts up"
    rec = Record(tmp_path / "plan")
    rec.start(alpha_info={"source": "scalar", "background": 0.75, "parts_mean": 0.25, "background_heavy": True,
                          "note": long_note})
    rec.warning("alpha_background", long_note)
    rec.epoch_event(1, 0.1)
    text = " ".join(header_text(rec).split())
    assert ("focal alpha weights background 0.75 against 0.25 for the face parts (3.0x); "
            "'focal_alpha: balanced' weights the rare parts up") in text
    rec2 = Record(tmp_path / "old")  # a record without alpha_info: the message, cut at a word
    rec2.start()
    rec2.warning("alpha_background", long_note)
    rec2.epoch_event(1, 0.1)
    line = next(x for x in header_text(rec2).splitlines() if x.startswith("⚠"))
    assert line.endswith(" …") and len(line) <= 2 + 160 and "alpha for the parts, 1 …" not in line


async def test_the_epoch_line_fits_a_narrow_pane_by_shortening_the_bar(tmp_path):
    """At 80x24 'epoch 14/300 [bar] 5.0%  ETA 53m35s  83 samples/s  step 630' wrapped its step onto a
    line of its own (seen in tmux); the bar gives way first now."""
    from tui_helpers import make_app, wait_for

    rec = Record(tmp_path / "r")
    rec.start(epochs=300)
    for e in range(1, 15):
        rec.step_event(e)
        rec.epoch_event(e, 0.03 * e, eta_s=3215.0)
    rec.event("step", epoch=15, step=123456, loss=1.0, lr=1e-4, gamma=2.0, samples_per_s=83.0, data_wait=0.0)
    for size, full_bar in (((80, 24), False), ((160, 50), True)):
        app = make_app([rec.dir])
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: 0 in app.views and app.panes[0].view is not None, 10, "the pane")
            header = app.panes[0].query_one(PaneHeader)
            await wait_for(pilot, lambda: header.size.width > 0 and header._text is not None, 10, "the header")
            line = next(x for x in header.render().plain.splitlines() if x.startswith("epoch 14/300"))
            assert "ETA" in line and "samples/s" in line and line.endswith("step 123456"), line
            assert len(line) <= header.size.width, (len(line), header.size.width)
            bar = line.index("%") + 1 - len("epoch 14/300 ") - len("  4.7%")
            assert (bar == 24) is full_bar and bar >= 6, (bar, line)  # a wide pane keeps the whole bar
