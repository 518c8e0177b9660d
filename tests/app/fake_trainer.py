"""A fake trainer for fast UI tests: replays a canned record, answers control commands.

It writes a run directory the way docs/run-directory.md says (config.yaml, meta.json,
trainer.pid, events.jsonl) and answers control.jsonl per docs/control.md, validating ``set``
with the real live-settings table (trainer.core.live). No torch, no model: epochs are a canned curve.

In-process (a thread, for Pilot tests)::

    ft = FakeTrainer(run_dir, epochs=8, history=3, step_delay=0.05).start()
    ...
    ft.stop_thread()

As a process (for kill tests)::

    python tests/app/fake_trainer.py RUN_DIR --epochs 50 --step-delay 0.1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer.core.live import validate  # noqa: E402  (pure Python)

DEFAULT_LIVE = {
    "lr": 3e-4, "gamma": 2.5, "alpha": 0.5, "use_focal": True, "dice_weight": 1.5,
    "use_class_weights": True, "dropout": 0.2, "weight_decay": 1e-4, "warmup_epochs": 0,
    "epochs": 8, "grad_clip": 1.0, "patience": 0, "rotation": 20.0, "scale_range": [0.85, 1.15],
    "hflip": True,
}
SMALL = (2, 4, 5, 6, 7, 8, 9, 10, 11, 12)
BASE_F = (0.93, 0.86, 0.70, 0.2, 0.55, 0.56, 0.50, 0.52, 0.45, 0.44, 0.48, 0.50, 0.58,
          0.82, 0.3, 0.1, 0.0, 0.70, 0.66)


def canned_epoch(e: int, live: dict, scenario: str = "healthy") -> dict:
    """Metrics of epoch ``e`` (1-based) on a smooth, deterministic learning curve."""
    k = 1 - math.exp(-e / 6)
    val_f = round(0.78 * k, 4)
    train_f = round(0.80 * k, 4)
    train_loss = round(1.6 * math.exp(-e / 8) + 0.2, 4)
    val_loss = round(1.65 * math.exp(-e / 8) + 0.25, 4)
    if "overfit" in scenario:
        train_f = round(min(0.99, val_f + 0.25), 4)
        train_loss = round(train_loss * 0.4, 4)
        val_loss = round(0.9 + 0.06 * e, 4)
    small_scale = 1.0
    if "worse" in scenario:  # a change that hurts: lower val F, the small parts most
        val_f, small_scale = round(val_f * 0.93, 4), 0.8
    per = [None if i == 16 else round(min(1.0, b * (val_f / 0.78) * (small_scale if i in SMALL else 1.0)
                                          * (1.0 + 0.01 * ((e + i) % 3))), 4)
           for i, b in enumerate(BASE_F)]
    tper = [None if v is None else round(min(1.0, v * train_f / max(val_f, 1e-6)), 4) for v in per]
    return {"train_loss": train_loss, "val_loss": val_loss, "val_f": val_f, "train_f": train_f,
            "pooled_f": round(val_f - 0.08, 4), "per_class_f": per, "train_per_class_f": tper}


class FakeTrainer:
    def __init__(self, run_dir: str | Path, *, name: str | None = None, epochs: int = 8,
                 steps_per_epoch: int = 4, step_delay: float = 0.0, history: int = 0,
                 hold: bool = True, scenario: str = "healthy", live: dict | None = None,
                 batch_size: int = 8, val_delay: float = 0.0):
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.name
        self.steps_per_epoch = steps_per_epoch
        self.step_delay = step_delay
        self.history = history
        self.hold = hold
        self.scenario = scenario
        self.batch_size = batch_size
        self.val_delay = val_delay  # seconds each epoch "validates" after its steps (commands answered then say so)
        self.phase = ""
        self.live = {**DEFAULT_LIVE, **(live or {}), "epochs": epochs}
        self.seq = -1
        self.step = 0
        self.epoch = 0
        self.best = (None, 0)
        self.paused = False
        self.stopped = False
        self.answered: set[str] = set()
        self.received: list[dict] = []  # every command read, in order (tests inspect it)
        self._ctl_offset = 0
        self._ctl_line = 0
        self._partial = b""
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._stand_in: subprocess.Popen | None = None
        self.pid = os.getpid()

    # --- record ---------------------------------------------------------------------
    def emit(self, type_: str, **fields: Any) -> None:
        self.seq += 1
        ev = {"v": 1, "seq": self.seq, "t": round(time.time(), 4), "type": type_, **fields}
        line = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.run_dir / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _setup(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(
            f"name: {self.name}\ntraining:\n  learning_rate: {self.live['lr']}\n  epochs: {self.live['epochs']}\n"
            f"loss:\n  use_focal: true\n  focal_gamma: {self.live['gamma']}\n  focal_alpha: {self.live['alpha']}\n")
        meta = {"params": 1234567, "device": "cpu", "data": {"synthetic": True}, "pid": self.pid,
                "start_time": time.time(), "argv": ["fake_trainer"]}
        (self.run_dir / "meta.json").write_text(json.dumps(meta))
        (self.run_dir / "trainer.pid").write_text(str(self.pid))
        self.emit("start", name=self.name, run_dir=str(self.run_dir), pid=self.pid, device="cpu",
                  resumed=False, resume_epoch=0, epochs=self.live["epochs"],
                  steps_per_epoch=self.steps_per_epoch, batch_size=self.batch_size, params=1234567,
                  synthetic=True, data={"synthetic": True}, live=dict(self.live), world_size=1)

    # --- control --------------------------------------------------------------------
    def poll_control(self) -> None:
        path = self.run_dir / "control.jsonl"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._ctl_offset:
            return
        with open(path, "rb") as f:
            f.seek(self._ctl_offset)
            data = f.read(size - self._ctl_offset)
        self._ctl_offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            self._ctl_line += 1
            if raw.strip():
                self._answer(raw, self._ctl_line)

    def _answer(self, raw: bytes, line: int) -> None:
        try:
            cmd = json.loads(raw)
        except ValueError:
            self.emit("nack", id=None, cmd=None, reason=f"line {line} is not valid JSON", line=line)
            return
        cid, name = cmd.get("id"), cmd.get("cmd")
        if cid in self.answered:
            self.emit("warning", code="duplicate_command", message=f"id {cid} repeated on line {line}",
                      epoch=self.epoch + 1, step=self.step)
            return
        self.answered.add(cid)
        self.received.append(cmd)
        # as the trainer: set/pause/resume apply from the next step, stop/checkpoint after the last one
        at = {"epoch": self.epoch + 1, "step": self.step + 1, **({"phase": self.phase} if self.phase else {})}
        done = {**at, "step": self.step}
        if name == "set":
            clean, why = validate(cmd.get("values"), self.live, self.epoch + 1)
            if why:
                self.emit("nack", id=cid, cmd=name, reason=why, line=line)
                return
            changes = {k: [self.live.get(k), v] for k, v in clean.items()}
            self.live.update(clean)
            self.emit("ack", id=cid, cmd=name, changes=changes, **at)
        elif name in ("pause", "resume"):
            self.emit("ack", id=cid, cmd=name, changes={}, **at)
            if (name == "pause") != self.paused:
                self.paused = name == "pause"
                self.emit("paused" if self.paused else "resumed", id=cid, epoch=self.epoch + 1, step=self.step)
        elif name == "stop":
            self.emit("ack", id=cid, cmd=name, changes={}, **done)
            self.stopped = True
        elif name == "checkpoint":
            self.emit("ack", id=cid, cmd=name, changes={}, **done)
            self.emit("checkpoint", kind="last", path="checkpoints/last.pt", epoch=self.epoch, step=self.step)
        else:
            self.emit("nack", id=cid, cmd=name, reason=f"unknown command {name!r}", line=line)

    # --- training loop --------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.poll_control()
            if self.stopped or self._quit.is_set():
                return
            left = end - time.monotonic()
            if left <= 0 and not self.paused:
                return
            time.sleep(min(0.02, max(left, 0.02)))

    def _epoch(self, e: int, delay: float) -> None:
        for _ in range(self.steps_per_epoch):
            if delay:
                self._sleep(delay)
            if self.stopped or self._quit.is_set():
                return
            self.step += 1
            m = canned_epoch(e, self.live, self.scenario)
            loss = round(m["train_loss"] * (1.05 - 0.02 * (self.step % 4)), 4)
            self.emit("step", epoch=e, step=self.step, loss=loss, lr=self.live["lr"], gamma=self.live["gamma"],
                      samples_per_s=123.4, data_wait=0.05)
        if self.val_delay and delay:  # validating: commands are still answered (phase "validation")
            self.phase = "validation"
            self._sleep(self.val_delay)
            self.phase = ""
        m = canned_epoch(e, self.live, self.scenario)
        if self.best[0] is None or m["val_f"] > self.best[0]:
            self.best = (m["val_f"], e)
        total = self.live["epochs"]
        self.epoch = e
        self.emit("epoch", epoch=e, step=self.step, **m, lr=self.live["lr"], gamma=self.live["gamma"],
                  alpha=self.live["alpha"], dropout=self.live["dropout"], epoch_time=12.5,
                  eta_s=12.5 * (total - e), best_val_f=self.best[0], best_epoch=self.best[1],
                  skipped_steps=0, epochs=total)
        self.emit("checkpoint", kind="last", path="checkpoints/last.pt", epoch=e, step=self.step)

    def run(self) -> int:
        self._setup()
        e = 0
        while e < self.live["epochs"] and not self.stopped and not self._quit.is_set():
            e += 1
            self._epoch(e, 0.0 if e <= self.history else self.step_delay)
        if self.hold:
            while not self.stopped and not self._quit.is_set():
                self._sleep(0.05)
        if self._quit.is_set() and not self.stopped:
            return 0  # thread asked to go away: leave the record as a killed run would
        reason = "stopped" if self.stopped else "completed"
        self.emit("end", reason=reason, epoch=self.epoch, best_val_f=self.best[0], best_epoch=self.best[1])
        try:
            (self.run_dir / "trainer.pid").unlink()
        except FileNotFoundError:
            pass
        return 0

    # --- thread helpers ---------------------------------------------------------------
    def start(self) -> "FakeTrainer":
        # Run.process_alive() wants a live pid whose command line says "trainer": in a thread,
        # stand in with a sleeping process of that name (kill it to simulate a dead trainer).
        self._stand_in = subprocess.Popen(["fake-trainer-stand-in", "3600"], executable=shutil.which("sleep") or "/bin/sleep",
                                          stdin=subprocess.DEVNULL)
        self.pid = self._stand_in.pid
        self._thread = threading.Thread(target=self.run, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop_thread(self, timeout: float = 5.0) -> None:
        self._quit.set()
        if self._thread:
            self._thread.join(timeout)
        self.kill_stand_in()

    def kill_stand_in(self) -> None:
        if self._stand_in is not None and self._stand_in.poll() is None:
            self._stand_in.kill()
            self._stand_in.wait()



class FakeTrainers:
    """Fake trainers started in threads under one folder, with shared defaults; ``stop()`` ends every
    one (the Pilot tests' ``fake`` fixture, tests/app/conftest.py)::

        trainers = FakeTrainers(tmp_path, epochs=30, history=3, step_delay=0.3)
        ft = trainers("alpha", step_delay=0.1)  # tmp_path/alpha, started
        ...
        trainers.stop()
    """

    def __init__(self, root: Path, **defaults: Any) -> None:
        self.root = Path(root)
        self.defaults = defaults
        self.started: list[FakeTrainer] = []

    def __call__(self, name: str = "alpha", **kw: Any) -> FakeTrainer:
        ft = FakeTrainer(self.root / name, **{**self.defaults, **kw}).start()
        self.started.append(ft)
        return ft

    def stop(self) -> None:
        for ft in self.started:
            ft.stop_thread()

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=4)
    p.add_argument("--step-delay", type=float, default=0.0)
    p.add_argument("--history", type=int, default=0)
    p.add_argument("--no-hold", action="store_true")
    p.add_argument("--scenario", default="healthy")
    a = p.parse_args(argv)
    return FakeTrainer(a.run_dir, epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, step_delay=a.step_delay,
                       history=a.history, hold=not a.no_hold, scenario=a.scenario).run()


if __name__ == "__main__":
    sys.exit(main())
