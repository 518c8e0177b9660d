"""The signals: each plan line turned into a precise check over a bounded window of epochs.

Each check takes a :class:`Context` and returns ``(state, detail, values)`` with state one of
"ok", "warning", "failed", "pending" (not decidable yet). Definitions and parameters are in
docs/health.md; every number comes from the rules. Windows count the epochs that carry the value
(an epoch whose value is missing or non-finite is skipped), newest last.
"""

from __future__ import annotations

from typing import Callable, Mapping

from app.health.context import NONFINITE_KEYS, Context, Result, finite, fmt, rel_drop, slope, span


LABELS: dict[str, str] = {
    "run_state": "Run state",
    "no_nonfinite": "No NaN or Inf",
    "train_loss_falls": "Train loss falls fast",
    "val_loss_follows": "Val loss follows it down",
    "early_val_f_target": "Val F healthy by the early milestone",
    "val_loss_rising": "Val loss rising",
    "loss_gap": "Train/val loss gap",
    "early_val_f_floor": "Val F floor at the early milestone",
    "val_f_growth": "Val F grows steadily",
    "mid_val_f_target": "Val F target by the middle milestone",
    "f_gap": "Train/val F gap small",
    "val_f_oscillation": "Val F oscillation",
    "f_gap_overfit": "Overfitting (train F >> val F)",
    "val_f_stagnation": "Val F stagnation",
    "late_target": "Final val F target",
    "underfitting": "Underfitting",
}


# --- any phase -----------------------------------------------------------------------------


def run_state(c: Context) -> Result:
    if c.run_state == "crashed":
        return "failed", "the run crashed", {"run_state": c.run_state}
    if c.run_state == "stalled":
        return "failed", "the trainer makes no progress (no new event for longer than its cadence allows)", \
            {"run_state": c.run_state}
    return "ok", f"the run is {c.run_state}", {"run_state": c.run_state}


def _raw_nonfinite(ev: Mapping) -> list:
    """Keys holding a raw NaN/Inf float (off-contract: writers send null + ``nonfinite``)."""
    return [k for k in NONFINITE_KEYS if isinstance(v := ev.get(k), float) and v - v != 0.0]


def no_nonfinite(c: Context) -> Result:
    count_skipped = c.rules.nonfinite.count_skipped_steps
    # one cheap pass to find the suspicious epochs (x - x != 0 only for NaN and +-Inf) ...
    suspects = [ev for ev in c.h if ev.get("nonfinite") or (count_skipped and ev.get("skipped_steps"))
                or (isinstance(a := ev.get("train_loss"), float) and a - a != 0.0)
                or (isinstance(b := ev.get("val_loss"), float) and b - b != 0.0)
                or (isinstance(x := ev.get("train_f"), float) and x - x != 0.0)
                or (isinstance(y := ev.get("val_f"), float) and y - y != 0.0)]
    # ... then the details for those only
    bad_epochs: list = []
    keys: set = set()
    skipped = 0
    for ev in suspects:
        nf = list(ev.get("nonfinite") or ()) + _raw_nonfinite(ev)
        s = ev.get("skipped_steps") if count_skipped else None
        s = int(s) if finite(s) and s > 0 else 0
        if nf or s:
            bad_epochs.append(ev["epoch"])
            keys.update(nf)
            skipped += s
    codes = set(c.rules.nonfinite.warning_codes)
    warns = [w for w in c.warnings if w.get("code") in codes]
    values = {"epochs": bad_epochs, "keys": sorted(keys), "skipped_steps": skipped,
              "warnings": [w.get("code") for w in warns]}
    if not bad_epochs and not warns:
        return "ok", "no NaN or Inf so far", values
    parts = []
    if keys:
        parts.append(f"NaN/Inf in {', '.join(sorted(keys))}")
    if skipped:
        parts.append(f"{skipped} step(s) skipped for a non-finite loss")
    if bad_epochs:
        more = f" (+{len(bad_epochs) - 1} more)" if len(bad_epochs) > 1 else ""
        parts.append(f"first at epoch {bad_epochs[0]}{more}")
    if warns:
        w = warns[0]
        where = f" at epoch {w.get('epoch')}" if w.get("epoch") is not None else ""
        parts.append(f"{len(warns)} warning(s) {w.get('code')}{where}")
    return "failed", "; ".join(parts), values


