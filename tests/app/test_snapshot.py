"""app/snapshot.py: what an ended run's summary claims about its wall time."""

from __future__ import annotations

from app.health import load_rules
from app.notify import end_summary
from app.runlib import Run
from app.snapshot import build_view

from _runrecord import Record


def view(rec: Record):
    run = Run(rec.dir)
    run.refresh()
    return build_view(0, run, load_rules())


def test_wall_time_of_one_segment_is_start_to_end(tmp_path):
    rec = Record(tmp_path / "r")
    t0 = rec.start()["t"]
    rec.epochs_run(1, 2)
    t1 = rec.end("stopped", epoch=2)["t"]
    v = view(rec)
    assert v.wall_s == t1 - t0
    assert end_summary(v)[0].startswith("stopped after 2 of 10 epochs") and "wall time" in end_summary(v)[0]


def test_resumed_wall_time_sums_the_segments_without_the_gap(tmp_path):
    """Stopped in the middle of epoch 3 (no epoch event in the second segment at all), resumed an
    hour later and stopped again: both segments count, the hour between them does not."""
    rec = Record(tmp_path / "r")
    a0 = rec.start()["t"]
    rec.epochs_run(1, 2)
    a1 = rec.end("stopped", epoch=2)["t"]
    rec.t += 3600
    b0 = rec.start(resume_epoch=2)["t"]
    rec.step_event(3)
    b1 = rec.end("stopped", epoch=2)["t"]
    rec.t += 3600
    c0 = rec.start(resume_epoch=2)["t"]
    rec.step_event(3)
    c1 = rec.step_event(3)["t"]
    rec.end("stopped", epoch=2)
    v = view(rec)
    expected = (a1 - a0) + (b1 - b0) + (rec.t - c0)
    assert abs(v.wall_s - expected) < 1e-6 and c1 < rec.t
    assert v.wall_s < 3600  # the gaps are left out
    assert "wall time" in end_summary(v)[0]


def test_a_killed_segment_counts_to_its_last_event(tmp_path):
    """A trainer killed without an end event: its segment ends at the last event read."""
    rec = Record(tmp_path / "r")
    a0 = rec.start()["t"]
    rec.epochs_run(1, 1)
    a1 = rec.step_event(2)["t"]  # SIGKILL here: no end event
    rec.t += 600
    b0 = rec.start(resume_epoch=1)["t"]
    rec.epochs_run(2, 2)
    b1 = rec.end("stopped", epoch=2)["t"]
    assert abs(view(rec).wall_s - ((a1 - a0) + (b1 - b0))) < 1e-6
