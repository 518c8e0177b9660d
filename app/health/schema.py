"""The health rules as frozen dataclasses, with each key's type and allowed values.

The rules file's fixed sections (phases, milestones, thresholds, windows, late, nonfinite) are
described here by dataclass fields whose metadata says what is allowed; ``rules.py`` reads the
YAML and validates it against these fields. Pure Python: no torch, no UI. The live keys' ranges
are the trainer's (trainer.core.live, trainer.core.config): one table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from trainer.core.config import field_meta
from trainer.core.classes import NUM_CLASSES
from trainer.core.live import LIVE_KEYS as TRAINER_LIVE

# Every signal the evaluator knows, in display order. run_state is always checked.
SIGNAL_IDS: tuple[str, ...] = (
    "run_state",
    "no_nonfinite",
    "train_loss_falls",
    "val_loss_follows",
    "early_val_f_target",
    "val_loss_rising",
    "loss_gap",
    "early_val_f_floor",
    "val_f_growth",
    "mid_val_f_target",
    "f_gap",
    "val_f_oscillation",
    "f_gap_overfit",
    "val_f_stagnation",
    "late_target",
    "underfitting",
)
LISTABLE_SIGNALS = SIGNAL_IDS[1:]

# Live keys (docs/control.md) and the ranges a preset's result is clamped to: derived from trainer.core.live
# (whose ranges are trainer/core/config.py's), narrowed where a preset must stay inside an open end or short
# of a bound the protocol allows: lr stays positive, dropout stops at 0.95, warmup below the epoch cap.
_PRESET_CLAMP: dict[str, dict[str, Any]] = {
    "lr": {"lo": 1e-8},
    "dropout": {"hi": 0.95, "allowed": "a number in [0, 0.95]"},
    "warmup_epochs": {"hi": 99_999},
    "alpha": {"lo": 0.0, "hi": 1.0},  # each value, a scalar or one per class (trainer.core.config._alpha_ok)
    "scale_range": {"lo": 0.01, "hi": 4.0},  # each end (trainer.core.config._scale_ok: 0 < lo <= hi <= 4)
}


def _live_keys() -> dict[str, dict[str, Any]]:
    out = {}
    for name, k in TRAINER_LIVE.items():
        meta = field_meta(k.config_key)
        info: dict[str, Any] = {"kind": k.kind, "allowed": k.allowed}
        if "lo" in meta:
            cast = float if k.kind == "float" else int
            info["lo"], info["hi"] = cast(meta["lo"]), meta["hi"] if meta["hi"] is None else cast(meta["hi"])
        info.update(_PRESET_CLAMP.get(name, {}))
        out[name] = info
    return out


LIVE_KEYS: dict[str, dict[str, Any]] = _live_keys()
NUM_ALPHA = NUM_CLASSES  # a per-class alpha list has one entry per class

# Operations a preset may apply, per kind of live key.
OPS_BY_KIND = {
    "float": ("mul", "add", "set", "min_with", "max_with"),
    "int": ("mul", "add", "set", "min_with", "max_with"),
    # scale: every class's weight x factor (a per-class list); a scalar alpha is left as it is,
    # since in kornia's convention lowering it moves weight from the face parts to background
    "alpha": ("mul", "add", "set", "min_with", "max_with", "scale"),
    "range": ("widen", "set"),
    "bool": ("set",),
}


def _p(kind: str, check: Callable[[Any], bool], allowed: str) -> Any:
    return field(metadata={"kind": kind, "check": check, "allowed": allowed})


def _f01(allowed: str = "an F value in [0, 1]") -> Any:
    return _p("float", lambda v: 0.0 <= v <= 1.0, allowed)


def _win(lo: int) -> Any:
    return _p("int", lambda v: lo <= v <= 1000, f"an integer in {lo}..1000")


_EPOCH = "an integer epoch in 1..100000"


@dataclass(frozen=True)
class Phases:
    early_last_epoch: int = _p("int", lambda v: 0 <= v <= 100_000, "an integer epoch in 0..100000 (0: no early phase)")
    late_first_epoch: int = _p("int", lambda v: 1 <= v <= 100_001, "an integer epoch in 1..100001, > early_last_epoch")
    early: tuple = _p("signals", lambda v: True, "a list of signal ids")
    middle: tuple = _p("signals", lambda v: True, "a list of signal ids")
    late: tuple = _p("signals", lambda v: True, "a list of signal ids")
    always: tuple = _p("signals", lambda v: True, "a list of signal ids")


@dataclass(frozen=True)
class Milestones:
    early_val_f_epoch: int = _p("int", lambda v: 1 <= v <= 100_000, _EPOCH)
    mid_val_f_epoch: int = _p("int", lambda v: 1 <= v <= 100_000, _EPOCH)
    underfit_from_epoch: int = _p("int", lambda v: 1 <= v <= 100_000, _EPOCH)


@dataclass(frozen=True)
class Thresholds:
    early_val_f_healthy: float = _f01()
    early_val_f_warning: float = _f01()
    mid_val_f_healthy: float = _f01()
    f_gap_healthy: float = _f01("an F difference in [0, 1]")
    f_gap_overfit: float = _f01("an F difference in [0, 1]")
    oscillation_step: float = _p("float", lambda v: 0.0 < v <= 1.0, "an F difference in (0, 1]")
    stagnation_min_delta: float = _f01("an F difference in [0, 1]")
    val_f_min_slope: float = _p("float", lambda v: -1.0 <= v <= 1.0, "an F change per epoch in [-1, 1]")
    late_success: float = _f01()
    late_acceptable: float = _f01()
    underfit_val_f: float = _f01()
    loss_gap_max: float = _p("float", lambda v: 0.0 < v <= 1e6, "a loss difference > 0")
    train_loss_min_drop: float = _p("float", lambda v: 0.0 <= v <= 1.0, "a fraction per epoch in [0, 1]")
    val_loss_follow_ratio: float = _p("float", lambda v: 0.0 <= v <= 100.0, "a ratio in [0, 100]")
    val_loss_min_rise: float = _p("float", lambda v: 0.0 <= v <= 1.0, "a fraction per epoch in [0, 1]")


@dataclass(frozen=True)
class Windows:
    train_loss: int = _win(2)
    val_loss: int = _win(2)
    loss_gap: int = _win(1)
    f_gap: int = _win(1)
    val_f_growth: int = _win(2)
    oscillation: int = _win(3)
    oscillation_reversals: int = _win(1)
    stagnation_patience: int = _win(1)
    underfit_epochs: int = _win(1)
    settle: int = _p("int", lambda v: 0 <= v <= 1000, "an integer in 0..1000 (0: never hold a suggestion back)")


@dataclass(frozen=True)
class LateRules:
    measure: str = _p("str", lambda v: v in ("best", "last"), "best | last")


@dataclass(frozen=True)
class NonfiniteRules:
    warning_codes: tuple = _p("strings", lambda v: True, "a list of warning codes (strings)")
    count_skipped_steps: bool = _p("bool", lambda v: True, "true | false")


SECTIONS: dict[str, type] = {
    "phases": Phases,
    "milestones": Milestones,
    "thresholds": Thresholds,
    "windows": Windows,
    "late": LateRules,
    "nonfinite": NonfiniteRules,
}
TOP_KEYS = ("version", *SECTIONS, "actions", "presets")
PRESET_KEYS = ("label", "description", "plan", "ops", "first_of")
ACTION_KEYS = ("preset", "text", "state")


def section_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class KeyOps:
    """The operations a preset applies to one live key, in order: (("mul", 0.6), ...)."""

    key: str
    ops: tuple


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    plan: str
    ops: tuple = ()  # tuple[KeyOps, ...]
    first_of: tuple = ()  # tuple[tuple[KeyOps, ...], ...]

    @property
    def advice(self) -> bool:
        """True when the preset changes no live setting (e.g. "stop", "redesign")."""
        return not self.ops and not self.first_of


@dataclass(frozen=True)
class ActionRule:
    preset: str
    text: str
    state: str = "any"  # "any" (warning or failed) | "warning" | "failed"


@dataclass(frozen=True)
class Rules:
    version: int
    phases: Phases
    milestones: Milestones
    thresholds: Thresholds
    windows: Windows
    late: LateRules
    nonfinite: NonfiniteRules
    actions: tuple  # tuple[tuple[signal_id, tuple[ActionRule, ...]], ...]
    presets: tuple  # tuple[Preset, ...], in file order
    source: str = field(default="", compare=False)

    def preset(self, name: str) -> Preset:
        for p in self.presets:
            if p.name == name:
                return p
        raise KeyError(name)

    def actions_for(self, signal_id: str) -> tuple:
        for sid, rules in self.actions:
            if sid == signal_id:
                return rules
        return ()

    def signals_for(self, phase: str) -> tuple:
        """Signal ids checked in a phase ("early" | "middle" | "late" | "none"), in order."""
        ph = self.phases
        listed = {"early": ph.early, "middle": ph.middle, "late": ph.late}.get(phase, ())
        always = ph.always
        ordered = [s for s in SIGNAL_IDS[1:] if s in always and s == "no_nonfinite"]
        ordered += [s for s in listed if s not in ordered]
        ordered += [s for s in always if s not in ordered]
        return ("run_state", *ordered)

    def phase_of(self, epoch: int | None) -> str:
        if epoch is None:
            return "none"
        if epoch <= self.phases.early_last_epoch:
            return "early"
        if epoch >= self.phases.late_first_epoch:
            return "late"
        return "middle"
