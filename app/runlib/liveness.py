"""Is the run alive, ended, crashed or stalled: the status part of :class:`RunState`.

Rules (docs/runlib.md, "Status"):

- ``end.reason`` wins; otherwise 'crashed' when the LATEST attempt's process is known to be gone
  (its exit.json, or a dead pid); 'paused' after ``paused``; 'stalled' when the trainer makes no
  progress (below); 'running' after any event; else 'starting'.
- attempts: each start of a trainer under a supervisor has an attempt id (``SEGWATCH_ATTEMPT``),
  written into exit.json and into the trainer's ``start`` event. exit.json marks the run only
  when it belongs to the latest attempt: same attempt id as the last ``start`` (or, while a
  ``segwatch resume`` waits for its start event, as the attempt it launched). Without ids (run
  directories written before attempts existed) the times decide: an exit.json older than the
  last ``start`` is an earlier process's.
- stall: a run that is 'running' (not paused, process not known gone) and has written no event
  for longer than ``stall_bound()`` is 'stalled'. The bound follows the run's own cadence::

      bound = max(STALL_K x longest recent gap, floor)

  where a gap is the time between two consecutive events of one trainer process (a pause, from
  ``paused`` to ``resumed``, and start-up, from ``start`` to the process's first ``step``, are
  not gaps), "recent" means the
  epoch in progress plus the last ``EPOCHS_KEPT`` epochs (each epoch's gaps include its
  validation and checkpoint) plus the last ``EPOCHS_KEPT`` gaps that ended in an ``epoch``
  event (a validation, even when ``eval_every`` skips it in most epochs), and ``floor`` is
  ``STALL_FLOOR_S`` (30 s; ``$SEGWATCH_STALL_FLOOR_S`` overrides it). While the record holds no
  ``epoch`` event yet (validation never measured) or the process is starting up (no ``step``
  since its ``start``: loader workers, the first batch, ``torch.compile``), the floor is
  ``STALL_FIRST_X`` times larger.
  Events resuming make the state return by itself. A stall's own gap counts like any other (a
  slow first validation must not stall every epoch), so after a long hang the bound stays larger
  for the next ``EPOCHS_KEPT`` epochs.
- what the process itself shows (a trainer on this machine, Linux ``/proc``: :class:`Activity`):
  a process that is *stopped* (state T or t: ``kill -STOP``, Ctrl-Z, a debugger) is stalled once
  no event came for ``min(STOPPED_GRACE_S, bound)``, whatever the cadence; during start-up
  (before the process's first step, when no cadence is known) a process that is *busy* (running
  now, or its CPU time grew within the last ``floor`` seconds: building data, class frequencies,
  ``torch.compile`` on a loaded machine) is not stalled until ``STARTUP_CAP_S``. After start-up the
  cadence alone decides: a hung collective can spin a CPU.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from typing import Any

from .process import Restart
from .records import END_STATUS, describe_exit
from .safeio import clean

STALL_K = 4.0
STALL_FLOOR_S = 30.0
STALL_FIRST_X = 4.0
EPOCHS_KEPT = 2
STOPPED_GRACE_S = 5.0  # a stopped process this long without an event is stalled
STARTUP_CAP_S = 30 * 60.0  # a busy start-up (no step yet) counts as progress this long at most


def stall_floor() -> float:
    raw = os.environ.get("SEGWATCH_STALL_FLOOR_S", "")
    try:
        v = float(raw) if raw else STALL_FLOOR_S
    except ValueError:
        return STALL_FLOOR_S
    return v if 0 < v < 1e7 else STALL_FLOOR_S


class Cadence:
    """The gaps between a trainer's consecutive events, kept per epoch (bounded memory)."""

    def __init__(self) -> None:
        self.prev_t: float | None = None
        self.current = 0.0  # longest gap in the epoch in progress
        self.epochs: deque = deque(maxlen=EPOCHS_KEPT)  # longest gap of each recent epoch
        self.validations: deque = deque(maxlen=EPOCHS_KEPT)  # recent gaps that ended in an epoch event
        self.started_up = True  # the process now writing has logged its first step (False after a start)
        self.epoch_seen = False

    def feed(self, typ: Any, t: float | None) -> None:
        if typ == "start":
            self.prev_t, self.started_up = t, False
            return
        if t is None:
            return
        if not self.started_up:  # start-up: until the process's first step (or epoch) event
            self.started_up = typ in ("step", "epoch")
            self.prev_t = t
            if typ == "epoch":
                self.epoch_seen = True
            return
        if self.prev_t is not None and typ != "resumed":  # paused -> resumed is a person's choice
            gap = t - self.prev_t
            if gap >= 0:
                self.current = max(self.current, gap)
                if typ == "epoch":
                    self.validations.append(gap)
        self.prev_t = t
        if typ == "epoch":
            self.epoch_seen = True
            self.epochs.append(self.current)
            self.current = 0.0

    def longest(self) -> float:
        return max([self.current, *self.epochs, *self.validations])

    def bound(self) -> float:
        floor = stall_floor()
        if not self.epoch_seen or not self.started_up:
            floor *= STALL_FIRST_X
        return max(STALL_K * self.longest(), floor)


