"""Validation of one layer of health rules: keys, types and allowed values.

Used by ``rules.py``; every problem is a :class:`RulesError` whose one-line message names the
source, the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

from app.health.schema import (
    ACTION_KEYS, LISTABLE_SIGNALS, LIVE_KEYS, NUM_ALPHA, OPS_BY_KIND, PRESET_KEYS, SECTIONS,
    SIGNAL_IDS, TOP_KEYS, ActionRule, KeyOps, section_fields,
)


class RulesError(ValueError):
    """A rules file or override that cannot be used; the message is one line."""


class Layer:
    """One source of rules: names its keys in errors (``prefix`` is "health." for a run config)."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source, self.prefix = source, prefix

    def err(self, key: str, value: Any, problem: str, allowed: str = "") -> RulesError:
        tail = f"; allowed: {allowed}" if allowed else ""
        return RulesError(f"{self.source}: {self.prefix}{key} = {value!r}: {problem}{tail}")

    def unknown(self, key: str, name: Any, candidates: Any) -> RulesError:
        close = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return RulesError(f"{self.source}: {self.prefix}{key}: unknown key{hint} (allowed: {', '.join(candidates)})")

    def mapping(self, key: str, value: Any, what: str) -> dict:
        if not isinstance(value, Mapping):
            raise self.err(key, value, f"wrong type; expected a mapping of {what}")
        return dict(value)


def _number(layer: Layer, key: str, v: Any, allowed: str) -> float:
    if isinstance(v, str):  # YAML 1.1 reads 5e-4 as a string
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise layer.err(key, v, "wrong type; expected a number", allowed)
    if not math.isfinite(v):
        raise layer.err(key, v, "not a finite number", allowed)
    return float(v)


def _integer(layer: Layer, key: str, v: Any, allowed: str) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise layer.err(key, v, "wrong type; expected an integer", allowed)
    return v


def _check_field(layer: Layer, key: str, f: Any, v: Any) -> Any:
    kind, allowed = f.metadata["kind"], f.metadata["allowed"]
    if kind == "float":
        v = _number(layer, key, v, allowed)
    elif kind == "int":
        v = _integer(layer, key, v, allowed)
    elif kind == "bool":
        if not isinstance(v, bool):
            raise layer.err(key, v, "wrong type", allowed)
    elif kind == "str":
        if not isinstance(v, str):
            raise layer.err(key, v, "wrong type", allowed)
    elif kind in ("signals", "strings"):
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise layer.err(key, v, "wrong type; expected a list of names", allowed)
        if len(set(v)) != len(v):
            raise layer.err(key, v, "lists a name twice", allowed)
        if kind == "signals":
            for x in v:
                if x == "run_state":
                    raise layer.err(key, v, "run_state is always checked and cannot be listed", allowed)
                if x not in LISTABLE_SIGNALS:
                    close = difflib.get_close_matches(x, LISTABLE_SIGNALS, n=1, cutoff=0.6)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise layer.err(key, v, f"unknown signal '{x}'{hint}", ", ".join(LISTABLE_SIGNALS))
        return tuple(v)
    if not f.metadata["check"](v):
        raise layer.err(key, v, "out of range", allowed)
    return v


def _check_ops(layer: Layer, key: str, raw: Any) -> tuple:
    """A preset's ``ops`` mapping -> tuple[KeyOps, ...]."""
    ops = layer.mapping(key, raw, "live settings to operations")
    out = []
    for name, spec in ops.items():
        k = f"{key}.{name}"
        if name not in LIVE_KEYS:
            raise layer.unknown(k, name, LIVE_KEYS)
        info = LIVE_KEYS[name]
        allowed_ops = OPS_BY_KIND[info["kind"]]
        spec = layer.mapping(k, spec, f"operations ({', '.join(allowed_ops)})")
        if not spec:
            raise layer.err(k, spec, "no operation given", ", ".join(allowed_ops))
        steps = []
        for op, v in spec.items():
            if op not in allowed_ops:
                raise layer.unknown(k + f".{op}", op, allowed_ops)
            steps.append((op, _check_op_value(layer, f"{k}.{op}", name, op, v)))
        out.append(KeyOps(name, tuple(steps)))
    return tuple(out)


