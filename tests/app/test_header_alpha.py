"""Issue 12: the cockpit header shows that a run's focal alpha weights background above the face parts."""

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