class Activity:
    """What /proc showed of the trainer process at the last refreshes (RunState.observe_process)."""

    def __init__(self) -> None:
        self.state: str | None = None  # 'R' running, 'S' sleeping, 'D' disk, 'T'/'t' stopped, ...
        self.cpu_s: float | None = None
        self.busy_at: float | None = None  # wall time of the last sample whose CPU time had grown

    def observe(self, sample: tuple[str, float] | None, now: float) -> None:
        if sample is None:  # not a process on this machine, or gone: nothing known
            self.state = self.cpu_s = self.busy_at = None
            return
        state, cpu = sample
        if self.cpu_s is not None and cpu > self.cpu_s:
            self.busy_at = now
        self.state, self.cpu_s = state, cpu

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")

    def busy(self, now: float, within: float) -> bool:
        return self.state == "R" or (self.busy_at is not None and now - self.busy_at <= within)


def exit_applies(exit_info: dict | None, start: dict | None, pending: Restart | None) -> bool:
    """Does exit.json describe the latest attempt of the run (not an earlier process's)?"""
    if not isinstance(exit_info, dict):
        return False
    attempt, t = exit_info.get("attempt"), exit_info.get("t")
    if pending is not None:  # segwatch resume launched attempt pending.attempt; its start is not read yet
        if isinstance(attempt, str) and isinstance(pending.attempt, str):
            return attempt == pending.attempt
        return isinstance(t, (int, float)) and t >= pending.since
    if start is None:
        return True
    started_attempt = start.get("attempt")
    if isinstance(attempt, str) and isinstance(started_attempt, str):
        return attempt == started_attempt
    started = start.get("t")
    return not (isinstance(t, (int, float)) and isinstance(started, (int, float)) and t < started)


