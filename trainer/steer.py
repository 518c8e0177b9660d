"""Applying control commands inside the trainer: validation, exactly-once bookkeeping, answers.

The :class:`Steering` object owns the live settings and the set of answered command ids. The
training loop calls :meth:`Steering.poll` at every optimizer step (rank 0 reads the file, every
rank applies the same commands at the same step) and asks it what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainer import live as live_mod
from trainer.control import ControlReader, Incoming
from trainer.record import EventWriter


@dataclass
class Requests:
    """What the commands of one poll asked the loop to do (besides setting values)."""

    pause: bool | None = None  # True: pause, False: resume
    stop: str | None = None  # command id
    checkpoint: str | None = None  # command id
    changed: dict[str, Any] = field(default_factory=dict)


class Steering:
    def __init__(
        self,
        control_path: Path,
        events: EventWriter,
        live: dict[str, Any],
        apply: Callable[[dict[str, Any]], None],
        is_main: bool,
        broadcast: Callable[[list[dict]], list[dict]] | None = None,
    ):
        self.reader = ControlReader(Path(control_path))
        self.events = events
        self.live = dict(live)
        self._apply = apply
        self.is_main = is_main
        self._broadcast = broadcast
        self.answered: set[str] = set()
        self.answered_lines: set[int] = set()  # id-less lines already nacked (resume)
        self.paused = False

    # --- resume ----------------------------------------------------------------------------
    def restore(self, answered_in_checkpoint: list[str], record: list[dict]) -> dict[str, Any]:
        """Rebuild exactly-once state after a resume.

        ``record`` is the existing events.jsonl. Ids answered there or in the checkpoint are
        never answered again; acks the checkpoint does not know about are re-applied silently
        (values are absolute) and returned, so an adjustment is neither repeated nor forgotten.
        """
        in_ckpt = set(answered_in_checkpoint)
        self.answered |= in_ckpt
        replay: dict[str, Any] = {}
        for ev in record:
            if ev.get("type") not in ("ack", "nack"):
                continue
            if ev.get("id"):
                self.answered.add(ev["id"])
            elif isinstance(ev.get("line"), int):
                self.answered_lines.add(ev["line"])
            if ev["type"] == "ack" and ev.get("id") not in in_ckpt:
                for k, (_, new) in (ev.get("changes") or {}).items():
                    if k in live_mod.LIVE_KEYS:
                        replay[k] = new
        if replay:
            self.live.update(replay)
            self._apply(replay)
        return replay

    # --- polling ---------------------------------------------------------------------------
    def read(self) -> list[dict]:
        """Rank 0: new control lines, as plain dicts (broadcastable)."""
        if not self.is_main:
            return []
        incoming, problem = self.reader.poll()
        if problem:
            self.events.emit("warning", code="control_refused", message=f"control ignored: {problem}")
        return [i.to_wire() for i in incoming]

    def poll(self, epoch: int, step: int) -> Requests:
        items = self.read()
        if self._broadcast is not None:
            items = self._broadcast(items)
        return self.handle_items(items, epoch, step)

    def handle_items(self, items: list[dict], epoch: int, step: int) -> Requests:
        """Apply control lines every rank received (rank 0's :meth:`read`, broadcast by the caller)."""
        req = Requests()
        for wire in items:
            self._handle(Incoming.from_wire(wire), epoch, step, req)
        return req

    def _answer(self, kind: str, inc: Incoming, **fields: Any) -> None:
        if inc.id:
            self.answered.add(inc.id)
        else:
            self.answered_lines.add(inc.line)
        if self.is_main:
            self.events.emit(kind, id=inc.id, line=inc.line, **fields)

    def _handle(self, inc: Incoming, epoch: int, step: int, req: Requests) -> None:
        cmd_name = inc.cmd.get("cmd") if inc.cmd else None
        if inc.id and inc.id in self.answered or (not inc.id and inc.line in self.answered_lines):
            if inc.id and self.is_main and inc.line > 0:
                self.events.emit(
                    "warning", code="duplicate_command", epoch=epoch, step=step,
                    message=f"control line {inc.line} repeats id {inc.id}, already answered; not applied again",
                )
            return
        if inc.error:
            self._answer("nack", inc, cmd=cmd_name, reason=inc.error, epoch=epoch, step=step)
            return
        assert inc.cmd is not None
        if cmd_name == "set":
            clean, reason = live_mod.validate(inc.cmd.get("values"), self.live, epoch)
            if reason:
                self._answer("nack", inc, cmd="set", reason=reason, epoch=epoch, step=step)
                return
            changes = {k: [self.live.get(k), v] for k, v in clean.items()}
            self.live.update(clean)
            self._apply(clean)
            req.changed.update(clean)
            self._answer("ack", inc, cmd="set", changes=changes, epoch=epoch, step=step + 1,
                         reason=inc.cmd.get("reason", ""))
        elif cmd_name in ("pause", "resume"):
            want = cmd_name == "pause"
            self._answer("ack", inc, cmd=cmd_name, changes={}, epoch=epoch, step=step + 1,
                         note="" if want != self.paused else f"already {'paused' if want else 'running'}")
            if want != self.paused:
                self.paused = want
                req.pause = want
                if self.is_main:
                    self.events.emit("paused" if want else "resumed", id=inc.id, epoch=epoch, step=step)
        elif cmd_name == "stop":
            self._answer("ack", inc, cmd="stop", changes={}, epoch=epoch, step=step)
            req.stop = inc.id
        elif cmd_name == "checkpoint":
            self._answer("ack", inc, cmd="checkpoint", changes={}, epoch=epoch, step=step)
            req.checkpoint = inc.id
