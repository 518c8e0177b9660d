"""Load and validate health rules: YAML in, frozen :class:`Rules` out.

Layers, each validated on its own and named in errors: the shipped defaults
(``app/health/default_rules.yaml``), an optional rules file (keys it leaves out keep the
defaults) and optional overrides (a run config's ``health:`` section). Mappings merge key by key;
lists, a preset's ``ops``/``first_of`` and an action list are replaced as a whole.

Every problem raises :class:`RulesError` with one line naming the source, the dotted key, the
value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Mapping


from trainer.core.safe_yaml import read_yaml_mapping

from app.health.schema import SECTIONS, TOP_KEYS, Preset, Rules, section_fields
from app.health.validate import Layer, RulesError, check_layer

__all__ = ["DEFAULT_RULES_PATH", "RulesError", "load_rules"]

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")


# --- YAML --------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    """The rules file, read like a run config (trainer.core.safe_yaml), errors as RulesError."""
    return read_yaml_mapping(path, RulesError, f"a mapping with keys {', '.join(TOP_KEYS)}")


def _merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key; anything else (lists, ops, action lists) is replaced."""
    out = dict(base)
    for key, v in top.items():
        if key in ("version",) or not isinstance(v, dict) or not isinstance(out.get(key), dict):
            out[key] = v
        elif key == "actions":
            out[key] = {**out[key], **v}
        elif key == "presets":
            merged = dict(out[key])
            for name, spec in v.items():
                base = merged.get(name, {})
                if "ops" in spec or "first_of" in spec:  # a preset's operations are replaced whole
                    base = {k: x for k, x in base.items() if k not in ("ops", "first_of")}
                merged[name] = {**base, **spec}
            out[key] = merged
        else:
            out[key] = {**out[key], **v}
    return out