class StatusMixin:
    """``status``, ``status_detail()``, ``crash_reason`` and the stall check of a RunState."""

    clock = staticmethod(time.time)  # replaced in tests that need another "now"

    @property
    def status(self) -> str:
        by_job = self.job.status_for(self) if self.job is not None else None  # a scheduler's word (SLURM)
        if by_job is not None:
            return by_job
        if self.restart_pending is not None:
            return "crashed" if self.exit_info is not None else "starting"
        if self.end is not None:
            return END_STATUS.get(str(self.end.get("reason")), "crashed")
        if self.exit_info is not None or self.process_gone:
            return "crashed"
        if self.events_seen == 0:
            planned = self.plan.get("state")  # a run a plan has not started (app/plan)
            return "queued" if planned == "queued" else "skipped" if planned in ("skipped", "cancelled") else "starting"
        if self.paused:
            return "paused"
        return "stalled" if self.stalled_for() is not None else "running"

    def stall_bound(self) -> float:
        return self.cadence.bound()

    def stalled_for(self) -> float | None:
        """Seconds since the last event when that is past the bound (a stall), else None."""
        if self.last_event_t is None or self.paused or self.end is not None:
            return None
        now = self.clock()
        quiet, bound = now - self.last_event_t, self.cadence.bound()
        if self.activity.stopped and quiet > min(STOPPED_GRACE_S, bound):
            return quiet
        if quiet <= bound or self.starting_busy(now, quiet):
            return None
        return quiet

    def starting_busy(self, now: float, quiet: float) -> bool:
        """Start-up (no step yet) past the bound, but the process visibly works: not a stall."""
        return (not self.cadence.started_up and quiet < STARTUP_CAP_S
                and self.activity.busy(now, stall_floor()))

    def stall_detail(self) -> str:
        """'no event for 42 s (bound 30 s, since 14:03:12); last: step at epoch 2, step 9; py-spy dump --pid 77'."""
        quiet = self.clock() - (self.last_event_t or 0)
        since = time.strftime("%H:%M:%S", time.localtime(self.last_event_t or 0))
        last = self.last_event or {}
        what = str(last.get("type") or "?")
        where = ", ".join(f"{k} {last[k]}" for k in ("epoch", "step") if isinstance(last.get(k), int))
        if what == "step" and self.start and isinstance(self.start.get("steps_per_epoch"), int):
            spe = self.start["steps_per_epoch"]
            if spe and isinstance(last.get("step"), int) and last["step"] % spe == 0:
                what = "step (the epoch's last: validating or checkpointing)"
        out = (f"no event for {_dur(quiet)} (bound {_dur(self.cadence.bound())}, since {since}); "
               f"last: {what}" + (f" at {where}" if where else ""))
        pid = (self.start or {}).get("pid")
        if self.activity.stopped:
            cont = f"kill -CONT {pid}" if isinstance(pid, int) else "kill -CONT"
            out = f"process stopped (SIGSTOP, Ctrl-Z or a debugger: {cont} continues it); " + out
        if isinstance(pid, int) and shutil.which("py-spy"):
            out += f"; see where it hangs: py-spy dump --pid {pid}"
        return out

    @property
    def crash_reason(self) -> str | None:
        if self.status != "crashed":
            return None
        if self.job is not None and self.job.status_for(self) == "crashed":
            return clean(self.job.crash_reason())
        if self.restart_pending is not None:
            return clean(describe_exit(self.exit_info or {}))
        if self.end is not None:
            if self.end.get("reason") != "crashed":
                return f"ended with an unknown reason {self.end.get('reason')!r}"
            return str(self.end.get("error") or "the trainer reported a crash")
        if self.exit_info is not None:
            return clean(describe_exit(self.exit_info))
        return "the trainer process is gone without an end event"

    def status_detail(self) -> str:
        by_job = self.job.detail_for(self) if self.job is not None else None
        if by_job is not None:
            return clean(by_job)
        s = self.status
        if s == "crashed":
            return f"crashed: {self.crash_reason}"
        if s == "stalled":
            return f"STALLED: {self.stall_detail()}"
        if s in ("queued", "skipped"):
            p = self.plan
            why = (p.get("decision") or {}).get("why") or (f"waits for {p['after']}" if p.get("after") else "")
            return f"{s} in plan {p.get('plan')}" + (f": {why}" if why else "")
        where = self.paused_event if self.paused_event and "step" in self.paused_event else self.last_step
        if s == "paused" and where:
            return f"paused at epoch {where.get('epoch')}, step {where.get('step')}"
        if s == "running" and self.last_event_t is not None:
            now = self.clock()
            quiet = now - self.last_event_t
            if quiet > self.cadence.bound() and self.starting_busy(now, quiet):
                return f"running: starting up, no step yet after {_dur(quiet)} (the process is busy)"
        return s


def _dur(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 120:
        return f"{s} s"
    m, sec = divmod(s, 60)
    if m < 120:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"
