"""One run directory, followed live: its state, its process, and the commands sent to it."""

from __future__ import annotations

import fcntl
import json
import os
import stat as stat_mod
import time
import uuid
from pathlib import Path
from typing import Any

from app.launchers.jobinfo import job_info
from trainer.core.live import COMMANDS, validate

from . import process, runfiles, safeio
from .process import Probe, Restart
from .state import ENDED, RunState
from .tail import JsonlTail, Skipped

SKIM_MIN = 16 << 20  # a record at least this long when first read is skimmed up to its tail
SKIM_TAIL = 1 << 20  # bytes at the end always parsed in full (and at least SKIM_EPOCHS epoch lines)
SKIM_EPOCHS = 4  # epochs at the end parsed in full: the stall cadence keeps liveness.EPOCHS_KEPT
SKIM_SCAN_MAX = 64 << 20  # never look further back than this for those epochs


class ControlFileError(ValueError):
    """control.jsonl cannot be written safely (the trainer would ignore it)."""


class Run:
    """A run directory: ``refresh()`` it, read ``state``, ``send()`` commands.

    ``generation`` grows each time the state was rebuilt from scratch (a record file was
    truncated or replaced): a viewer redraws everything when it changes.
    """

    def __init__(self, run_dir: str | os.PathLike, *, max_steps: int = 2000):
        self.path = Path(run_dir)
        self.name = safeio.clean(self.path.name)
        self._max_steps = max_steps
        self.state = RunState(self.path, max_steps=max_steps)
        self.events_tail = JsonlTail(self.path / "events.jsonl")
        self.control_tail = JsonlTail(self.path / "control.jsonl")
        self.generation = 0
        self._restart: Restart | None = None

    @property
    def control_path(self) -> Path:
        return self.path / "control.jsonl"

    # -- reading ------------------------------------------------------------------------

    def refresh(self, max_bytes: int | None = None) -> list[dict]:
        """Read what is new in events.jsonl and control.jsonl, apply it, check the process.

        Returns the new events (after a rebuild: every event of the record). ``max_bytes``
        bounds the bytes read per file in this call (the rest comes next time).
        """
        st = self.state
        # Probe the process BEFORE reading: if it was already gone, its end event (written
        # before it exited) is in what we read next, so a clean exit is never seen as a crash.
        probe = self._probe() if st.end is None or st.restart_pending is not None else None
        if self.events_tail.offset == 0:
            self._plan_skim()
        events = self.events_tail.read_new(max_bytes)
        commands = self.control_tail.read_new_numbered(max_bytes)
        if self.events_tail.was_reset or self.control_tail.was_reset:
            return self._rebuild(max_bytes)
        start_before = st.start
        # Commands first: every answer read above refers to a line already in control.jsonl.
        for line_no, cmd in commands:
            st.apply_command(cmd, line_no)
        events = self._apply_events(st, events)
        if st.start is not start_before and probe is not None:
            # A (re)start was just read: the probe may have looked at another process (an old
            # pid file, or none yet). Probe again; a process found gone only now may have ended
            # cleanly after our read, so that is judged at the next refresh.
            post = self._probe()
            if post.pid != probe.pid:
                probe = post._replace(alive=None if post.alive is False else post.alive)
        self._after_read(probe)
        return events

    def _rebuild(self, max_bytes: int | None = None) -> list[dict]:
        self.events_tail.rewind()
        self.control_tail.rewind()
        self.state = RunState(self.path, max_steps=self._max_steps)
        self.state.expect_restart(self._restart)
        self.generation += 1
        probe = self._probe()
        self._plan_skim()
        events = self.events_tail.read_new(max_bytes)
        for line_no, cmd in self.control_tail.read_new_numbered(max_bytes):
            self.state.apply_command(cmd, line_no)
        events = self._apply_events(self.state, events)
        self._after_read(probe)
        return events

    @staticmethod
    def _apply_events(st: RunState, events: list[dict]) -> list[dict]:
        """Apply events (and skimmed step lines: counted); return the events proper."""
        out = []
        for ev in events:
            if type(ev) is Skipped:
                st.skip_steps(ev.n)
                continue
            st.apply(ev)
            out.append(ev)
        return out

    def _plan_skim(self) -> None:
        """Attaching to a long record: its step lines are skimmed (not parsed, one in
        tail.SKIM_KEEP kept for the plot) up to the last SKIM_TAIL bytes or the last SKIM_EPOCHS
        epoch lines, whichever starts earlier; everything else is parsed (docs/run-directory.md)."""
        tail = self.events_tail
        tail.skim_until = 0
        try:
            fd = safeio.open_fd(tail.path)
        except (safeio.Refused, OSError):
            return  # the read itself says why
        try:
            size = os.fstat(fd).st_size
            if size < SKIM_MIN:
                return
            pos, found, marks = size, 0, (b'"type":"epoch"', b'"type": "epoch"')
            while pos > 0 and size - pos < SKIM_SCAN_MAX and (found < SKIM_EPOCHS or size - pos < SKIM_TAIL):
                start = max(0, pos - (1 << 20))
                chunk = os.pread(fd, pos - start + 32, start)  # overlap: a mark cut at the border
                found += sum(chunk.count(m, 0, pos - start + len(m) - 1) for m in marks)
                pos = start
            tail.skim_until = max(0, pos - 1)
        finally:
            os.close(fd)

    def _after_read(self, probe: Probe | None) -> None:
        st = self.state
        st.observe_reading(bad_event_lines=self.events_tail.bad_lines, bad_control_lines=self.control_tail.bad_lines,
                           read_note=self._read_note(),
                           job=job_info(self.path))  # launcher hook: None for local runs (no slurm.json)
        if not self.state.config and (self.path / "config.yaml").exists():
            st.load_files()
        elif st.events_seen == 0:
            st.load_plan()  # queued by a plan: its state (queued -> skipped) may change
        if st.restart_pending is None:
            self._restart = None
        if (st.end is not None and st.restart_pending is None) or probe is None or self.events_tail.more:
            return  # finished, or not caught up yet: judge liveness later
        st.observe_process(probe)  # exit.json of an earlier attempt does not count (docs/run-directory.md, "Attempts")

    def _read_note(self) -> str:
        """One line on what could not be read (shown next to the unreadable count), or ''."""
        ev, st = self.events_tail, self.state
        notes = []
        if ev.missing and (st.events_seen or ev.resets):
            notes.append("events.jsonl is gone (deleted?): showing what was read before")
        if ev.resets:
            notes.append(f"events.jsonl was truncated or replaced {ev.resets}x; rebuilt from the new file")
        last = ev.last_error or self.control_tail.last_error
        if last and (ev.bad_lines or self.control_tail.bad_lines):
            notes.append(f"last: {'events' if ev.last_error else 'control'}.jsonl {last}")
        elif st.bad_events and st.last_error:
            notes.append(f"last: {st.last_error}")
        notes += [t.refused for t in (ev, self.control_tail) if t.refused]
        notes += [why for why in st.file_notes.values()]
        return safeio.clean("; ".join(notes))

    def expect_restart(self, since: float, after_seq: int | None, attempt: str | None = None) -> None:
        """A new trainer process (attempt id ``attempt``) was started on this run at ``since``
        (``segwatch resume``).

        Until its own ``start`` event (seq > ``after_seq``, the last seq before the launch) is
        read, the old record's end, an earlier attempt's exit.json and its dead pid do not count:
        the status is 'starting', or 'crashed' if the new attempt's supervisor writes exit.json
        first.
        """
        self._restart = Restart(after_seq, float(since), attempt)
        self.state.expect_restart(self._restart)

    def _probe(self) -> Probe:
        return process.probe(self.path, self.state.start, self.state.meta.get("host"), self.state.file_notes)

    def read_exit_info(self) -> dict | None:
        """exit.json written by the supervisor when the trainer process ended, or None."""
        return process.read_exit_info(self.path, self.state.file_notes)

    def pid(self) -> int | None:
        """The trainer's pid: trainer.pid, else the last start event's ``pid``."""
        return process.trainer_pid(self.path, self.state.start)

    def process_alive(self, pid: int | None = None) -> bool | None:
        """Is the trainer's process alive (app.runlib.process.process_alive); None if unknown."""
        return process.process_alive(self.pid() if pid is None else pid, self.state.meta.get("host"))

    def stderr_tail(self, n: int = 5, max_bytes: int = 64 * 1024) -> list[str]:
        """The last ``n`` non-blank lines of stderr.log, read backwards from its end, cleaned."""
        if n <= 0:
            return []
        return runfiles.stderr_tail(self.path, n, self.state.file_notes, max_bytes)

    # -- commanding -----------------------------------------------------------------------

    def send(self, cmd: str, values: dict | None = None, *, reason: str = "", source: str = "cli") -> str:
        """Append one command to control.jsonl and return its id.

        ``set`` values are checked first with ``trainer.core.live.validate`` against the live
        settings in force; a refusal raises ``ValueError(reason)`` and nothing is written.
        """
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r} (allowed: {', '.join(COMMANDS)})")
        line: dict[str, Any] = {"v": 1, "id": uuid.uuid4().hex, "t": time.time(), "cmd": cmd}
        if cmd == "set":
            clean, problem = validate(values, self.state.live, self.state.epoch_in_progress())
            if problem:
                raise ValueError(problem)
            line["values"] = clean
        elif values:
            raise ValueError(f"'{cmd}' takes no values")
        if reason:
            line["reason"] = str(reason)
        if source:
            line["source"] = str(source)
        try:
            data = (json.dumps(line, separators=(", ", ": "), allow_nan=False) + "\n").encode("utf-8")
        except ValueError as e:  # NaN somewhere validate let through (it should not)
            raise ValueError(f"cannot encode the command: {e}") from None
        append_line(self.control_path, data)
        return line["id"]

    def answer(self, cmd_id: str) -> dict | None:
        adj = self.state.adjustment(cmd_id)
        return adj.answer if adj is not None else None

    def wait_for_answer(self, cmd_id: str, timeout: float, poll: float = 0.05) -> dict | None:
        """Refresh until the ack/nack for ``cmd_id`` is read; None on timeout.

        Returns early (None) when the run has ended or crashed without answering.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self.refresh()
            ans = self.answer(cmd_id)
            if ans is not None:
                return ans
            if self.state.status in ENDED and not self.events_tail.more:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(poll, left))


LOCK_WAIT_S = 2.0


def _take_turn(fd: int) -> None:
    """An exclusive flock on control.jsonl, released when ``fd`` closes.

    Without it two concurrent senders race: one's pread can see the other's line half copied
    in, take it for a torn line and add a newline of its own (a stray empty line). Bounded: a
    lock held by someone else for longer than ``LOCK_WAIT_S`` (a stuck or hostile process), or a
    filesystem without locks, leaves the single O_APPEND write, which is atomic on its own.
    """
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)
        except OSError:  # ENOLCK and friends: no locks here
            return


def append_line(path: Path, data: bytes) -> None:
    """Append ``data`` (one whole line) with a single write() on an O_APPEND fd, mode 0600.

    Only to a regular file (never through a symbolic link, never into a FIFO: ControlFileError).
    When the file does not end in a newline (a writer died mid-line), ``data`` is preceded by
    one, so the torn fragment stays a line of its own and never merges with this command
    (docs/control.md).
    """
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
    try:
        fd = safeio.open_fd(path, flags, 0o600)
    except safeio.Refused as e:
        raise ControlFileError(
            f"{path} {e.why}: refusing to write a command there (the trainer reads only a regular "
            "control.jsonl); remove it, then send the command again") from None
    try:
        _take_turn(fd)  # the last-byte check and the append are one step among segwatch writers
        st = os.fstat(fd)
        if st.st_mode & (stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            raise ControlFileError(
                f"{path} is writable by group or others (mode {oct(st.st_mode & 0o777)}): the trainer "
                "ignores it; check its contents, then run chmod 600 on it"
            )
        if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
            data = b"\n" + data  # never merge into a torn last line
        n = os.write(fd, data)
        if n != len(data):  # a short write on a regular file: disk full
            raise OSError(f"{path}: short write ({n} of {len(data)} bytes); the disk may be full")
    finally:
        os.close(fd)
