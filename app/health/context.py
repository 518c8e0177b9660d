"""What every signal check shares: the evaluation context, windows, slopes and number formats."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from app.health.schema import Rules

Result = tuple  # (state, detail, values)

NONFINITE_KEYS = ("train_loss", "val_loss", "train_f", "val_f")
NUM = (float, int)  # bools are excluded where numbers are read
INF = math.inf


def finite(v: Any) -> bool:
    return isinstance(v, NUM) and v is not True and v is not False and -INF < v < INF


def fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def span(pts: Sequence[tuple]) -> str:
    return f"epochs {pts[0][0]}-{pts[-1][0]}" if len(pts) > 1 else f"epoch {pts[0][0]}"


def slope(pts: Sequence[tuple]) -> float:
    """Least-squares slope of value against epoch."""
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return 0.0
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def rel_drop(pts: Sequence[tuple]) -> float:
    """Fall per epoch as a fraction of the window's mean level (positive = falling)."""
    mean = sum(p[1] for p in pts) / len(pts)
    return -slope(pts) / max(abs(mean), 1e-12)


class Context:
    """One evaluation: the history, the rules and cached windows."""

    def __init__(self, history: Sequence[Mapping], rules: Rules, run_state: str,
                 total_epochs: int | None, warnings: Sequence[Mapping]) -> None:
        self.h, self.rules, self.run_state, self.warnings = history, rules, run_state, warnings
        self.th, self.win, self.ms = rules.thresholds, rules.windows, rules.milestones
        self._val_f: list | None = None
        self.epoch = int(history[-1]["epoch"]) if history else None
        self.total = total_epochs
        if self.total is None and history and finite(history[-1].get("epochs")):
            self.total = int(history[-1]["epochs"])

    def val_f(self) -> list:
        """Every (epoch, val F) with a finite val F, oldest first (computed once)."""
        if self._val_f is None:
            self._val_f = [(e["epoch"], float(v)) for e in self.h  # v - v == 0: not NaN, not Inf
                           if isinstance(v := e.get("val_f"), NUM) and v - v == 0 and v is not True and v is not False]
        return self._val_f

    def tail(self, key: str, n: int) -> list:
        """The last ``n`` (epoch, value) pairs with a finite value, oldest first."""
        out = []
        for ev in reversed(self.h):
            v = ev.get(key)
            if finite(v):
                out.append((ev["epoch"], float(v)))
                if len(out) == n:
                    break
        out.reverse()
        return out

    def tail2(self, a: str, b: str, n: int) -> list:
        """The last ``n`` (epoch, a, b) triples where both values are finite, oldest first."""
        out = []
        for ev in reversed(self.h):
            x, y = ev.get(a), ev.get(b)
            if finite(x) and finite(y):
                out.append((ev["epoch"], float(x), float(y)))
                if len(out) == n:
                    break
        out.reverse()
        return out

    def pending_window(self, what: str, have: int, need: int) -> Result:
        return "pending", f"{what}: {have} of {need} epochs so far", {"epochs_seen": have, "window": need}

    def beyond_run(self, milestone: int) -> str:
        if self.total is not None and self.total < milestone:
            return f"; the run ends at epoch {self.total}, before epoch {milestone}"
        return ""