def _check_op_value(layer: Layer, key: str, name: str, op: str, v: Any) -> Any:
    info = LIVE_KEYS[name]
    kind = info["kind"]
    if kind == "bool":
        if not isinstance(v, bool):
            raise layer.err(key, v, "wrong type", "true | false")
        return v
    if op == "set" and kind == "alpha" and isinstance(v, list):
        if len(v) != NUM_ALPHA:
            raise layer.err(key, v, f"a per-class alpha needs {NUM_ALPHA} values", info["allowed"])
        vals = tuple(_number(layer, key, x, info["allowed"]) for x in v)
        if not all(0.0 <= x <= 1.0 for x in vals):
            raise layer.err(key, v, "out of range", info["allowed"])
        return vals
    if op == "set" and kind == "range":
        if not isinstance(v, list) or len(v) != 2:
            raise layer.err(key, v, "wrong type", info["allowed"])
        lo, hi = (_number(layer, key, x, info["allowed"]) for x in v)
        if not 0 < lo <= hi <= info["hi"]:
            raise layer.err(key, v, "out of range", info["allowed"])
        return (lo, hi)
    if op in ("mul", "scale"):
        x = _number(layer, key, v, "a factor in [0, 100]")
        if not 0.0 <= x <= 100.0:
            raise layer.err(key, v, "out of range", "a factor in [0, 100]")
        return x
    if op in ("add", "widen"):
        return _number(layer, key, v, "a finite number")
    # set / min_with / max_with: an absolute value, which must itself be allowed for the key
    x = _number(layer, key, v, info["allowed"])
    if kind == "int":
        x = _integer(layer, key, x, info["allowed"])
    if not info["lo"] <= x <= info["hi"]:
        raise layer.err(key, v, "out of range", info["allowed"])
    return x


def _check_preset(layer: Layer, key: str, raw: Any) -> dict:
    spec = layer.mapping(key, raw, f"preset fields ({', '.join(PRESET_KEYS)})")
    out: dict[str, Any] = {}
    for field_name, v in spec.items():
        k = f"{key}.{field_name}"
        if field_name not in PRESET_KEYS:
            raise layer.unknown(k, field_name, PRESET_KEYS)
        if field_name in ("label", "description", "plan"):
            if not isinstance(v, str) or (field_name == "label" and not v.strip()):
                raise layer.err(k, v, "wrong type", "a non-empty string" if field_name == "label" else "a string")
            out[field_name] = v
        elif field_name == "ops":
            out["ops"] = _check_ops(layer, k, v if v is not None else {})
        else:
            if not isinstance(v, list) or not v:
                raise layer.err(k, v, "wrong type", "a non-empty list of ops mappings")
            out["first_of"] = tuple(_check_ops(layer, f"{k}[{i}]", alt) for i, alt in enumerate(v))
    if out.get("ops") and out.get("first_of"):
        raise layer.err(key, "ops + first_of", "give either ops or first_of, not both")
    return out


def _check_actions(layer: Layer, raw: Any) -> dict:
    acts = layer.mapping("actions", raw, "signal ids to action lists")
    out = {}
    for sid, entries in acts.items():
        k = f"actions.{sid}"
        if sid not in SIGNAL_IDS:
            raise layer.unknown(k, sid, SIGNAL_IDS)
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise layer.err(k, entries, "wrong type", "a list of {preset, text, state} mappings")
        rules = []
        for i, e in enumerate(entries):
            ek = f"{k}[{i}]"
            e = layer.mapping(ek, e, f"action fields ({', '.join(ACTION_KEYS)})")
            for f_name in e:
                if f_name not in ACTION_KEYS:
                    raise layer.unknown(f"{ek}.{f_name}", f_name, ACTION_KEYS)
            for need in ("preset", "text"):
                if not isinstance(e.get(need), str) or not e[need].strip():
                    raise layer.err(f"{ek}.{need}", e.get(need), "missing or not a string", "a non-empty string")
            state = e.get("state", "any")
            if state not in ("any", "warning", "failed"):
                raise layer.err(f"{ek}.state", state, "unknown state", "any | warning | failed")
            rules.append(ActionRule(e["preset"], e["text"], state))
        out[sid] = tuple(rules)
    return out


def check_layer(layer: Layer, data: Mapping) -> dict:
    """Validate one layer (keys, types, ranges); returns a normalized partial mapping."""
    out: dict[str, Any] = {}
    for top, value in data.items():
        if top not in TOP_KEYS:
            raise layer.unknown(str(top), top, TOP_KEYS)
        if top == "version":
            if value != 1 or isinstance(value, bool):
                raise layer.err("version", value, "unsupported version", "1")
            out["version"] = 1
        elif top in SECTIONS:
            fields = section_fields(SECTIONS[top])
            sec = layer.mapping(top, value if value is not None else {}, "keys")
            out[top] = {}
            for key, v in sec.items():
                if key not in fields:
                    raise layer.unknown(f"{top}.{key}", key, fields)
                out[top][key] = _check_field(layer, f"{top}.{key}", fields[key], v)
        elif top == "actions":
            out["actions"] = _check_actions(layer, value if value is not None else {})
        else:
            presets = layer.mapping("presets", value if value is not None else {}, "preset names to presets")
            out["presets"] = {}
            for name, spec in presets.items():
                if not isinstance(name, str) or not name.replace("_", "").isalnum() or not name.islower():
                    raise layer.err(f"presets.{name}", spec, "a preset name must be snake_case")
                out["presets"][name] = _check_preset(layer, f"presets.{name}", spec)
    return out
