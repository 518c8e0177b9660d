"""The tail worker: one thread owns the runs, reads their records, sends their commands.

Everything that touches a ``Run`` happens on this thread (``refresh`` and ``send``), so no lock
guards the run state. What the UI sees is a :class:`~app.snapshot.RunView` per run, built here
and handed over through a slot: a flood of events leaves at most one pending "runs changed"
message, and the UI takes the newest views when it handles it.

The records are read every ``min(interval, READ_EVERY)`` seconds (an idle read is two ``stat``
calls, ~40 us), so an epoch, an answer to a command or a status change reaches the screen within
about 0.1 s. A change that is only more ``step`` events is published at most once per
``max(interval, STEP_EVERY)`` seconds: a flood of step events costs at most one redraw a second
per run, whatever the event rate (bench/tui_load.py, bench/tui_latency.py).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from app import gpu as gpu_mod
from app.launch import LaunchSpec, reap
from app.notify import Notifier, end_detail
from app.runlib import ENDED
from app.snapshot import RunView, build_view

GPU_EVERY = 2.0  # seconds between GPU queries
READ_EVERY = 0.1  # seconds between reads of the records (at most; --interval may be shorter)
STEP_EVERY = 1.0  # seconds between redraws caused by step events alone (at least; or --interval)
READ_SLICE = 4 << 20  # bytes of a record parsed at once while catching up


@dataclass
class Command:
    index: int
    cmd: str
    values: dict | None
    reason: str
    future: Future


class Watcher:
    def __init__(self, runs: Sequence[Any], rules: Sequence[Any], *, interval: float = 0.25,
                 gpu: bool = True, specs: Sequence[LaunchSpec] = ()):
        self.runs = list(runs)
        self.rules = list(rules)
        self.interval = interval
        self.gpu = gpu
        self.specs = list(specs)
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._latest: dict[int, RunView] = {}
        self._posted = False
        self._prints: list[tuple] = [None] * len(self.runs)
        self._published_t: list[float] = [0.0] * len(self.runs)
        self._gpu: list[dict | None] = [None] * len(self.runs)
        self._gpu_t = 0.0
        self.errors: list[str] = []
        self.ticks = 0
        self.notifier = Notifier()
        self._alerts: list[dict] = []  # events for a notification, taken by the UI with take_alerts
        self._views: list[RunView | None] = [None] * len(self.runs)  # the last view built of each run

    # --- called from the UI thread ---------------------------------------------------
    def submit(self, index: int, cmd: str, values: dict | None = None, reason: str = "") -> Future:
        """Queue a command for run ``index``; the future resolves to its id or raises ValueError."""
        fut: Future = Future()
        self._queue.put(Command(index, cmd, values, reason, fut))
        self._wake.set()
        return fut

    def take(self) -> dict[int, RunView]:
        """The newest view of each run that changed since the last call."""
        with self._lock:
            out, self._latest, self._posted = self._latest, {}, False
        return out

    def take_alerts(self) -> list[dict]:
        """Notification events (app.notify) since the last call."""
        with self._lock:
            out, self._alerts = self._alerts, []
        return out

    def _baseline(self, i: int, complete: bool) -> None:
        """Nothing new to draw, but the record is now read to its end: the last view (current,
        since nothing but steps changed) is the run's baseline for notifications."""
        if complete and self._views[i] is not None and not self.notifier.has_baseline(i):
            self._notice(i, self._views[i], True)

    def _notice(self, i: int, view: RunView | None, complete: bool) -> None:
        if view is None:
            return
        act = view.actions[0] if view.actions else None
        action = str((act.get("text") if isinstance(act, dict) else getattr(act, "text", "")) or "") if act else ""
        detail = view.status_detail if view.status == "stalled" else ""
        if view.over:
            detail = end_detail(view)
        evs = self.notifier.observe(i, name=view.name, status=view.status, colour=view.colour, epoch=view.epoch,
                                    detail=detail, action=action, summary=view.summary, run_dir=view.run_dir,
                                    complete=complete)
        if evs:
            with self._lock:
                self._alerts.extend(evs)

    def poke(self) -> None:
        self._wake.set()

    # --- the worker thread --------------------------------------------------------------
    def loop(self, cancelled: Callable[[], bool], notify: Callable[[], None]) -> None:
        while not cancelled():
            self.tick(notify)
            self._wake.wait(min(self.interval, READ_EVERY))
            self._wake.clear()

    def tick(self, notify: Callable[[], None] | None = None) -> bool:
        """One round: send queued commands, read every record, publish what changed."""
        self.ticks += 1
        self._drain()
        if self.specs:
            reap(self.specs)
        self._poll_gpu()
        changed = False
        for i, run in enumerate(self.runs):
            try:
                # in slices: attaching to a long record keeps one slice of parsed events in
                # memory, not the whole file (1 M events: 1.5 GB -> see bench/RESULTS.md)
                run.refresh(max_bytes=READ_SLICE)
                catch_up = time.monotonic() + 2.0  # then show how far it got, and go on next tick
                while (run.events_tail.more or run.control_tail.more) and time.monotonic() < catch_up:
                    run.refresh(max_bytes=READ_SLICE)
                st = run.state
                complete = not (run.events_tail.more or run.control_tail.more)
                # every event but a step (epoch, answer, warning, end...) is shown at once
                major = (getattr(run, "generation", 0), st.status, st.events_seen - st.steps_seen,
                         len(st.adjustments), len(st.pending()), st.bad_lines, st.crash_reason,
                         _gpu_key(self._gpu[i]), getattr(st, "read_note", ""),
                         int((st.stalled_for() or 0) // 5))  # a stall's "no event for N s" every 5 s
                fp = (major, st.events_seen)
                if fp == self._prints[i]:
                    self._baseline(i, complete)
                    continue
                now = time.monotonic()
                if (self._prints[i] is not None and major == self._prints[i][0]
                        and now - self._published_t[i] < max(self.interval, STEP_EVERY)):
                    self._baseline(i, complete)
                    continue  # only step events: they go out with the next second's redraw
                view = build_view(i, run, self.rules[i], gpu=self._gpu[i])
                self._views[i] = view
                self._notice(i, view, complete)
                self._prints[i] = fp
                self._published_t[i] = now
            except Exception as e:  # keep watching the other runs
                msg = f"{getattr(run, 'name', i)}: {type(e).__name__}: {e}"
                if msg not in self.errors:
                    self.errors.append(msg)
                continue
            with self._lock:
                self._latest[i] = view
                first = not self._posted
                self._posted = True
            changed = changed or first
        if changed and notify is not None:
            notify()
        return changed

    def _drain(self) -> None:
        while True:
            try:
                c = self._queue.get_nowait()
            except queue.Empty:
                return
            if not c.future.set_running_or_notify_cancel():
                continue
            try:
                run = self.runs[c.index]
                cid = run.send(c.cmd, c.values, reason=c.reason, source="tui")
                run.refresh()  # pick our own line up now: the log shows it pending at once
                self._prints[c.index] = None
            except Exception as e:
                c.future.set_exception(e)
            else:
                c.future.set_result(cid)

    def _poll_gpu(self) -> None:
        if not self.gpu or time.monotonic() - self._gpu_t < GPU_EVERY:
            return
        self._gpu_t = time.monotonic()
        for i, run in enumerate(self.runs):
            st = run.state
            device = str((st.start or {}).get("device") or st.meta.get("device") or "")
            if "cuda" not in device or st.status in ENDED:
                self._gpu[i] = None
                continue
            pid = run.pid()
            devices = (st.start or {}).get("gpus")
            if isinstance(devices, list) and devices:  # every rank's GPU, by UUID
                self._gpu[i] = gpu_mod.gpus_of_run(devices, {pid} if pid else set())
            else:
                one = gpu_mod.gpu_for_pids({pid}) if pid else None
                self._gpu[i] = [one] if one else None


def _gpu_key(g: list | None) -> tuple | None:
    if not g:
        return None
    return tuple((d.get("util"), (d.get("proc_mem") or d.get("mem_used") or 0) >> 24) for d in g)
