"""Plain records of a run: step points, adjustments (a command and its answer), and helpers."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trainer.live import LIVE_KEYS, format_value

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

    def summary(self) -> str:
        """One short line: 'lr 5.00e-04->3.00e-04 applied', 'gamma 1.5 pending', 'pause refused: ...'."""
        if self.status == "refused":
            return f"{self.describe()} refused: {self.answer_reason}".strip()
        return f"{self.describe()} {self.status}"


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
