"""Judge a run: its epoch history against the health rules -> a :class:`Verdict`.

Deterministic and cheap: each signal looks at a bounded window at the end of the history, or
makes one simple pass over it, so re-evaluating on every new epoch of several runs is fine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

from app.health.presets import resolve_preset
from app.health.schema import Rules
from app.health.signals import CHECKS, LABELS, Context

RUN_STATES = ("running", "paused", "finished", "crashed", "stopped", "stalled")
# other names the run readers use (app.runlib): judged as the state they map to
RUN_STATE_ALIASES = {"starting": "running", "early_stop": "finished", "completed": "finished", "killed": "crashed",
                     "queued": "running", "skipped": "stopped"}  # queued/skipped: runs of a plan (app/plan)
STATES = ("ok", "warning", "failed", "pending")


@dataclass(frozen=True)
class Signal:
    id: str  # stable snake_case id (schema.SIGNAL_IDS)
    label: str  # short English
    state: str  # "ok" | "warning" | "failed" | "pending"
    detail: str  # the numbers behind it, e.g. "val F 0.180 < 0.20 at epoch 10"
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    signal_id: str  # the signal that suggests it (the first one, when several do)
    text: str  # English, with the plan's wording
    preset: str  # the preset or single adjustment that carries it out
    values: dict = field(default_factory=dict)  # absolute live values to `set`; {} for advice
    # the same preset was applied to the run in epoch `applied_epoch` and its effect has not had
    # `windows.settle` epochs to show: it is not suggested again before epoch `settled_after` is over
    applied_epoch: int | None = None
    settled_after: int | None = None

    @property
    def settling(self) -> bool:
        return self.settled_after is not None

    def settling_words(self) -> str:
        """Why it is held back, as the cockpit, the headless log and notifications say it: 'early_catch_up
        applied in epoch 11; suggested again after epoch 14 if still needed' ('' when it is not)."""
        if not self.settling:
            return ""
        return (f"{self.preset} applied in epoch {self.applied_epoch}; suggested again after epoch "
                f"{self.settled_after} if still needed")


@dataclass(frozen=True)
class Verdict:
    phase: str  # "early" | "middle" | "late" | "none" (no epoch yet)
    status: str  # "green" | "yellow" | "red"
    signals: tuple  # tuple[Signal, ...]
    actions: tuple  # tuple[Action, ...]
    summary: str  # one line, for headless logs
    epoch: int | None = None  # last completed epoch judged

    def signal(self, signal_id: str) -> Signal | None:
        for s in self.signals:
            if s.id == signal_id:
                return s
        return None


def _status(signals: Sequence[Signal]) -> str:
    if any(s.state == "failed" for s in signals):
        return "red"
    if any(s.state == "warning" for s in signals):
        return "yellow"
    return "green"


def _actions(signals: Sequence[Signal], rules: Rules, live: Mapping | None, epoch: int) -> tuple:
    out: list[Action] = []
    seen: set = set()
    ordered = [s for s in signals if s.state == "failed"] + [s for s in signals if s.state == "warning"]
    for s in ordered:
        for rule in rules.actions_for(s.id):
            if rule.state != "any" and rule.state != s.state:
                continue
            if rule.preset in seen:
                continue
            seen.add(rule.preset)
            values = resolve_preset(rule.preset, live, rules, epoch=epoch) if live is not None else {}
            out.append(Action(s.id, rule.text, rule.preset, values))
    return tuple(out)


# the reasons under which the cockpit and the CLI send a preset (app/tui/actions.py, bench/)
PRESET_REASON = re.compile(r"^(?:suggested|preset): ([A-Za-z0-9_]+)")
UNDO_REASON = re.compile(r"^undo (\S+)")  # the cockpit's `z`: "undo <id> (<what it undoes>)"


