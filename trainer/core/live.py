"""Live settings: what a running trainer accepts through the control channel.

Pure Python (no torch): the trainer validates incoming commands with it, and the app validates
what it is about to send and resolves presets against it. The table is docs/control.md's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from trainer.core.config import ALPHA_ALLOWED, Config, _show, all_keys, field_meta
from trainer.core.safe_yaml import is_number


#: the control protocol's commands (docs/control.md): the trainer answers these, the app sends them
COMMANDS = ("set", "pause", "resume", "stop", "checkpoint")


@dataclass(frozen=True)
class LiveKey:
    name: str
    config_key: str  # dotted key in the run config
    kind: str  # "float" | "int" | "bool" | "alpha" | "range"
    check: Callable[[Any], bool]
    allowed: str
    when: str  # "step" | "epoch"


def _num(v: Any) -> bool:
    return is_number(v, finite=True)


def _always(v: Any) -> bool:
    return True


def _live(name: str, config_key: str, kind: str, when: str, allowed: str | None = None) -> LiveKey:
    """A live key whose check and allowed text are its config field's (trainer/core/config.py: one table)."""
    meta = field_meta(config_key)
    return LiveKey(name, config_key, kind, meta.get("check", _always), allowed or meta.get("allowed", "true | false"), when)


LIVE_KEYS: dict[str, LiveKey] = {
    k.name: k
    for k in [
        _live("lr", "training.learning_rate", "float", "step"),
        _live("gamma", "loss.focal_gamma", "float", "step"),
        # the config also takes 'balanced' (resolved to a list at start); a live value is numbers only
        # (_coerce refuses a string before the check runs), so the allowed text is the numeric one
        _live("alpha", "loss.focal_alpha", "alpha", "step", ALPHA_ALLOWED),
        _live("use_focal", "loss.use_focal", "bool", "step"),
        _live("dice_weight", "loss.dice_weight", "float", "step"),
        _live("use_class_weights", "loss.use_class_weights", "bool", "step"),
        _live("dropout", "training.dropout", "float", "step"),
        _live("weight_decay", "training.weight_decay", "float", "step"),
        _live("warmup_epochs", "training.warmup_epochs", "int", "step", "an integer >= 0 and < epochs"),
        _live("epochs", "training.epochs", "int", "step", "an integer >= the epoch in progress (at most 100000)"),
        _live("grad_clip", "training.grad_clip", "float", "step"),
        _live("patience", "training.patience", "int", "epoch"),
        _live("rotation", "augmentation.rotation", "float", "epoch"),
        _live("scale_range", "augmentation.scale_range", "range", "epoch"),
        _live("hflip", "augmentation.hflip", "bool", "epoch"),
    ]
}

_CONFIG_TO_LIVE = {k.config_key: k.name for k in LIVE_KEYS.values()}
_LEAF_TO_LIVE = {k.config_key.split(".")[-1]: k.name for k in LIVE_KEYS.values() if k.config_key.split(".")[-1] != k.name}


def live_name_for(key: str) -> str | None:
    """The live setting a ``--set`` key names: its config key (``training.learning_rate``) or
    its live name (``lr``); None if it names none."""
    if key in LIVE_KEYS:
        return key
    return _CONFIG_TO_LIVE.get(key)


def live_from_config(cfg: Config) -> dict[str, Any]:
    """The live settings a run starts with."""
    out = {}
    for k in LIVE_KEYS.values():
        v = cfg.get(k.config_key)
        out[k.name] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def _coerce(key: LiveKey, v: Any) -> Any:
    if key.kind == "float":
        if isinstance(v, str):
            v = float(v)
        if not _num(v):
            raise ValueError
        return float(v)
    if key.kind == "int":
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError
        return v
    if key.kind == "bool":
        if not isinstance(v, bool):
            raise ValueError
        return v
    if key.kind == "alpha":
        if v is None:
            return None
        if isinstance(v, list):
            if not all(_num(x) for x in v):
                raise ValueError
            return [float(x) for x in v]
        if not _num(v):
            raise ValueError
        return float(v)
    if key.kind == "range":
        if not isinstance(v, (list, tuple)) or not all(_num(x) for x in v):
            raise ValueError
        return [float(x) for x in v]
    raise ValueError


def validate(values: Any, current: Mapping[str, Any], epoch: int = 0) -> tuple[dict[str, Any], str | None]:
    """Check a ``set`` command's values against the live table.

    Returns ``(clean_values, None)`` or ``({}, reason)``: a command with any bad value is refused
    as a whole. ``current`` holds the live values now in force (for cross-checks such as
    warmup < epochs); ``epoch`` is the epoch in progress (``epochs`` may not go below it).
    """
    if not isinstance(values, dict) or not values:
        return {}, "'values' must be a non-empty mapping of live settings, e.g. {\"lr\": 0.0003}"
    clean: dict[str, Any] = {}
    restart = {k.split(".")[-1]: k for k in all_keys() if k not in _CONFIG_TO_LIVE}
    for name, raw in values.items():
        key = LIVE_KEYS.get(name)
        if key is None:
            live_name = _CONFIG_TO_LIVE.get(name) or _LEAF_TO_LIVE.get(name)
            if live_name:
                return {}, f"'{name}' is a config key; send the live name '{live_name}' instead"
            if name in restart or name in {k for k in all_keys()}:
                return {}, f"'{name}' cannot change while the run is going: it needs a restart (live keys: {', '.join(LIVE_KEYS)})"
            close = difflib.get_close_matches(str(name), list(LIVE_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return {}, f"unknown setting {_show(name)}{hint} (live keys: {', '.join(LIVE_KEYS)})"
        try:
            v = _coerce(key, raw)
            ok = key.check(v)
        except (ValueError, TypeError, OverflowError):
            ok = False
        if not ok:
            return {}, f"{name} = {_show(raw)} is not allowed: {key.allowed}"
        clean[name] = v
    merged = {**current, **clean}
    if "epochs" in clean and clean["epochs"] < max(epoch, 1):
        return {}, f"epochs = {clean['epochs']} is below the epoch in progress ({epoch})"
    if ("warmup_epochs" in clean or "epochs" in clean) and merged.get("warmup_epochs", 0) >= merged.get("epochs", 1):
        return {}, f"warmup_epochs ({merged['warmup_epochs']}) must stay below epochs ({merged['epochs']})"
    return clean, None


def format_value(v: Any) -> str:
    """Compact human form of a live value (3e-04, 1.5, [0.8, 1.2])."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.4g}"
    if isinstance(v, list):
        if len(v) > 4:
            return f"[{len(v)} values]"
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)
