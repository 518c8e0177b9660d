"""Applying control commands inside the trainer: validation, exactly-once bookkeeping, answers.

The :class:`Steering` object owns the live settings and the set of answered command ids. The
training loop calls :meth:`Steering.poll` at every optimizer step (rank 0 reads the file, every
rank applies the same commands at the same step) and asks it what to do next.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from trainer.core import live as live_mod
from trainer.control import ControlReader, Incoming
from trainer.record import EventWriter


@dataclass
class Requests:
    """What the commands of one poll asked the loop to do (besides setting values)."""

    stop: str | None = None  # command id
    checkpoint: str | None = None  # command id


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
        self.answered_lines: set[int] = set()  # id-less lines already nacked
        self.replayed_lines: set[int] = set()  # lines answered before a resume: passed over silently
        self._replayed_at_reset = 0
        self.deferred: list[dict] = []  # warning fields found while restoring
        self.paused = False
        # "validation" while the trainer validates: answers given then say so (``phase``), so a
        # reader can tell "applied during validation of epoch E" from "applied after step S - 1"
        self.phase = ""

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        """Answers given inside carry ``phase`` (the trainer's validation: docs/control.md)."""
        self.phase = phase
        try:
            yield
        finally:
            self.phase = ""

    # --- resume ----------------------------------------------------------------------------
    def plan_restore(self, answered_in_checkpoint: list[str], record: list[dict], epoch: int = 0) -> dict[str, Any]:
        """What a resumed run must know about the commands answered before (rank 0 reads the
        record; the plan is plain data, broadcast so that every DDP rank applies the same).

        ``record`` is the existing events.jsonl; ``epoch`` the epoch the resumed run starts.
        Ids answered there or in the checkpoint are never answered again, and the control lines
        answered after the checkpoint (``line`` of each answer and duplicate warning) are passed
        over silently when they are read again. Acks the checkpoint does not know about are
        re-applied (values are absolute), after the same validation a live ``set`` gets: a
        record that fails it is not replayed and is reported by its ``seq``.
        """
        in_ckpt = {a for a in answered_in_checkpoint if isinstance(a, str)}
        answered, lines, problems = set(in_ckpt), set(), []
        replay: dict[str, Any] = {}
        current = dict(self.live)
        for ev in record:
            kind = ev.get("type")
            if kind == "warning" and ev.get("code") == "duplicate_command" and _line(ev.get("line")):
                lines.add(ev["line"])
                continue
            if kind not in ("ack", "nack"):
                continue
            cid, line = ev.get("id"), ev.get("line")
            where = f"events.jsonl record seq {ev.get('seq')!r}"
            if cid is not None and not (isinstance(cid, str) and 0 < len(cid) <= 200):
                problems.append(f"{where}: an {kind} whose id is not a string of 1..200 characters; not replayed")
                continue
            if line is not None and not _line(line):
                problems.append(f"{where}: an {kind} whose line is not a positive integer; not replayed")
                continue
            if kind == "ack" and cid not in in_ckpt:
                clean, reason = _replayable(ev.get("changes"), current, epoch)
                if reason:
                    problems.append(f"{where} (ack {cid!r}): {reason}; not replayed")
                    continue
                current.update(clean)
                replay.update(clean)
            if cid:
                answered.add(cid)
            if line is not None:
                lines.add(line)
        return {"answered": sorted(answered), "lines": sorted(lines), "replay": replay, "problems": problems}

    def apply_restore(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Take over a :meth:`plan_restore` result (every rank); returns the values replayed."""
        self.answered |= set(plan["answered"])
        self.replayed_lines = set(plan["lines"])
        self._replayed_at_reset = self.reader.resets
        replay = dict(plan["replay"])
        if replay:
            self.live.update(replay)
            self._apply(replay)
        self.deferred += [{"code": "replay_refused", "message": m} for m in plan["problems"]]
        return replay

    def restore(self, answered_in_checkpoint: list[str], record: list[dict], epoch: int = 0) -> dict[str, Any]:
        """One process: :meth:`plan_restore` then :meth:`apply_restore`."""
        return self.apply_restore(self.plan_restore(answered_in_checkpoint, record, epoch))

    def adjust_at_start(self, values: dict[str, Any], epoch: int, step: int, source: str) -> dict | None:
        """Apply live values given on the command line of a resume (``--resume DIR --set``) as
        an adjustment of their own: an ``ack`` (cmd ``set``, ``source``) in the record, with an
        id of its own, so the cockpit lists it, later checkpoints keep it and a resume after a
        kill replays it. The values were validated before anything was written."""
        if not values:
            return None
        cid = f"resume-set-{uuid.uuid4().hex[:12]}"
        changes = {k: [self.live.get(k), v] for k, v in values.items()}
        self.live.update(values)
        self._apply(values)
        self.answered.add(cid)
        if self.is_main:
            return self.events.emit("ack", id=cid, line=None, cmd="set", changes=changes, epoch=epoch, step=step + 1,
                                    reason=source, source=source)
        return None

    def take_deferred(self) -> list[dict]:
        """Warnings found while restoring, to be written after the run's ``start`` event."""
        out, self.deferred = self.deferred, []
        return out

    # --- polling ---------------------------------------------------------------------------
    def read(self) -> list[dict]:
        """Rank 0: new control lines, as plain dicts (broadcastable)."""
        if not self.is_main:
            return []
        incoming, problem = self.reader.poll()
        if problem:
            self.events.emit("warning", code="control_refused", message=f"control ignored: {problem}")
        if self.reader.resets != self._replayed_at_reset:  # truncated or replaced: other lines now
            self.replayed_lines.clear()
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
        if self.phase:
            fields["phase"] = self.phase
        if self.is_main:
            self.events.emit(kind, id=inc.id, line=inc.line, **fields)

    def _handle(self, inc: Incoming, epoch: int, step: int, req: Requests) -> None:
        cmd_name = inc.cmd.get("cmd") if inc.cmd else None
        if inc.line in self.replayed_lines and (not inc.id or inc.id in self.answered):
            return  # answered (or reported) before this resume
        if inc.id and inc.id in self.answered or (not inc.id and inc.line in self.answered_lines):
            if inc.id and self.is_main and inc.line > 0:
                self.events.emit(
                    "warning", code="duplicate_command", epoch=epoch, step=step, id=inc.id, line=inc.line,
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
            self._answer("ack", inc, cmd="set", changes=changes, epoch=epoch, step=step + 1,
                         reason=inc.cmd.get("reason", ""))
        elif cmd_name in ("pause", "resume"):
            want = cmd_name == "pause"
            self._answer("ack", inc, cmd=cmd_name, changes={}, epoch=epoch, step=step + 1,
                         note="" if want != self.paused else f"already {'paused' if want else 'running'}")
            if want != self.paused:
                self.paused = want
                if self.is_main:
                    self.events.emit("paused" if want else "resumed", id=inc.id, epoch=epoch, step=step)
        elif cmd_name == "stop":
            self._answer("ack", inc, cmd="stop", changes={}, epoch=epoch, step=step)
            req.stop = inc.id
        elif cmd_name == "checkpoint":
            self._answer("ack", inc, cmd="checkpoint", changes={}, epoch=epoch, step=step)
            req.checkpoint = inc.id


def _line(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _replayable(changes: Any, current: dict[str, Any], epoch: int) -> tuple[dict[str, Any], str | None]:
    """The values of a recorded ack, validated exactly as a live ``set`` command's."""
    if not isinstance(changes, dict):
        return {}, "'changes' is not a mapping"
    if not changes:
        return {}, None  # pause, resume, stop, checkpoint: nothing to re-apply
    values = {}
    for k, pair in changes.items():
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            return {}, f"changes[{k!r}] is not an [old, new] pair"
        values[k] = pair[1]
    return live_mod.validate(values, current, epoch)
