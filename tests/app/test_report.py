"""`segwatch report` on real tiny runs (baseline, lmsa, lmsa_focal, lmsa_focal_g1): its tables say
exactly what the run records say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.runlib import Run
from trainer.core.classes import CLASS_NAMES, REAL_SHARES, SMALL_CLASSES

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("baseline", "lmsa", "lmsa_focal", "lmsa_focal_g1")


def f4(x) -> str:
    return f"{x:.4f}"


@pytest.fixture(scope="module")
def report(tiny_ablation, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "report", *RUNS, "--runs-dir", str(tiny_ablation["runs_dir"]),
                        "--out", str(out)], capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    states = {}
    for name in RUNS:
        r = Run(tiny_ablation[name])
        r.refresh()
        states[name] = r.state
    return {"md": (out / "report.md").read_text(), "json": json.loads((out / "report.json").read_text()),
            "stdout": p.stdout, "states": states, "out": out}


def section(md: str, title: str) -> list[list[str]]:
    """The rows of the Markdown table under '## title', as lists of cells."""
    lines = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [ln for ln in lines if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows[1:]]


def small_mean(st) -> float:
    pc = st.epochs[st.best_epoch]["per_class_f"]
    vals = [v for c, v in enumerate(pc) if c in SMALL_CLASSES and v is not None]
    return sum(vals) / len(vals)


def test_runs_table_matches_the_records(report):
    rows = {r[0]: r for r in section(report["md"], "Runs")}
    assert list(rows) == list(RUNS)  # the baseline first: attention none, no focal loss
    for name in RUNS:
        st = report["states"][name]
        best = st.epochs[st.best_epoch]
        row = rows[name]
        assert row[3] == f4(st.best_val_f) and row[4] == str(st.best_epoch) and row[5] == f4(best["pooled_f"])
        assert row[2] == f"{st.meta['params']:,}" and row[7] == "finished (3/3 epochs)"
    assert rows["baseline"][1] == "(baseline)"
    assert "model.attention none→lmsa" in rows["lmsa"][1]
    assert "loss.use_focal false→true" in rows["lmsa_focal"][1] and "training.learning_rate" in rows["lmsa_focal"][1]
    data = {d["run"]: d for d in report["json"]["tables"]["runs"]}
    for name in RUNS:  # exact, unrounded
        st = report["states"][name]
        assert data[name]["best_val_f"] == st.best_val_f and data[name]["best_epoch"] == st.best_epoch
        assert data[name]["train_seconds"] == sum(h["epoch_time"] for h in st.history())
    assert "SYNTHETIC DATA" in report["md"]


def test_ablation_chain_with_deltas(report):
    s = report["states"]
    rows = section(report["md"], "Ablation: Baseline → +LMSA → +Focal")
    assert [r[0] for r in rows] == ["Baseline", "+LMSA", "+Focal"]
    focal = max(("lmsa_focal", "lmsa_focal_g1"), key=lambda n: s[n].best_val_f)
    assert [r[1] for r in rows] == ["baseline", "lmsa", focal]
    b, l, f = s["baseline"].best_val_f, s["lmsa"].best_val_f, s[focal].best_val_f
    assert rows[1][3] == f"{l - b:+.4f}" and rows[2][3] == f"{f - l:+.4f}" and rows[2][4] == f"{f - b:+.4f}"
    assert rows[2][5] == f4(small_mean(s[focal]))
    assert "+Focal: best of 2 runs (lmsa_focal, lmsa_focal_g1)" in report["md"]


def test_per_class_small_classes_first_with_deltas(report):
    s = report["states"]
    rows = section(report["md"], "Per-class F (Δ vs baseline), small classes first")
    order = sorted(range(19), key=lambda c: REAL_SHARES[c])
    assert [r[0] for r in rows[:19]] == [f"{c} {CLASS_NAMES[c]}" for c in order]
    base = s["baseline"].epochs[s["baseline"].best_epoch]["per_class_f"]
    lmsa = s["lmsa"].epochs[s["lmsa"].best_epoch]["per_class_f"]
    for row, c in zip(rows, order):
        assert row[2] == (f4(base[c]) if base[c] is not None else "–")
        if lmsa[c] is not None:
            assert row[3] == f"{f4(lmsa[c])} ({lmsa[c] - base[c]:+.4f})"
    assert rows[19][0] == "small parts (mean)" and rows[19][2] == f4(small_mean(s["baseline"]))


def test_gamma_study(report):
    s = report["states"]
    rows = section(report["md"], "Focal loss study: γ and α")
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "0.25", "lmsa_focal_g1"), ("2", "0.25", "lmsa_focal")]
    assert rows[1][3] == f4(s["lmsa_focal"].best_val_f)
    assert rows[1][4] == f"{s['lmsa_focal'].best_val_f - s['baseline'].best_val_f:+.4f}"
    assert "lmsa_focal: gamma changed live during the run" in report["md"]


def test_every_live_adjustment_with_val_f_after_it(report):
    st = report["states"]["lmsa_focal"]
    (adj,) = [a for a in st.adjustments if a.cmd == "set"]
    rows = section(report["md"], "Live adjustments against the run's own trend")
    (row,) = [r for r in rows if r[0] == "lmsa_focal"]
    assert row[1] == adj.describe() == "gamma 2->1.5"
    assert row[3] == f"epoch {adj.answer_epoch}, step {adj.answer_step}" == "epoch 1, step 1"
    vals = [st.epochs[e]["val_f"] for e in (1, 2, 3)]
    assert row[4] == "–" and row[6] == ", ".join(f4(v) for v in vals)  # applied before the first epoch ended
    assert row[8] == "no epoch before it: no trend to compare with" and row[9] == "test: calmer focusing"
    (d,) = [d for d in report["json"]["tables"]["adjustments"] if d["run"] == "lmsa_focal"]
    assert d["val_f_after"] == {"1": vals[0], "2": vals[1], "3": vals[2]} and d["changes"] == {"gamma": [2.0, 1.5]}


def test_terminal_tables_and_text_figures(report):
    out = report["stdout"]
    for title in ("Runs", "Ablation: Baseline → +LMSA → +Focal", "Focal loss study", "Live adjustments"):
        assert title in out
    assert "small parts (mean)" not in out and "Only there: Per-class F" in out  # the long section stays in the file
    *body, last = out.strip().splitlines()
    assert not any("Val F per epoch" in ln for ln in body)  # so do the plots: only the last line names them
    assert last.startswith(f"Full report: {report['out'] / 'report.md'}") and "--full" in last
    assert f4(report["states"]["lmsa"].best_val_f) in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "```" in report["md"] and "val F per epoch" in report["md"] and "\x1b[" not in report["md"]
        assert "Figures are text plots" in report["md"]
    else:
        assert (report["out"] / "val_f.png").stat().st_size > 0 and "![" in report["md"]


def test_full_prints_everything(report, tiny_ablation):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "report", *RUNS, "--runs-dir", str(tiny_ablation["runs_dir"]),
                        "--out", str(report["out"]), "--full"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                       env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Per-class F (Δ vs baseline)" in out and "small parts (mean)" in out
    for name in CLASS_NAMES:
        assert name in out
    if not (report["out"] / "val_f.png").exists():  # text plots: on the terminal too
        assert "Val F per epoch" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"Full report: {report['out'] / 'report.md'}.") and "Per-class" not in last


def test_unknown_run_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "report", "nosuch", "--runs-dir", str(tmp_path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert p.returncode == 2 and "no run 'nosuch'" in p.stderr and len(p.stderr.strip().splitlines()) == 1