def _cross_checks(data: dict, who: Any) -> None:
    ph, ms, th, win = data["phases"], data["milestones"], data["thresholds"], data["windows"]

    def need(ok: bool, key: str, value: Any, problem: str, *others: str) -> None:
        if not ok:
            raise who(key, *others).err(key, value, problem)

    need(ph["late_first_epoch"] > ph["early_last_epoch"], "phases.late_first_epoch", ph["late_first_epoch"],
         f"phase boundaries must increase: must be > phases.early_last_epoch ({ph['early_last_epoch']})",
         "phases.early_last_epoch")
    need(ms["early_val_f_epoch"] <= ph["early_last_epoch"], "milestones.early_val_f_epoch", ms["early_val_f_epoch"],
         f"must fall in the early phase: <= phases.early_last_epoch ({ph['early_last_epoch']})",
         "phases.early_last_epoch")
    need(ph["early_last_epoch"] < ms["mid_val_f_epoch"] < ph["late_first_epoch"], "milestones.mid_val_f_epoch",
         ms["mid_val_f_epoch"],
         f"must fall in the middle phase: > {ph['early_last_epoch']} and < {ph['late_first_epoch']} (phases.*)",
         "phases.early_last_epoch", "phases.late_first_epoch")
    for lo, hi in (("early_val_f_warning", "early_val_f_healthy"), ("f_gap_healthy", "f_gap_overfit"),
                   ("late_acceptable", "late_success")):
        need(th[lo] <= th[hi], f"thresholds.{lo}", th[lo], f"must be <= thresholds.{hi} ({th[hi]})", f"thresholds.{hi}")
    need(win["oscillation_reversals"] <= win["oscillation"] - 2, "windows.oscillation_reversals",
         win["oscillation_reversals"], f"at most windows.oscillation - 2 ({win['oscillation'] - 2}) reversals fit in the window",
         "windows.oscillation")
    seen: dict[str, str] = {}
    for phase in ("always", "early", "middle", "late"):
        for sid in ph[phase]:
            if sid in seen and (phase == "always" or seen[sid] == "always"):
                need(False, f"phases.{phase}", list(ph[phase]), f"'{sid}' is already in phases.{seen[sid]}",
                     f"phases.{seen[sid]}")
            seen.setdefault(sid, phase)
    for sid, entries in data["actions"].items():
        for i, e in enumerate(entries):
            if e.preset not in data["presets"]:
                close = difflib.get_close_matches(e.preset, list(data["presets"]), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                need(False, f"actions.{sid}[{i}].preset", e.preset, f"no such preset{hint}")


def _complete(data: dict, layer: Layer) -> None:
    for top in TOP_KEYS:
        if top not in data:
            raise RulesError(f"{layer.source}: {top}: missing section")
    for top, cls in SECTIONS.items():
        for key in section_fields(cls):
            if key not in data[top]:
                raise RulesError(f"{layer.source}: {top}.{key}: missing key")


def _build(data: dict, source: str) -> Rules:
    sections = {top: cls(**data[top]) for top, cls in SECTIONS.items()}
    presets = tuple(
        Preset(name, spec["label"], spec["description"], spec.get("plan", ""), spec.get("ops", ()),
               spec.get("first_of", ()))
        for name, spec in data["presets"].items()
    )
    actions = tuple(data["actions"].items())
    return Rules(version=data["version"], actions=actions, presets=presets, source=source, **sections)


_DEFAULT_CACHE: dict = {}


def _defaults() -> tuple[Layer, dict]:
    """The shipped defaults, validated and complete; parsed once per file version."""
    layer = Layer(str(DEFAULT_RULES_PATH))
    try:
        st = DEFAULT_RULES_PATH.stat()
        key = (str(DEFAULT_RULES_PATH), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is None or key not in _DEFAULT_CACHE:
        data = check_layer(layer, _read_yaml(DEFAULT_RULES_PATH))
        _complete(data, layer)
        _cross_checks(data, lambda *keys: layer)
        if key is not None:
            _DEFAULT_CACHE.clear()
            _DEFAULT_CACHE[key] = data
        return layer, data
    return layer, _DEFAULT_CACHE[key]


def load_rules(path: str | Path | None = None, overrides: Mapping | None = None, *,
               source: str = "run config") -> Rules:
    """Load the health rules.

    ``path``: a rules file (merged over the shipped defaults); ``None`` for the defaults alone.
    ``overrides``: a nested mapping, the ``health:`` section of a run config, merged last; errors
    name it as ``{source}: health.<key>``.
    """
    default_layer, default_data = _defaults()
    layers: list[tuple[Layer, dict]] = [(default_layer, default_data)]
    merged = copy.deepcopy(default_data)
    if path is not None and Path(path).resolve() != DEFAULT_RULES_PATH.resolve():
        layer = Layer(str(path))
        layers.append((layer, check_layer(layer, _read_yaml(Path(path)))))
    if overrides:
        layer = Layer(source, "health.")
        if not isinstance(overrides, Mapping):
            raise RulesError(f"{source}: health = {overrides!r}: wrong type; expected a mapping of rule overrides")
        layers.append((layer, check_layer(layer, overrides)))
    for _, data in layers[1:]:
        merged = _merge(merged, data)

    def who(*keys: str) -> Layer:
        """The last layer that sets any of these dotted keys (the one to blame)."""
        for layer, data in reversed(layers):
            for key in keys:
                node: Any = data
                for part in key.split("[")[0].split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                if node is not None:
                    return layer
        return layers[-1][0]

    for name, spec in merged["presets"].items():
        for need in ("label", "description"):
            if need not in spec:
                raise RulesError(f"{who('presets.' + name).source}: {who('presets.' + name).prefix}"
                                 f"presets.{name}.{need}: missing key (a new preset needs a label and a description)")
    _cross_checks(merged, who)
    names = [str(path or DEFAULT_RULES_PATH)] + (["health: overrides from " + source] if overrides else [])
    return _build(merged, " + ".join(names))


def plot_thresholds(rules: Rules | None = None) -> dict:
    """What the val F plot draws: the (epoch, val F) milestones and the late target of ``rules``
    (the default rules, app/health/default_rules.yaml, when None): the plot's numbers are the rules'."""
    rules = rules if rules is not None else load_rules()
    m, t = rules.milestones, rules.thresholds
    return {"milestones": ((m.early_val_f_epoch, t.early_val_f_healthy), (m.mid_val_f_epoch, t.mid_val_f_healthy)),
            "target": t.late_success}
