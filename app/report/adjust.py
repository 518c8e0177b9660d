"""The report's adjustments table: what each live `set` did to val F, told fairly.

An adjustment applied during epoch e is judged on its window, epochs e .. e+after-1, against the
run's own trend before it (a least-squares line through up to ``after`` epochs before e, carried
forward), not against the single value before it: a run that was climbing anyway gets no credit
for climbing. Adjustments whose windows overlap are one event (their effects cannot be told
apart), and a window with fewer than ``MIN_WINDOW`` epochs is "too soon to tell".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.report.collect import RunRecord
from trainer.core.safe_yaml import is_number

MIN_WINDOW = 2  # epochs ended with the change before the report judges it
NOISE_FLOOR = 0.002  # val F: differences smaller than this are never called an effect


@dataclass
class Event:
    members: list  # Adjustment objects, in the order they were applied
    first: int  # the epoch the first was applied in
    last_applied: int  # the epoch the last was applied in
    window: list = field(default_factory=list)  # [(epoch, val F)] inside the window, in order


_num = is_number


def f4(x: Any) -> str:
    return f"{x:.4f}" if _num(x) else "–"


def _clock(t: Any) -> str:
    if not _num(t):
        return "–"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (TypeError, ValueError, OverflowError, OSError):  # not recorded, or not a time a clock can show
        return "–"


def group(applied: list, after: int) -> list[Event]:
    """Applied adjustments (with an epoch) merged where their windows overlap."""
    events: list[Event] = []
    for a in sorted(applied, key=lambda a: (a.answer_epoch, a.answer_step or 0)):
        e = a.answer_epoch
        if events and e <= events[-1].last_applied + after - 1:
            events[-1].members.append(a)
            events[-1].last_applied = e
        else:
            events.append(Event([a], e, e))
    return events


def trend(points: list[tuple[int, float]]) -> tuple[float, float, float] | None:
    """(value at x=0, slope per epoch, residual std) of the least-squares line; one point: flat."""
    if not points:
        return None
    if len(points) == 1:
        return points[0][1], 0.0, 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    icpt = my - slope * mx
    res = [y - (icpt + slope * x) for x, y in points]
    std = (sum(r * r for r in res) / max(n - 2, 1)) ** 0.5 if n > 2 else 0.0
    return icpt, slope, std


def judge(ev: Event, by_epoch: dict, after: int) -> dict:
    """The event's numbers and verdict (words), from the run's epochs."""
    end = ev.last_applied + after - 1
    ev.window = [(k, by_epoch[k]) for k in range(ev.first, end + 1) if _num(by_epoch.get(k))]
    pre = [(k, by_epoch[k]) for k in range(ev.first - after, ev.first) if _num(by_epoch.get(k))]
    fit = trend(pre)
    out: dict[str, Any] = {"window": [ev.first, end], "val_f_after": dict(ev.window),
                           "val_f_before": pre[-1][1] if pre else None, "trend_epochs": len(pre),
                           "trend_slope": fit[1] if fit else None, "expected": {}, "delta_vs_trend": None}
    if len(ev.window) < MIN_WINDOW:
        out["verdict"] = (f"too soon to tell: {len(ev.window)} epoch{'s' if len(ev.window) != 1 else ''} "
                          f"ended since (needs {MIN_WINDOW})")
        return out
    if fit is None:
        out["verdict"] = "no epoch before it: no trend to compare with"
        return out
    icpt, slope, std = fit
    expected = {k: icpt + slope * k for k, _ in ev.window}
    resid = [v - expected[k] for k, v in ev.window]
    d = sum(resid) / len(resid)
    noise = max(2 * std, NOISE_FLOOR)
    out.update(expected=expected, delta_vs_trend=d, noise=noise)
    basis = (f"trend {slope:+.4f}/epoch over {len(pre)} epochs" if len(pre) > 1
             else "only 1 epoch before it: trend taken as flat")
    if abs(d) <= noise:
        out["verdict"] = f"in line with the trend before it ({d:+.4f}, noise ±{noise:.4f}; {basis})"
    else:
        out["verdict"] = f"{'above' if d > 0 else 'below'} the trend before it by {d:+.4f} ({basis})"
    return out


def adjustments_table(recs: list[RunRecord], after: int = 5) -> Any:
    from app.report.tables import Table

    rows, data, notes = [], [], []
    for r in recs:
        by_epoch = {h["epoch"]: h.get("val_f") for h in r.history}
        applied = [a for a in r.adjustments if a.status == "applied" and a.answer_epoch is not None]
        applied_ids = {id(a) for a in applied}
        for a in r.adjustments:
            if id(a) in applied_ids:
                continue
            rows.append([r.name, f"{a.describe()} ({a.status}{': ' + a.answer_reason if a.answer_reason else ''})",
                         _clock(a.answer_t), "–", "–", "–", "–", "–", a.reason or "–"])
            data.append({"run": r.name, "id": a.id, "status": a.status, "values": a.values, "reason": a.reason,
                         "answer_reason": a.answer_reason})
        for ev in group(applied, after):
            j = judge(ev, by_epoch, after)
            ms = ev.members
            change = "; ".join(a.describe() for a in ms)
            if len(ms) > 1:
                change = f"{len(ms)} merged: {change}"
                notes.append(f"{r.name}: {', '.join(a.describe() for a in ms)} were applied within {after} epochs "
                             f"of each other (epochs {ev.first}–{ev.last_applied}); their windows overlap, so they "
                             "are judged as one event: their separate effects cannot be told apart")
            when = f"epoch {ev.first}, step {ms[0].answer_step}" + (
                f" … epoch {ev.last_applied}, step {ms[-1].answer_step}" if len(ms) > 1 else "")
            trend_s = ("–" if j["trend_slope"] is None else f"{j['trend_slope']:+.4f}/epoch ({j['trend_epochs']} ep)")
            after_s = ", ".join(f4(v) for _, v in ev.window) or "– (no epoch ended after it)"
            d = j["delta_vs_trend"]
            rows.append([r.name, change, _clock(ms[0].answer_t), when, f4(j["val_f_before"]), trend_s, after_s,
                         "–" if d is None else f"{d:+.4f}", j["verdict"],
                         "; ".join(a.reason for a in ms if a.reason) or "–"])
            entry = {"run": r.name, "ids": [a.id for a in ms], "merged": len(ms) > 1, "epoch": ev.first,
                     "step": ms[0].answer_step, "applied_t": ms[0].answer_t, **j,
                     "members": [{"id": a.id, "changes": a.changes, "epoch": a.answer_epoch, "step": a.answer_step,
                                  "reason": a.reason, "source": a.source} for a in ms]}
            if len(ms) == 1:
                entry.update(id=ms[0].id, changes=ms[0].changes, reason=ms[0].reason, source=ms[0].source)
            entry["val_f_after"] = {str(k): v for k, v in entry["val_f_after"].items()}
            entry["expected"] = {str(k): v for k, v in entry["expected"].items()}
            data.append(entry)
        if r.other_commands:
            notes.append(f"{r.name}: {r.other_commands} other control commands (pause/resume/stop/checkpoint), not listed")
    notes.insert(0, f"Every live `set` sent to the runs. Each applied change is judged on its window (the epoch it "
                    f"was applied in and the {after - 1} after it) against the run's own trend before it (a line "
                    f"through up to {after} epochs before, carried forward): Δ vs trend is the window's mean val F "
                    "minus the trend's; within noise (2× the trend's residual spread, at least "
                    f"{NOISE_FLOOR}) it is called in line. Changes whose windows overlap are merged into one event; "
                    f"fewer than {MIN_WINDOW} epochs after a change is too soon to tell.")
    if not rows:
        notes.append("No live adjustment was sent to these runs.")
    return Table("adjustments", "Live adjustments against the run's own trend",
                 ["run", "change", "applied at", "when", "val F before", "trend before",
                  f"val F in window (≤{after} epochs)", "Δ vs trend", "verdict", "reason"], rows, notes, data)
