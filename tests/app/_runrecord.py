"""Test helper: write run directories the way docs/run-directory.md and docs/control.md say.

Only for tests of app/runlib and the CLI verbs; the real trainer is tested separately.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DEFAULT_LIVE = {
    "lr": 0.0005, "gamma": 2.0, "alpha": 0.25, "use_focal": False, "dice_weight": 1.0,
    "use_class_weights": False, "dropout": 0.15, "weight_decay": 0.0001, "warmup_epochs": 1,
    "epochs": 10, "grad_clip": 1.0, "patience": 0, "rotation": 20.0, "scale_range": [0.85, 1.15],
    "hflip": True,
}

CONFIG_YAML = """name: {name}
seed: 42
training:
  learning_rate: 0.0005
  epochs: 10
  warmup_epochs: 1
loss:
  focal_gamma: 2.0
"""


class Record:
    """Builds events.jsonl (and control.jsonl) for one run directory."""

    def __init__(self, run_dir: Path, name: str | None = None, *, config: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name or self.dir.name
        self.seq = 0
        self.t = time.time()  # now: a record of the past would be (rightly) shown stalled
        self.step = 0
        self.steps_per_epoch = 10
        self.live = dict(DEFAULT_LIVE)
        if config:
            (self.dir / "config.yaml").write_text(CONFIG_YAML.format(name=self.name))

    # -- low level ----------------------------------------------------------------------

    def event(self, type_: str, **fields: Any) -> dict:
        self.t += 0.5
        ev = {"v": 1, "seq": self.seq, "t": self.t, "type": type_, **fields}
        self.seq += 1
        self.write_raw((json.dumps(ev) + "\n").encode(), "events.jsonl")
        return ev

    def write_raw(self, data: bytes, file: str = "events.jsonl") -> None:
        fd = os.open(self.dir / file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    # -- event types --------------------------------------------------------------------

    def start(self, resume_epoch: int = 0, epochs: int | None = None, **extra: Any) -> dict:
        """``pid`` defaults to null: no process to check, so liveness stays unknown."""
        if epochs is not None:
            self.live["epochs"] = epochs
        if resume_epoch:
            self.step = resume_epoch * self.steps_per_epoch
        return self.event(
            "start", name=self.name, run_dir=str(self.dir), pid=extra.pop("pid", None), device="cpu",
            resumed=resume_epoch > 0, resume_epoch=resume_epoch, epochs=self.live["epochs"],
            steps_per_epoch=self.steps_per_epoch, batch_size=4, params=123456, synthetic=True,
            data={"synthetic": True}, live=dict(self.live), world_size=1, **extra,
        )

    def step_event(self, epoch: int, loss: float | None = 1.0, **extra: Any) -> dict:
        self.step += 1
        fields = {"epoch": epoch, "step": self.step, "loss": loss, "lr": self.live["lr"],
                  "gamma": self.live["gamma"], "samples_per_s": 100.0, "data_wait": 0.01}
        if loss is None:
            fields["nonfinite"] = ["loss"]
        return self.event("step", **fields, **extra)

    def epoch_event(self, epoch: int, val_f: float | None, best: tuple[float, int] | None = None, **extra: Any) -> dict:
        fields = {
            "epoch": epoch, "step": self.step, "train_loss": 0.5, "train_f": 0.6, "val_loss": 0.55,
            "val_f": val_f, "pooled_f": val_f, "per_class_f": [0.5] * 19, "train_per_class_f": [0.6] * 19,
            "lr": self.live["lr"], "gamma": self.live["gamma"], "alpha": self.live["alpha"],
            "dropout": self.live["dropout"], "epoch_time": 1.0, "eta_s": 10.0, "skipped_steps": 0,
            "epochs": self.live["epochs"],
        }
        if best is not None:
            fields["best_val_f"], fields["best_epoch"] = best
        fields.update(extra)
        return self.event("epoch", **fields)

    def epochs_run(self, first: int, last: int, f_of=lambda e: 0.1 * e, steps: int = 2) -> None:
        best: tuple[float, int] | None = None
        for e in range(first, last + 1):
            for _ in range(steps):
                self.step_event(e)
            f = f_of(e)
            if best is None or f > best[0]:
                best = (f, e)
            self.epoch_event(e, f, best)

    def warning(self, code: str, message: str = "", epoch: int = 1) -> dict:
        return self.event("warning", code=code, message=message or code, epoch=epoch, step=self.step)

    def ack(self, cmd: dict, epoch: int = 1) -> dict:
        changes = {}
        for k, v in (cmd.get("values") or {}).items():
            changes[k] = [self.live.get(k), v]
            self.live[k] = v
        return self.event("ack", id=cmd["id"], cmd=cmd["cmd"], changes=changes, epoch=epoch, step=self.step + 1)

    def nack(self, cmd: dict, reason: str, line: int) -> dict:
        return self.event("nack", id=cmd.get("id"), cmd=cmd.get("cmd"), reason=reason, line=line)

    def end(self, reason: str = "completed", epoch: int = 0, **extra: Any) -> dict:
        return self.event("end", reason=reason, epoch=epoch, best_val_f=extra.pop("best_val_f", None),
                          best_epoch=extra.pop("best_epoch", None), **extra)

    # -- control side -------------------------------------------------------------------

    def command(self, cmd: str, values: dict | None = None, id_: str | None = None, **extra: Any) -> dict:
        c = {"v": 1, "id": id_ or os.urandom(8).hex(), "t": time.time(), "cmd": cmd}
        if values is not None:
            c["values"] = values
        c.update(extra)
        self.write_raw((json.dumps(c) + "\n").encode(), "control.jsonl")
        return c
