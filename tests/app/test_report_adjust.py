"""`segwatch report` judges each live adjustment against the run's own trend before it, merges
adjustments whose windows overlap, says "too soon to tell" for a short window, and prints the
summary on the terminal while the long per-class section stays in the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.app._runrecord import Record

ROOT = Path(__file__).resolve().parents[2]


def _run(runs: Path, name: str, f_of, sets: list[tuple[int, dict]], last: int) -> None:
    rec = Record(runs / name)
    rec.start(epochs=last)
    for e in range(1, last + 1):
        for _ in range(2):
            rec.step_event(e)
        for when, values in sets:
            if when == e:
                rec.ack(rec.command("set", values, reason=f"test {values}"), epoch=e)
        rec.epoch_event(e, f_of(e))
    rec.end(epoch=last)


def _report(runs: Path, out: Path, *names: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "report", *names, "--runs-dir", str(runs), "--out", str(out),
                        "--no-figures"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    return p, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_adjustments_judged_against_the_trend_merged_and_too_soon(tmp_path):
    runs = tmp_path / "runs"
    # climbing 0.02/epoch all along: three changes in a row (epochs 5, 6, 7) did nothing
    _run(runs, "climb", lambda e: 0.1 + 0.02 * e, [(5, {"lr": 0.0003}), (6, {"gamma": 1.5}), (7, {"gamma": 2.0})], 12)
    # flat at 0.5, then a real jump after the change at epoch 6; a change in the last epoch
    _run(runs, "jump", lambda e: 0.5 if e < 6 else 0.6, [(6, {"lr": 0.0003}), (12, {"dropout": 0.1})], 12)
    p, rep, md = _report(runs, tmp_path / "out", "climb", "jump")
    adj = {(d["run"], d["epoch"]): d for d in rep["tables"]["adjustments"]}
    climb = adj[("climb", 5)]
    # one event, not three each credited with the whole climb after it
    assert climb["merged"] is True and len(climb["members"]) == 3 and ("climb", 6) not in adj
    assert climb["window"] == [5, 11] and abs(climb["trend_slope"] - 0.02) < 1e-9
    assert abs(climb["delta_vs_trend"]) < 1e-9 and climb["verdict"].startswith("in line with the trend")
    assert "judged as one event" in md and "3 merged: lr" in md
    jump = adj[("jump", 6)]
    assert jump["merged"] is False and jump["trend_slope"] == 0.0
    assert abs(jump["delta_vs_trend"] - 0.1) < 1e-9 and jump["verdict"].startswith("above the trend before it by +0.1000")
    late = adj[("jump", 12)]
    assert late["delta_vs_trend"] is None and late["verdict"].startswith("too soon to tell: 1 epoch ended since")
    # terminal: the summary tables, the adjustments' verdicts; the per-class table only in the file
    assert "Live adjustments against the run's own trend" in p.stdout and "too soon to tell" in p.stdout
    assert "small parts (mean)" in md and "small parts (mean)" not in p.stdout
    assert "Only there: Per-class F" in p.stdout
    assert p.stdout.index("Runs") < p.stdout.index("Live adjustments")
