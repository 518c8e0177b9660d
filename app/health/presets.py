"""Presets: relative adjustments resolved against a run's current live values.

A preset (from the rules file) says "LR x0.6, gamma -0.5, ..."; :func:`resolve_preset` turns it
into the absolute values a control ``set`` command carries (docs/control.md), clamped to the
allowed ranges, so the same preset works on any config and a replayed command cannot compound.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

from app.health.schema import LIVE_KEYS, KeyOps, Preset, Rules
from trainer.core.safe_yaml import is_number

FOCAL_KEYS = ("gamma", "alpha")  # no effect while use_focal is false


def list_presets(rules: Rules) -> tuple[Preset, ...]:
    """Every preset in the rules, in file order (name, label, description, plan, ops...)."""
    return tuple(rules.presets)


def _tidy(x: float) -> float:
    """Round to 6 significant digits: 5e-4 * 0.6 gives 3e-4, not 0.00030000000000000003."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.6g}")


def _num(v: Any) -> bool:
    return is_number(v, finite=True)


def _scalar(op: str, arg: Any, x: float) -> float:
    if op == "mul":
        return x * arg
    if op == "add":
        return x + arg
    if op == "set":
        return arg
    if op == "min_with":
        return min(x, arg)
    if op == "max_with":
        return max(x, arg)
    raise ValueError(f"operation {op!r} does not apply to a number")


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _apply_key(k: KeyOps, cur: Any, epoch: int) -> Any:
    """The new value of one live key, clamped; ``cur`` is its current value."""
    info = LIVE_KEYS[k.key]
    kind = info["kind"]
    if kind == "bool":
        new = cur
        for _, arg in k.ops:
            new = arg
        return new
    if kind == "range":
        if not (isinstance(cur, (list, tuple)) and len(cur) == 2 and all(_num(x) for x in cur)):
            return None
        lo, hi = float(cur[0]), float(cur[1])
        for op, arg in k.ops:
            if op == "widen":
                lo, hi = lo - arg, hi + arg
            else:  # set
                lo, hi = arg
        lo, hi = _clamp(_tidy(lo), info["lo"], info["hi"]), _clamp(_tidy(hi), info["lo"], info["hi"])
        if lo > hi:  # narrowed past each other: meet in the middle
            lo = hi = _tidy((lo + hi) / 2)
        return [lo, hi]
    if kind == "alpha":
        if isinstance(cur, (list, tuple)):
            if not all(_num(x) for x in cur):
                return None
            vals = [float(x) for x in cur]
            for op, arg in k.ops:
                if op == "set":
                    vals = list(arg) if isinstance(arg, tuple) else [arg] * len(vals)
                elif op == "scale":
                    vals = [x * arg for x in vals]
                else:
                    vals = [_scalar(op, arg, x) for x in vals]
            return [_clamp(_tidy(x), info["lo"], info["hi"]) for x in vals]
        if not _num(cur):
            return None
        x = float(cur)
        for op, arg in k.ops:
            if op == "set" and isinstance(arg, tuple):
                return [_clamp(a, info["lo"], info["hi"]) for a in arg]
            if op == "scale":  # kornia's scalar cannot scale every class alike: kept
                continue
            x = _scalar(op, arg, x)
        return _clamp(_tidy(x), info["lo"], info["hi"])
    if not _num(cur):
        return None
    x = float(cur)
    for op, arg in k.ops:
        x = _scalar(op, arg, x)
    if kind == "int":
        lo = max(info["lo"], epoch) if k.key == "epochs" else info["lo"]
        return int(_clamp(math.floor(x + 0.5), lo, info["hi"]))
    return _clamp(_tidy(x), info["lo"], info["hi"])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if _num(a) and _num(b):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def _apply(ops: tuple, live: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ops:
        if k.key not in live or live[k.key] is None:
            continue  # keys the run does not report are skipped
        new = _apply_key(k, live[k.key], epoch)
        if new is not None and not _same(new, live[k.key]):
            out[k.key] = new
    # cross-check: warmup_epochs < epochs
    merged = {**live, **out}
    w, e = merged.get("warmup_epochs"), merged.get("epochs")
    if _num(w) and _num(e) and w >= e and ("warmup_epochs" in out or "epochs" in out):
        w = max(int(e) - 1, 0)
        if _same(w, live.get("warmup_epochs")):
            out.pop("warmup_epochs", None)
        else:
            out["warmup_epochs"] = w
    return out


def _effective(values: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Does this change do anything? gamma/alpha changes do nothing while use_focal is false."""
    if live.get("use_focal") is False:
        return any(k not in FOCAL_KEYS for k in values)
    return bool(values)


def resolve_preset(name: str, live: Mapping[str, Any], rules: Rules, *, epoch: int = 0) -> dict[str, Any]:
    """Absolute values for the live keys preset ``name`` changes, given the current ``live`` values.

    Keys absent from ``live`` (or None there) are skipped; keys whose value would not change are
    left out, so ``{}`` means "nothing to send" (always so for advice-only presets such as
    "stop"). ``epoch`` is the epoch in progress (``epochs`` never goes below it). For a
    ``first_of`` preset the first alternative that changes something is used.
    Raises ``ValueError`` for an unknown preset name.
    """
    try:
        preset = rules.preset(name)
    except KeyError:
        names = [p.name for p in rules.presets]
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown preset '{name}'{hint} (presets: {', '.join(names)})") from None
    if preset.first_of:
        for alt in preset.first_of:
            values = _apply(alt, live, epoch)
            if _effective(values, live):
                return values
        return {}
    return _apply(preset.ops, live, epoch)


def describe_ops(preset: Preset) -> str:
    """A compact human form of a preset's operations: "lr x0.6, gamma -0.5"."""

    def one(k: KeyOps) -> str:
        parts = []
        for op, arg in k.ops:
            a = list(arg) if isinstance(arg, tuple) else arg
            parts.append({
                "mul": f"x{a:g}" if _num(a) else f"x{a}",
                "add": f"{a:+g}" if _num(a) else f"+{a}",
                "set": f"= {a}",
                "min_with": f"down to {a:g}" if _num(a) else f"min {a}",
                "max_with": f"at least {a:g}" if _num(a) else f"max {a}",
                "widen": f"widened by {a:g}" if _num(a) else f"widen {a}",
                "scale": f"x{a:g} on every class (a scalar alpha is kept)" if _num(a) else f"scale {a}",
            }[op])
        return f"{k.key} " + ", then ".join(parts)

    if preset.first_of:
        return " or else ".join("; ".join(one(k) for k in alt) for alt in preset.first_of)
    if not preset.ops:
        return "advice only"
    return "; ".join(one(k) for k in preset.ops)