def underfitting(c: Context) -> Result:
    below, need = c.th.underfit_val_f, c.win.underfit_epochs
    start = c.ms.underfit_from_epoch
    series = c.val_f()
    last_val = series[-1] if series else None
    last_ok_epoch = start - 1
    for epoch, v in reversed(series):
        if epoch < start:
            break
        if v >= below:
            last_ok_epoch = epoch
            break
    if last_val is None:
        return "pending", "no val F yet", {}
    streak = max(c.epoch - last_ok_epoch, 0)
    values = {"val_f": last_val[1], "streak": streak, "below": below, "epochs": need}
    if last_val[1] >= below:
        return "ok", f"val F {fmt(last_val[1])} >= {below:.2f}", values
    if streak >= need:
        return "warning", f"val F < {below:.2f} for {streak} epochs in a row (limit {need})", values
    return "pending", f"val F < {below:.2f} for {streak} epochs so far (warning at {need})", values


# --- early phase ---------------------------------------------------------------------------


def train_loss_falls(c: Context) -> Result:
    n = c.win.train_loss
    pts = c.tail("train_loss", n)
    if len(pts) < n:
        return c.pending_window("train loss", len(pts), n)
    r, need = rel_drop(pts), c.th.train_loss_min_drop
    values = {"rel_drop_per_epoch": r, "min": need, "from": pts[0][1], "to": pts[-1][1]}
    detail = f"train loss {r * -100:+.1f}%/epoch over {span(pts)} ({fmt(pts[0][1])} -> {fmt(pts[-1][1])})"
    if r >= need:
        return "ok", f"{detail}; falls >= {need * 100:.1f}%/epoch", values
    return "warning", f"{detail}; not falling fast (needs a fall >= {need * 100:.1f}%/epoch)", values


def val_loss_follows(c: Context) -> Result:
    n = c.win.val_loss
    pts = c.tail2("train_loss", "val_loss", n)
    if len(pts) < n:
        return c.pending_window("train and val loss", len(pts), n)
    tr = rel_drop([(e, t) for e, t, _ in pts])
    va = rel_drop([(e, v) for e, _, v in pts])
    ratio = c.th.val_loss_follow_ratio
    need = ratio * max(tr, 0.0)
    values = {"val_rel_drop": va, "train_rel_drop": tr, "needed": need}
    detail = f"val loss {va * -100:+.1f}%/epoch vs train {tr * -100:+.1f}%/epoch over {span(pts)}"
    if va > 0 and va >= need:
        return "ok", f"{detail}; follows", values
    return "warning", f"{detail}; not following (needs a fall >= {ratio:g} x train's)", values


def val_loss_rising(c: Context) -> Result:
    n = c.win.val_loss
    pts = c.tail("val_loss", n)
    if len(pts) < n:
        return c.pending_window("val loss", len(pts), n)
    rise, lim = -rel_drop(pts), c.th.val_loss_min_rise
    values = {"rel_rise_per_epoch": rise, "limit": lim}
    detail = f"val loss {rise * 100:+.1f}%/epoch over {span(pts)} ({fmt(pts[0][1])} -> {fmt(pts[-1][1])})"
    if rise >= lim:
        return "warning", f"{detail}: rising instead of falling (>= +{lim * 100:.1f}%/epoch)", values
    return "ok", detail, values


def loss_gap(c: Context) -> Result:
    n = c.win.loss_gap
    pts = c.tail2("train_loss", "val_loss", n)
    if len(pts) < n:
        return c.pending_window("train and val loss", len(pts), n)
    gap = sum(abs(v - t) for _, t, v in pts) / n
    lim = c.th.loss_gap_max
    values = {"gap": gap, "limit": lim}
    if gap > lim:
        return "warning", f"|val - train| loss {fmt(gap)} > {lim:g} (mean over {span(pts)})", values
    return "ok", f"|val - train| loss {fmt(gap)} <= {lim:g} (mean over {span(pts)})", values


