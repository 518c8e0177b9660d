"""Plain records of a run: step points, adjustments (a command and its answer), and helpers."""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trainer.core.live import LIVE_KEYS, format_value

from .safeio import clean, clean_value
from trainer.core.live import validate as validate_live

NONFINITE_CODES = ("nonfinite_loss", "nonfinite_grad")
END_STATUS = {"completed": "finished", "early_stop": "early_stop", "stopped": "stopped", "crashed": "crashed"}


class StepPoint(NamedTuple):
    step: int
    epoch: int
    loss: float | None  # None: not finite (see the event's ``nonfinite``) or not reported
    lr: float | None


@dataclass
class Adjustment:
    """One control command and its answer."""

    id: str | None
    cmd: str | None = None
    values: dict = field(default_factory=dict)
    reason: str = ""
    source: str = ""
    sent_t: float | None = None
    line: int | None = None  # 1-based line in control.jsonl (None until the line is read)
    status: str = "pending"  # pending | applied | refused
    changes: dict = field(default_factory=dict)  # key -> [old, new]
    answer_epoch: int | None = None
    answer_step: int | None = None
    answer_reason: str = ""
    answer: dict | None = None  # the ack/nack event itself
    answer_t: float | None = None

    def describe(self) -> str:
        """What it asks: 'lr 5.00e-04->3.00e-04' once applied, 'gamma 1.5' before, or 'pause'."""
        if self.cmd == "set" or (self.cmd is None and (self.changes or self.values)):
            if self.changes:
                return ", ".join(f"{k} {format_value(o)}->{format_value(n)}" for k, (o, n) in _pairs(self.changes))
            return ", ".join(f"{k} {format_value(v)}" for k, v in self.values.items()) or "set"
        return self.cmd or "?"

    def when(self) -> str:
        """When it took effect, if applied: :func:`answer_words`."""
        phase = self.answer.get("phase") if isinstance(self.answer, dict) else None
        return answer_words(self.cmd, self.status, self.answer_step, self.answer_epoch, phase)

    def summary(self) -> str:
        """One short line: 'lr 5.00e-04->3.00e-04 applied', 'gamma 1.5 pending', 'pause refused: ...'."""
        if self.status == "refused":
            return f"{self.describe()} refused: {self.answer_reason}".strip()
        return f"{self.describe()} {self.status}"


#: what an applied command did, in words (any other command: as ``set``); {step} is the ack's step,
#: {before} the step before it (see answer_words)
_ANSWER_WORDS = {"set": "applied at step {step}", "pause": "paused after step {before}",
                 "resume": "resumed at step {step}", "stop": "stopped after step {step}",
                 "checkpoint": "written after step {step}"}


def answer_words(cmd: Any, status: str, step: Any, epoch: Any, phase: Any) -> str:
    """When an applied command took effect, in words that agree with the header's step (the last
    step done): 'applied at step 81 (during validation of epoch 2)', 'paused after step 91 (epoch 3)'.

    An ack's ``step`` is the first step that runs with the command for ``set``/``pause``/``resume``
    (the header reads step - 1 when it is acked), the last step done for ``stop``/``checkpoint``;
    ``phase`` "validation": acked while epoch ``epoch`` was validating (docs/control.md, "Answers").
    '' when not applied or the ack has no step."""
    if status != "applied" or not isinstance(step, int) or isinstance(step, bool):
        return ""
    e = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    where = (f" (during validation of epoch {e})" if phase == "validation" and e is not None
             else f" (epoch {e})" if e is not None else "")
    words = _ANSWER_WORDS.get(cmd if isinstance(cmd, str) else "set", _ANSWER_WORDS["set"])
    return words.format(step=step, before=step - 1) + where


def _pairs(changes: dict) -> list[tuple[str, tuple[Any, Any]]]:
    out = []
    for k, v in changes.items():
        if isinstance(v, (list, tuple)) and len(v) == 2:
            out.append((k, (v[0], v[1])))
        else:
            out.append((k, (None, v)))
    return out


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _float(v: Any) -> float | None:
    if type(v) is float or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    return None


def live_from_config_dict(config: dict) -> dict:
    """Live settings as a config.yaml mapping states them (keys that are present only)."""
    out = {}
    for k in LIVE_KEYS.values():
        section, key = k.config_key.split(".")
        sec = config.get(section)
        if isinstance(sec, dict) and key in sec:
            out[k.name] = sec[key]
    return out


# The types docs/run-directory.md gives each event field. A field of another type (a hostile or
# broken writer) is replaced by None before the state sees the event: consumers (the cockpit,
# the headless lines, the health rules) can rely on these types.
_FLOAT_FIELDS = frozenset({
    "t", "loss", "lr", "gamma", "samples_per_s", "data_wait", "train_loss", "train_f", "val_loss", "val_f",
    "pooled_f", "dropout", "epoch_time", "eta_s", "best_val_f"})
