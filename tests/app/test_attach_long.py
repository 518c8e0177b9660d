"""Attaching to a long record: step lines before the record's tail are skimmed, not parsed, and
the run read that way is the run read line by line (docs/run-directory.md, "Attaching to a long
record")."""

from __future__ import annotations

import json

import pytest

from app.runlib import Run
from app.runlib import run as run_mod

STEPS_PER_EPOCH = 500


def write_record(path, n_epochs: int, *, compact: bool = True, t0: float = 1_764_423_000.0) -> int:
    """A finished run's events.jsonl with a warning (nested ``type``) and a resume inside it."""
    dump = (lambda e: json.dumps(e, separators=(",", ":"))) if compact else json.dumps
    seq, lines, s = 0, [], 0

    def ev(t, typ, **kw):
        nonlocal seq
        seq += 1
        lines.append(dump({"v": 1, "seq": seq, "t": t, "type": typ, **kw}))

    ev(t0, "start", name="long", resume_epoch=0, epochs=n_epochs, steps_per_epoch=STEPS_PER_EPOCH,
       live={"lr": 5e-4, "epochs": n_epochs})
    for ep in range(1, n_epochs + 1):
        for _ in range(STEPS_PER_EPOCH):
            s += 1
            gap = 9.0 if s == 7 else 0.01  # one long gap early on (in the skimmed part)
            t0 += gap
            ev(t0, "step", epoch=ep, step=s, loss=1.0 / s, lr=5e-4, gamma=2.0, samples_per_s=800.0, data_wait=0.01)
        if ep == 3:  # a non-step line whose nested object says "step": parsed, never skimmed
            ev(t0, "warning", code="slow_data", message="x", epoch=ep, step=s, data={"type": "step"})
        if ep == 5:  # a resume from epoch 4 in the middle of the skimmed part
            ev(t0, "start", name="long", resume_epoch=4, epochs=n_epochs, steps_per_epoch=STEPS_PER_EPOCH,
               live={"lr": 5e-4, "epochs": n_epochs})
            continue
        ev(t0, "epoch", epoch=ep, step=s, train_loss=0.5, val_loss=0.6, val_f=0.5 + ep * 1e-3,
           per_class_f=[0.5] * 19, lr=5e-4, epochs=n_epochs)
    ev(t0 + 0.5, "end", reason="completed", epoch=n_epochs, best_val_f=0.5 + n_epochs * 1e-3, best_epoch=n_epochs)
    path.write_text("\n".join(lines) + "\n")
    return s


def read_all(run: Run) -> list[dict]:
    got = []
    while True:
        got += run.refresh(max_bytes=256 << 10)
        if not run.events_tail.more:
            return got


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(run_mod, "SKIM_MIN", 1 << 20)
    monkeypatch.setattr(run_mod, "SKIM_TAIL", 128 << 10)


@pytest.mark.parametrize("compact", [True, False], ids=["trainer-format", "json.dumps-spaces"])
def test_long_record_skimmed_reads_as_the_full_parse(tmp_path, monkeypatch, small_limits, compact):
    d = tmp_path / "long"
    d.mkdir()
    n_steps = write_record(d / "events.jsonl", 60, compact=compact)
    assert (d / "events.jsonl").stat().st_size > (1 << 20)

    skimmed = Run(d)
    got = read_all(skimmed)
    monkeypatch.setattr(run_mod, "SKIM_MIN", 1 << 40)  # the same record parsed line by line
    full = Run(d)
    got_full = read_all(full)

    a, b = skimmed.state, full.state
    # most step lines were not parsed: far fewer events came back than lines were read
    assert skimmed.events_tail.skimmed > n_steps // 2
    assert len(got) < len(got_full) // 2
    # ...and the run is the same
    assert a.steps_seen == b.steps_seen == n_steps
    assert a.events_seen == b.events_seen
    assert sorted(a.epochs) == sorted(b.epochs) == [e for e in range(1, 61) if e != 5]
    assert (a.best_val_f, a.best_epoch, a.status) == (b.best_val_f, b.best_epoch, b.status)
    assert a.last_step == b.last_step and a.last_step["step"] == n_steps
    assert a.warning_counts["slow_data"] == 1  # the nested "type":"step" line was parsed
    assert a.last_seq == b.last_seq
    # the stall cadence keeps only the last epochs: those were parsed in full
    assert list(a.cadence.epochs) == list(b.cadence.epochs)
    assert a.cadence.longest() == pytest.approx(b.cadence.longest())
    # the loss plot still spans the run (one skimmed step in tail.SKIM_KEEP is parsed)
    assert a.steps[0].step < n_steps // 4 and a.steps[-1].step == n_steps


def test_short_record_is_parsed_in_full(tmp_path):
    d = tmp_path / "short"
    d.mkdir()
    n_steps = write_record(d / "events.jsonl", 4)
    run = Run(d)
    got = read_all(run)
    assert run.events_tail.skimmed == 0
    assert sum(1 for e in got if e["type"] == "step") == n_steps


def test_live_appends_after_attach_are_parsed(tmp_path, small_limits):
    d = tmp_path / "live"
    d.mkdir()
    n_steps = write_record(d / "events.jsonl", 40)
    run = Run(d)
    read_all(run)
    with open(d / "events.jsonl", "a") as f:
        f.write(json.dumps({"v": 1, "seq": 10**6, "t": 1_764_500_000.0, "type": "step", "epoch": 41,
                            "step": n_steps + 1, "loss": 0.1, "lr": 5e-4}, separators=(",", ":")) + "\n")
    got = run.refresh()
    assert [e["step"] for e in got] == [n_steps + 1]
    assert run.state.last_step["step"] == n_steps + 1


@pytest.mark.slow  # a 17 MB record read twice: ~3 s on the shared box
def test_default_limits_parse_only_a_short_tail(tmp_path, monkeypatch):
    """With the shipped limits, attaching parses in full only the tail the cockpit needs (the last
    epochs for the stall cadence, the loss plot's full-resolution end): about 1 MiB, not 8 MiB
    (46,000 step events of 1,001,002: 0.4 s of CPU at attach, bench/RESULTS.md)."""
    d = tmp_path / "long"
    d.mkdir()
    n_epochs = 1 + (run_mod.SKIM_MIN + (1 << 20)) // (STEPS_PER_EPOCH * 150)
    n_steps = write_record(d / "events.jsonl", n_epochs)
    assert (d / "events.jsonl").stat().st_size > run_mod.SKIM_MIN

    skimmed = Run(d)
    parsed_steps = sum(1 for e in read_all(skimmed) if e["type"] == "step")
    # the kept one in SKIM_KEEP of the skimmed part, and the tail: a few thousand steps, not 46,000
    assert parsed_steps < n_steps // 256 + 10 * STEPS_PER_EPOCH + (1 << 20) // 150, parsed_steps
    monkeypatch.setattr(run_mod, "SKIM_MIN", 1 << 40)
    full = Run(d)
    read_all(full)
    a, b = skimmed.state, full.state
    assert a.steps_seen == b.steps_seen == n_steps and a.events_seen == b.events_seen
    assert list(a.cadence.epochs) == list(b.cadence.epochs)
    # the loss plot's recent end is at full resolution, the same points as a line-by-line read
    keep = a.max_steps // 4
    assert [s.step for s in a.steps[-keep:]] == [s.step for s in b.steps[-keep:]] == list(range(n_steps - keep + 1, n_steps + 1))