def _val_f_at(c: Context, epoch: int) -> tuple | None:
    """(epoch, val F) of the last epoch <= ``epoch`` that has a val F."""
    best = None
    for p in c.val_f():
        if p[0] > epoch:
            break
        best = p
    return best


def _recovered(c: Context, milestone: int, passes) -> tuple | None:
    """(epoch, val F) of the first epoch after ``milestone`` whose val F ``passes``: a run that
    missed its milestone and has reached the line since (after a fix) is judged on what it is now,
    so the colour does not keep asking for a fix that has worked."""
    return next((p for p in c.val_f() if p[0] > milestone and passes(p[1])), None)


def _by_milestone(c: Context, milestone: int, above: float) -> Result:
    best = None
    for p in c.val_f():
        if p[0] > milestone:
            break
        if best is None or p[1] > best[1]:
            best = p
    values = {"best_val_f": best[1] if best else None, "threshold": above, "milestone": milestone}
    if best is not None and best[1] > above:
        return "ok", f"val F {fmt(best[1])} > {above:.2f} at epoch {best[0]} (by epoch {milestone})", values
    if c.epoch is not None and c.epoch >= milestone:
        got = f"best {fmt(best[1])}" if best else "no val F"
        late = _recovered(c, milestone, lambda f: f > above)
        if late is not None:
            return "ok", (f"val F {fmt(late[1])} > {above:.2f} at epoch {late[0]}, late: "
                          f"{got} by epoch {milestone}"), {**values, "recovered_epoch": late[0]}
        return "warning", f"val F {got} <= {above:.2f} by epoch {milestone}", values
    got = f"best {fmt(best[1])} so far" if best else "no val F yet"
    return "pending", f"val F {got}; needs > {above:.2f} by epoch {milestone}{c.beyond_run(milestone)}", values


def early_val_f_target(c: Context) -> Result:
    return _by_milestone(c, c.ms.early_val_f_epoch, c.th.early_val_f_healthy)


def early_val_f_floor(c: Context) -> Result:
    m, lim = c.ms.early_val_f_epoch, c.th.early_val_f_warning
    if c.epoch is None or c.epoch < m:
        return "pending", f"decided at epoch {m}{c.beyond_run(m)}", {"milestone": m, "threshold": lim}
    at = _val_f_at(c, m)
    if at is None:
        return "pending", f"no val F by epoch {m}", {"milestone": m, "threshold": lim}
    values = {"val_f": at[1], "epoch": at[0], "threshold": lim}
    if at[1] < lim:
        late = _recovered(c, m, lambda f: f >= lim)
        if late is not None:
            return "ok", (f"val F {fmt(late[1])} >= {lim:.2f} at epoch {late[0]}, late: "
                          f"{fmt(at[1])} at epoch {at[0]}"), {**values, "recovered_epoch": late[0]}
        return "warning", f"val F {fmt(at[1])} < {lim:.2f} at epoch {at[0]}", values
    return "ok", f"val F {fmt(at[1])} >= {lim:.2f} at epoch {at[0]}", values


# --- middle phase --------------------------------------------------------------------------


def val_f_growth(c: Context) -> Result:
    n = c.win.val_f_growth
    pts = c.tail("val_f", n)
    if len(pts) < n:
        return c.pending_window("val F", len(pts), n)
    s, lim = slope(pts), c.th.val_f_min_slope
    values = {"slope": s, "min_slope": lim}
    detail = f"val F trend {s:+.4f}/epoch over {span(pts)}"
    if s > lim:
        return "ok", f"{detail} (> {lim:+.4f})", values
    return "warning", f"{detail}: not growing (needs > {lim:+.4f})", values


def mid_val_f_target(c: Context) -> Result:
    return _by_milestone(c, c.ms.mid_val_f_epoch, c.th.mid_val_f_healthy)


def _f_gap(c: Context) -> tuple:
    n = c.win.f_gap
    pts = c.tail2("train_f", "val_f", n)
    if len(pts) < n:
        return None, c.pending_window("train and val F", len(pts), n)
    return sum(t - v for _, t, v in pts) / n, pts