def applied_presets(adjustments: Iterable) -> list[tuple[str, int]]:
    """(preset, epoch it was applied in) of every applied ``set`` whose reason names a preset and
    that no applied undo took back. ``adjustments``: app.runlib Adjustment-likes (``id``, ``cmd``,
    ``status``, ``reason``, ``answer_epoch``)."""
    done = [a for a in adjustments if getattr(a, "cmd", "") == "set" and getattr(a, "status", "") == "applied"]
    undone = {m.group(1) for a in done if (m := UNDO_REASON.match(str(getattr(a, "reason", "") or "")))}
    out = []
    for a in done:
        m = PRESET_REASON.match(str(getattr(a, "reason", "") or ""))
        epoch = getattr(a, "answer_epoch", None)
        if m and type(epoch) is int and getattr(a, "id", None) not in undone:
            out.append((m.group(1), epoch))
    return out


def _settle(actions: tuple, applied: Sequence[tuple[str, int]], epoch: int | None, settle: int) -> tuple:
    """Mark each action whose preset was applied less than ``settle`` epochs before: its evidence is
    from before the change (a relative preset sent again would compound)."""
    if not applied or not settle or epoch is None:
        return actions
    last: dict[str, int] = {}
    for preset, e in applied:
        last[preset] = max(e, last.get(preset, e))
    out = []
    for a in actions:
        e = last.get(a.preset)
        out.append(replace(a, applied_epoch=e, settled_after=e + settle) if e is not None and epoch < e + settle else a)
    return tuple(out)


def _summary(phase: str, status: str, epoch: int | None, total: int | None, signals: Sequence[Signal],
             actions: Sequence[Action]) -> str:
    where = "no epoch yet" if epoch is None else f"epoch {epoch}" + (f"/{total}" if total else "")
    head = f"{status.upper()} {phase} {where}"
    bad = [s for s in signals if s.state in ("failed", "warning")]
    if not bad:
        pending = sum(1 for s in signals if s.state == "pending")
        return f"{head}: all checks ok" + (f" ({pending} pending)" if pending else "")
    body = "; ".join(f"{s.label}: {s.detail}" for s in bad)
    acts = ", ".join(a.preset + (f" (applied in epoch {a.applied_epoch}, settling)" if a.settling else "")
                     for a in actions)
    acts = f" -> {acts}" if acts else ""
    return f"{head}: {body}{acts}"


def evaluate(history: Sequence[Mapping], rules: Rules, *, live: Mapping | None = None,
             run_state: str = "running", total_epochs: int | None = None,
             warnings: Sequence[Mapping] = (), applied: Sequence[tuple[str, int]] = ()) -> Verdict:
    """Judge a run.

    ``history``: the run's ``epoch`` events in epoch order (docs/run-directory.md).
    ``live``: the live settings now in force (docs/control.md keys); when given, each action's
    ``values`` are resolved against it, ready for a control ``set``; without it they are empty.
    ``run_state``: running | paused | finished | crashed | stopped | stalled ("crashed" and
    "stalled": alive but no progress, app.runlib.liveness -> red); also
    starting (= running), early_stop and completed (= finished), killed (= crashed).
    ``total_epochs``: the run's planned length (defaults to the last event's ``epochs``).
    ``warnings``: the run's ``warning`` events (codes in ``nonfinite.warning_codes`` -> red).
    ``applied``: (preset, epoch) of the presets already applied to the run (:func:`applied_presets`):
    an action whose preset was applied fewer than ``windows.settle`` epochs ago is marked settling.
    """
    run_state = RUN_STATE_ALIASES.get(run_state, run_state)
    if run_state not in RUN_STATES:
        known = ", ".join([*RUN_STATES, *RUN_STATE_ALIASES])
        raise ValueError(f"run_state {run_state!r} is not one of {known}")
    ctx = Context(history, rules, run_state, total_epochs, warnings or ())
    phase = rules.phase_of(ctx.epoch)
    ids = rules.signals_for(phase)
    signals = []
    for sid in ids:
        state, detail, values = CHECKS[sid](ctx)
        signals.append(Signal(sid, LABELS[sid], state, detail, values))
    status = _status(signals)
    in_progress = ctx.epoch + 1 if ctx.epoch is not None else 0  # `epochs` may not go below it
    actions = _settle(_actions(signals, rules, live, in_progress), applied, ctx.epoch, rules.windows.settle)
    summary = _summary(phase, status, ctx.epoch, ctx.total, signals, actions)
    return Verdict(phase, status, tuple(signals), actions, summary, ctx.epoch)