_INT_FIELDS = frozenset({
    "seq", "v", "epoch", "step", "resume_epoch", "epochs", "steps_per_epoch", "batch_size", "params", "best_epoch",
    "skipped_steps", "line", "world_size", "pid"})
_STR_FIELDS = frozenset({"type", "code", "message", "kind", "reason", "error", "cmd", "id", "name", "device", "path",
                         "run_dir", "note", "attempt", "precision", "precision_reason"})
_BOOL_FIELDS = frozenset({"resumed", "synthetic", "channels_last"})
_MAX_INT = 10**12


def _ok_float(v: Any) -> Any:
    """A finite float, or a marker: None (not a number) / 'nonfinite'."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else "nonfinite"


def _unix_time(v: Any) -> float | None:
    """A plausible Unix time (what time.localtime can format), else None."""
    f = _ok_float(v)
    return f if isinstance(f, float) and 0 <= f <= 1e11 else None


def _ok_live(values: Any) -> dict:
    """Only the live settings whose values the trainer itself would accept."""
    if not isinstance(values, dict):
        return {}
    out = {}
    for k, v in values.items():
        if k in LIVE_KEYS:
            clean, problem = validate_live({k: v}, {"warmup_epochs": 0, "epochs": 10**5}, 0)
            if not problem:
                out[k] = clean[k]
    return out


def sanitize_event(ev: dict) -> tuple[dict, list[str]]:
    """The event with every field of the wrong type set to None (raw NaN/Inf: None, and the key
    listed in ``nonfinite`` as the contract says); returns (event, the fields that were bad)."""
    out, bad = dict(ev), []
    raw_nf = ev.get("nonfinite")
    nonfinite = [x for x in raw_nf if isinstance(x, str)] if isinstance(raw_nf, list) else []
    if raw_nf is not None and (not isinstance(raw_nf, list) or len(nonfinite) != len(raw_nf)):
        bad.append("nonfinite")
    for k, v in ev.items():
        if v is None:
            continue
        if k == "t":
            out[k] = _unix_time(v)
        elif k in _FLOAT_FIELDS:
            f = _ok_float(v)
            if f == "nonfinite":
                out[k] = None
                nonfinite.append(k)
                continue
            out[k] = f
        elif k in _INT_FIELDS:
            i = _int(v)
            out[k] = i if i is not None and abs(i) <= _MAX_INT else None
        elif k in _STR_FIELDS:  # text for people: no control characters (ids stay exact)
            out[k] = (v if k == "id" else clean(v)) if isinstance(v, str) else None
        elif k in _BOOL_FIELDS:
            out[k] = v if isinstance(v, bool) else None
        elif k in ("per_class_f", "train_per_class_f"):
            ok = isinstance(v, list) and len(v) <= 256
            out[k] = [x if isinstance(x, float) else None for x in (_ok_float(y) for y in v)] if ok else None
        elif k == "alpha":
            out[k] = v if isinstance(_ok_float(v), float) or (isinstance(v, list) and all(
                isinstance(_ok_float(x), float) for x in v)) else None
        elif k == "live":
            out[k] = _ok_live(v) if isinstance(v, dict) else None
        elif k == "changes":
            if isinstance(v, dict):
                pairs = {n: p for n, p in v.items() if isinstance(p, (list, tuple)) and len(p) == 2}
                kept = _ok_live({n: p[1] for n, p in pairs.items()})
                out[k] = {n: [pairs[n][0], kept[n]] for n in kept}
                if len(out[k]) != len(v):
                    bad.append(k)
                continue
            out[k] = None
        elif k == "data":
            out[k] = clean_value(v) if isinstance(v, dict) else None
        else:
            continue
        if out[k] is None or (k == "live" and len(out[k]) != len(v)):
            bad.append(k)
    if nonfinite:
        out["nonfinite"] = sorted(set(nonfinite))
    else:
        out.pop("nonfinite", None)
    return out, bad


def describe_exit(info: dict) -> str:
    """'killed by SIGKILL (signal 9)' / 'exit code 1' from an exit.json mapping."""
    sig = info.get("signal")
    if isinstance(sig, int) and sig > 0:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
            return f"killed by {name}"
        return f"killed by {name} (signal {sig})"
    rc = info.get("returncode")
    if isinstance(rc, int) and rc < 0:
        return describe_exit({"signal": -rc})
    if info.get("error"):
        return str(info["error"])
    return f"exit code {rc}"