def f_gap(c: Context) -> Result:
    gap, pts = _f_gap(c)
    if gap is None:
        return pts
    lim = c.th.f_gap_healthy
    values = {"gap": gap, "limit": lim}
    if gap < lim:
        return "ok", f"train F - val F {gap:+.3f} < {lim:.2f} (mean over {span(pts)})", values
    return "warning", f"train F - val F {gap:+.3f} >= {lim:.2f} (mean over {span(pts)})", values


def f_gap_overfit(c: Context) -> Result:
    gap, pts = _f_gap(c)
    if gap is None:
        return pts
    lim = c.th.f_gap_overfit
    values = {"gap": gap, "limit": lim}
    if gap > lim:
        return "warning", f"train F - val F {gap:+.3f} > {lim:.2f}: overfitting (mean over {span(pts)})", values
    return "ok", f"train F - val F {gap:+.3f} <= {lim:.2f} (mean over {span(pts)})", values


def val_f_oscillation(c: Context) -> Result:
    n, need, step = c.win.oscillation, c.win.oscillation_reversals, c.th.oscillation_step
    pts = c.tail("val_f", n)
    if len(pts) < n:
        return c.pending_window("val F", len(pts), n)
    d = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
    big = step - 1e-12
    rev = sum(1 for x, y in zip(d, d[1:]) if x * y < 0 and abs(x) >= big and abs(y) >= big)
    values = {"reversals": rev, "needed": need, "step": step, "max_jump": max(abs(x) for x in d)}
    detail = f"{rev} reversal(s) of >= {step:.2f} in val F over {span(pts)}"
    if rev >= need:
        return "warning", f"{detail}: oscillating (>= {need})", values
    return "ok", f"{detail} (< {need})", values


def val_f_stagnation(c: Context) -> Result:
    patience, delta = c.win.stagnation_patience, c.th.stagnation_min_delta
    series = c.val_f()
    if not series:
        return "pending", "no val F yet", {}
    first = series[0][0]
    best = series[0]
    for p in series:
        if p[1] > best[1] + delta:
            best = p
    since = c.epoch - best[0]
    values = {"epochs_since_best": since, "best_val_f": best[1], "best_epoch": best[0], "patience": patience}
    if since >= patience:
        return "warning", (f"no val F gain > {delta:g} for {since} epochs (best {fmt(best[1])} at epoch "
                           f"{best[0]}; limit {patience})"), values
    if c.epoch - first < patience:
        return "pending", f"val F: {c.epoch - first + 1} epochs so far, needs {patience + 1}", values
    return "ok", f"last val F gain at epoch {best[0]} ({fmt(best[1])}), {since} epochs ago (< {patience})", values


# --- late phase ----------------------------------------------------------------------------


def late_target(c: Context) -> Result:
    if c.rules.late.measure == "best":
        series = c.val_f()
        got = None
        for p in series:
            if got is None or p[1] > got[1]:
                got = p
        what = "best val F"
    else:
        pts = c.tail("val_f", 1)
        got = pts[0] if pts else None
        what = "val F"
    ok, lo = c.th.late_success, c.th.late_acceptable
    if got is None:
        return "pending", "no val F yet", {}
    values = {"val_f": got[1], "epoch": got[0], "success": ok, "acceptable": lo}
    where = f"{what} {fmt(got[1])} (epoch {got[0]})"
    if got[1] > ok:
        return "ok", f"{where} > {ok:.2f}: success", values
    if got[1] >= lo:
        return "warning", f"{where} in [{lo:.2f}, {ok:.2f}]: acceptable", values
    return "failed", f"{where} < {lo:.2f}: needs a redesign", values


CHECKS: dict[str, Callable[[Context], Result]] = {
    "run_state": run_state,
    "no_nonfinite": no_nonfinite,
    "train_loss_falls": train_loss_falls,
    "val_loss_follows": val_loss_follows,
    "early_val_f_target": early_val_f_target,
    "val_loss_rising": val_loss_rising,
    "loss_gap": loss_gap,
    "early_val_f_floor": early_val_f_floor,
    "val_f_growth": val_f_growth,
    "mid_val_f_target": mid_val_f_target,
    "f_gap": f_gap,
    "val_f_oscillation": val_f_oscillation,
    "f_gap_overfit": f_gap_overfit,
    "val_f_stagnation": val_f_stagnation,
    "late_target": late_target,
    "underfitting": underfitting,
}
