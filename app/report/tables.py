"""The report's tables, built from RunRecords only (so every number is the record's own).

F values are shown with 4 decimals; ``Table.data`` holds the exact values for report.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.report.adjust import adjustments_table
from app.report.collect import RunRecord, config_diff
from app.snapshot import fmt_duration
from trainer.core.classes import CLASS_NAMES, REAL_SHARES, SMALL_CLASSES
from trainer.core.live import format_value

STUDY_KEYS = ("loss.focal_gamma", "loss.focal_alpha")
CHAIN = (("Baseline", "none", False), ("+LMSA", "lmsa", False), ("+Focal", "lmsa", True))


@dataclass
class Table:
    key: str
    title: str
    columns: list
    rows: list  # lists of strings, one per column
    notes: list = field(default_factory=list)
    data: list = field(default_factory=list)  # exact values, for report.json


def f4(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def delta(x: Any, ref: Any) -> str:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, ref)):
        return "–"
    return f"{x - ref:+.4f}"


def _v(x: Any) -> str:
    return format_value(x) if isinstance(x, float) else str(x).lower() if isinstance(x, bool) else str(x)


def runs_table(recs: list[RunRecord], base: RunRecord) -> Table:
    rows, data = [], []
    for r in recs:
        diff = config_diff(r, base)
        ds = "(baseline)" if r is base else "; ".join(f"{k} {_v(a)}→{_v(b)}" for k, a, b in diff) or "(same config)"
        pooled = r.best.get("pooled_f")
        rows.append([r.name, ds, f"{r.params:,}" if isinstance(r.params, int) else "–", f4(r.best_val_f),
                     str(r.best_epoch) if r.best_epoch is not None else "–", f4(pooled),
                     fmt_duration(r.train_seconds) if r.train_seconds is not None else "–", r.ended])
        data.append({"run": r.name, "path": str(r.path), "config_diff": {k: [a, b] for k, a, b in diff},
                     "params": r.params, "best_val_f": r.best_val_f, "best_epoch": r.best_epoch, "pooled_f": pooled,
                     "train_seconds": r.train_seconds, "status": r.status, "ended": r.ended})
    notes = [f"Baseline: {base.name}. F = the organisers' per-image val F at the best epoch (what best.pt holds); "
             "pooled F = one confusion matrix over the val split, same epoch; training time = sum of epoch times."]
    if any(r.synthetic for r in recs):
        notes.append("SYNTHETIC DATA: " + ", ".join(r.name for r in recs if r.synthetic)
                     + " trained on the built-in synthetic faces; their scores say nothing about the real task.")
    return Table("runs", "Runs", ["run", "config vs baseline", "params", "best val F", "epoch", "pooled F",
                                  "train time", "ended"], rows, notes, data)


def ablation_table(recs: list[RunRecord], base: RunRecord) -> Table | None:
    steps = []
    for label, att, focal in CHAIN:
        cands = [r for r in recs if r.attention == att and bool(r.use_focal) == focal and r.status not in ("queued", "skipped")]
        if label == "Baseline" and base in cands:
            cands = [base]
        if not cands:
            continue
        pick = max(cands, key=lambda r: r.best_val_f if isinstance(r.best_val_f, (int, float)) else -1.0)
        steps.append((label, pick, cands))
    if len(steps) < 2:
        return None
    rows, data, notes = [], [], []
    first, prev = steps[0][1], None
    for label, r, cands in steps:
        rows.append([label, r.name, f4(r.best_val_f), delta(r.best_val_f, prev.best_val_f) if prev else "–",
                     delta(r.best_val_f, first.best_val_f) if prev else "–", f4(r.small_mean()),
                     delta(r.small_mean(), first.small_mean()) if prev else "–"])
        data.append({"step": label, "run": r.name, "best_val_f": r.best_val_f, "small_mean_f": r.small_mean(),
                     "candidates": [c.name for c in cands]})
        if len(cands) > 1:
            notes.append(f"{label}: best of {len(cands)} runs ({', '.join(c.name for c in cands)})")
        prev = r
    notes.insert(0, "Steps by config: Baseline = model.attention none, no focal loss; +LMSA = attention lmsa; "
                    "+Focal = lmsa with loss.use_focal. Small parts = " + ", ".join(CLASS_NAMES[c] for c in SMALL_CLASSES)
                 + " (mean per-class F at the best epoch).")
    return Table("ablation", "Ablation: Baseline → +LMSA → +Focal", ["step", "run", "best val F", "Δ previous",
                 "Δ baseline", "small parts F", "Δ small (baseline)"], rows, notes, data)


def per_class_table(recs: list[RunRecord], base: RunRecord) -> Table:
    others = [r for r in recs if r is not base]
    order = sorted(range(len(CLASS_NAMES)), key=lambda c: REAL_SHARES[c])
    bpc = base.per_class()
    cols = ["class", "share", f"{base.name} (baseline)"] + [f"{r.name} (Δ)" for r in others]
    rows, data = [], []
    for c in order:
        row = [f"{c} {CLASS_NAMES[c]}", f"{REAL_SHARES[c] * 100:.2f}%", f4(bpc[c])]
        d = {"class": CLASS_NAMES[c], "id": c, base.name: bpc[c]}
        for r in others:
            v = r.per_class()[c]
            row.append(f"{f4(v)} ({delta(v, bpc[c])})" if v is not None else "–")
            d[r.name] = v
        rows.append(row)
        data.append(d)
    rows.append(["small parts (mean)", "", f4(base.small_mean())]
                + [f"{f4(r.small_mean())} ({delta(r.small_mean(), base.small_mean())})" for r in others])
    notes = ["Per-class F at each run's best epoch (the epoch event's per_class_f), smallest classes first "
             "(pixel shares measured on the 1000 real training masks); – = the class is absent from the val ground truth."]
    return Table("per_class", "Per-class F (Δ vs baseline), small classes first", cols, rows, notes, data)


def study_table(recs: list[RunRecord], base: RunRecord) -> Table | None:
    groups: dict[tuple, list[RunRecord]] = {}
    for r in recs:
        if r.status in ("queued", "skipped"):
            continue
        rest = tuple(sorted((k, repr(v)) for k, v in r.flat.items() if k not in STUDY_KEYS and k != "name"))
        groups.setdefault(rest, []).append(r)
    best = None
    for g in groups.values():
        combos = {tuple(repr(r.flat.get(k)) for k in STUDY_KEYS) for r in g}
        if len(g) >= 2 and len(combos) >= 2 and (best is None or len(g) > len(best)):
            best = g
    if best is None:
        return None
    best = sorted(best, key=lambda r: tuple(str(r.flat.get(k)) for k in STUDY_KEYS))
    rows, data, notes = [], [], []
    for r in best:
        g, a = r.flat.get("loss.focal_gamma"), r.flat.get("loss.focal_alpha")
        live = sorted({k for adj in r.adjustments if adj.status == "applied" for k in adj.changes if k in ("gamma", "alpha")})
        rows.append([_v(g), _v(a), r.name, f4(r.best_val_f), delta(r.best_val_f, base.best_val_f),
                     f4(r.small_mean()), delta(r.small_mean(), base.small_mean())])
        data.append({"run": r.name, "focal_gamma": g, "focal_alpha": a, "best_val_f": r.best_val_f,
                     "small_mean_f": r.small_mean()})
        if live:
            notes.append(f"{r.name}: {', '.join(live)} changed live during the run; its row shows the configured value")
    notes.insert(0, "Runs whose configs differ only in loss.focal_gamma / loss.focal_alpha; Δ against the baseline "
                    f"({base.name}). Small parts F = mean per-class F of the small parts at the best epoch.")
    return Table("study", "Focal loss study: γ and α", ["γ", "α", "run", "best val F", "Δ baseline", "small parts F",
                                                        "Δ small"], rows, notes, data)


ABSENT = {
    "ablation": "No ablation chain: it needs at least two of Baseline (model.attention none, no focal loss), "
                "+LMSA (attention lmsa) and +Focal (lmsa with loss.use_focal) among the runs.",
    "study": "No γ/α study: no two runs differ only in loss.focal_gamma / loss.focal_alpha.",
}


def build_tables(recs: list[RunRecord], base: RunRecord, after: int = 5) -> tuple[list[Table], list[str]]:
    """(tables, sentences saying which tables could not be built and why)."""
    out, absent = [runs_table(recs, base)], []
    for key, t in (("ablation", ablation_table(recs, base)), ("per_class", per_class_table(recs, base)),
                   ("study", study_table(recs, base)), ("adjustments", adjustments_table(recs, after))):
        if t is None:
            absent.append(ABSENT[key])
        else:
            out.append(t)
    return out, absent
