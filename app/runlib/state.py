"""A run rebuilt from its record (events.jsonl + control.jsonl), event by event.

Pure data and pure Python: the cockpit and the CLI read these attributes directly. The rules
(docs/runlib.md):

- segment replacement: a ``start`` event with ``resume_epoch = N`` drops every epoch (and step
  point) after N seen so far: the resumed run re-runs them and its points replace the old ones;
- bounded memory: at most ``max_steps`` step points (the older half is thinned by 2 whenever
  the buffer fills, so recent steps stay at full resolution), the last ``max_warnings`` warnings
  (``warning_counts`` counts all of them);
- an answer (ack/nack) may be applied before its command line: it is recorded and completed
  when the command arrives;
- status (app.runlib.liveness): ``end.reason`` wins; otherwise 'crashed' when the latest
  attempt's process is known to be gone, 'paused' after ``paused``, 'stalled' when no event
  came for longer than the run's own cadence allows, 'running' after any event, else 'starting';
- untrusted files: config.yaml, meta.json, plan.json and stderr.log are read through
  app.runlib.safeio (app.runlib.runfiles); refused ones are named in ``file_notes``; every
  string that reaches a person is cleaned of control characters.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from . import runfiles
from .adjustments import AdjustmentLog
from .liveness import Activity, Cadence, StatusMixin, exit_applies
from .process import Probe, Restart, read_proc
from .records import (  # noqa: F401 - re-exported
    END_STATUS, NONFINITE_CODES, Adjustment, StepPoint, _float, _int, _pairs, _unix_time, describe_exit,
    live_from_config_dict, sanitize_event,
)
from .safeio import clean

#: the statuses of a run that has ended (its trainer will write nothing more): the end event's, mapped
ENDED = tuple(dict.fromkeys(END_STATUS.values()))


class RunState(StatusMixin):
    """The run as its files describe it. Feed it with :meth:`apply` and :meth:`apply_command`."""

    def __init__(self, run_dir: str | os.PathLike | None = None, name: str | None = None,
                 *, max_steps: int = 2000, max_warnings: int = 200):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.name = clean(name or (self.run_dir.name if self.run_dir else ""))
        self.max_steps = max(int(max_steps), 4)
        self.max_warnings = max(int(max_warnings), 1)
        self.config: dict = {}
        self.meta: dict = {}
        self.plan: dict = {}  # plan.json, when a plan (app/plan) queued this run
        self.start: dict | None = None
        self.epochs: dict[int, dict] = {}
        self.steps: list[StepPoint] = []
        self.steps_seen = 0
        self.last_step: dict | None = None
        #: the step the latest event of this segment names (step events come every few steps; an
        #: ack, checkpoint or pause says where the trainer really is). The latest, not the highest:
        #: one hostile line must not pin it
        self.reported_step: int | None = None
        self.live: dict = {}
        self.total_epochs: int | None = None
        self.best_val_f: float | None = None
        self.best_epoch: int | None = None
        self.warnings: list[dict] = []
        self.warning_counts: Counter = Counter()
        self.nonfinite_seen = False
        self.checkpoints: dict[str, dict] = {}  # kind ('last' | 'best') -> last checkpoint event
        self.adjustment_log = AdjustmentLog()  # control.jsonl's commands matched with their answers
        self.adjustments: list[Adjustment] = self.adjustment_log.items  # in send order (the log's own list)
        self.paused = False
        self.paused_event: dict | None = None  # the last 'paused' event
        self.end: dict | None = None
        # what Run sees beside the record, taken in by observe_reading / observe_process /
        # expect_restart (no other module writes these):
        self.exit_info: dict | None = None  # exit.json of the latest attempt's trainer process
        # while a restart (segwatch resume) waits for its start event: the old record's end,
        # exit.json and dead pid say nothing about the new process
        self.restart_pending: Restart | None = None
        self.process_gone = False  # the trainer's pid is gone without an end event
        # what the launcher's scheduler says about the run's job (app.launchers.JobInfo; None for
        # local runs): QUEUED with SLURM's reason, or SLURM's word for how it ended
        self.job = None
        self.bad_event_lines = 0  # lines of the record files that could not be read
        self.bad_control_lines = 0
        self.read_note = ""  # what went wrong reading the record, for people
        self.bad_events = 0  # parsed objects whose fields made no sense (skipped)
        self.last_error = ""
        self.events_seen = 0
        self.last_event_t: float | None = None
        # wall seconds of the trainer's earlier segments (each start to the last event read before
        # the next start): a resumed run's wall time is these plus its current segment's
        self.wall_before: float = 0.0
        self.last_seq: int | None = None
        self.last_event: dict | None = None  # the last event read (what the trainer did last)
        self.cadence = Cadence()  # gaps between events: the stall bound (app.runlib.liveness)
        self.activity = Activity()  # what /proc shows of the trainer process
        self.file_notes: dict[str, str] = {}  # file name -> why it was refused (safeio)
        if self.run_dir is not None:
            self.load_files()

    # -- files next to the record -------------------------------------------------------

    def load_files(self) -> None:
        """(Re)load config.yaml and meta.json; missing, broken or refused files leave {}."""
        if self.run_dir is None:
            return
        cfg = runfiles.read_mapping(self.run_dir / "config.yaml", self.file_notes, yaml_file=True)
        if cfg is not None:
            self.config = cfg
        meta = runfiles.read_mapping(self.run_dir / "meta.json", self.file_notes)
        if meta is not None:
            self.meta = meta
        self.load_plan()
        if self.start is None:
            self.live = live_from_config_dict(self.config)
            train = self.config.get("training")
            if isinstance(train, dict) and _int(train.get("epochs")) is not None:
                self.total_epochs = _int(train.get("epochs"))
        if not self.name and isinstance(self.config.get("name"), str):
            self.name = self.config["name"]

    # -- derived ------------------------------------------------------------------------

    @property
    def bad_lines(self) -> int:
        return self.bad_event_lines + self.bad_control_lines

    @property
    def unreadable(self) -> int:
        """Record lines that could not be read plus events whose fields made no sense: skipped."""
        return self.bad_event_lines + self.bad_control_lines + self.bad_events

    def load_plan(self) -> None:
        """(Re)load plan.json: written by a plan's scheduler for the runs it starts or skips."""
        if self.run_dir is not None:
            plan = runfiles.read_mapping(self.run_dir / "plan.json", self.file_notes)
            if plan is not None:
                self.plan = plan

    def history(self) -> list[dict]:
        """Epoch events sorted by epoch (after segment replacement)."""
        return [self.epochs[k] for k in sorted(self.epochs)]

    @property
    def last_epoch(self) -> int:
        """The last completed epoch (0 before the first)."""
        return max(self.epochs) if self.epochs else 0

    def epoch_in_progress(self) -> int:
        ep = self.last_epoch + 1
        if self.last_step and _int(self.last_step.get("epoch")) is not None:
            ep = max(ep, _int(self.last_step["epoch"]))
        if self.total_epochs:
            ep = min(ep, self.total_epochs)
        return ep

    def segment_wall(self) -> float | None:
        """Wall seconds of the current trainer segment: its start event to its end event (the last
        event read while it has none). None without a start or readable times."""
        t0 = _unix_time((self.start or {}).get("t"))
        t1 = _unix_time((self.end or {}).get("t")) or self.last_event_t
        return t1 - t0 if t0 is not None and t1 is not None and t1 >= t0 else None

    def pending(self) -> list[Adjustment]:
        return [a for a in self.adjustments if a.status == "pending"]

    def adjustment(self, cmd_id: str) -> Adjustment | None:
        return self.adjustment_log.by_id.get(cmd_id)

    # -- what Run sees beside the record ---------------------------------------------------

    def expect_restart(self, restart: Restart | None) -> None:
        """A trainer process was launched on this run and its start event is not read yet (None:
        none is awaited); cleared by that start event."""
        self.restart_pending = restart

    def observe_reading(self, *, bad_event_lines: int, bad_control_lines: int, read_note: str, job) -> None:
        """What reading the record's files found: unreadable lines, a note for people, and the
        launcher's job (app.launchers.jobinfo; None for local runs)."""
        self.bad_event_lines, self.bad_control_lines = bad_event_lines, bad_control_lines
        self.read_note, self.job = read_note, job

    def observe_process(self, probe: Probe) -> None:
        """The trainer process as probed (app.runlib.process) with the record caught up: its
        exit.json when it is the latest attempt's, whether it is gone, what /proc shows of it."""
        self.exit_info = probe.exit_info if exit_applies(probe.exit_info, self.start, self.restart_pending) else None
        self.process_gone = probe.alive is False
        sample = read_proc(probe.pid) if probe.alive and probe.pid is not None else None
        self.activity.observe(sample, time.time())

    # -- feeding ------------------------------------------------------------------------

    def apply(self, event: dict) -> None:
        """Apply one events.jsonl object. Objects that make no sense are counted, never raised."""
        if not isinstance(event, dict):
            return
        typ = event.get("type")
        handler = _HANDLERS.get(typ) if isinstance(typ, str) else None
        self.events_seen += 1
        t = _unix_time(event.get("t"))
        if typ == "start" and self.start is not None:
            self.wall_before += self.segment_wall() or 0.0
        if t is not None:
            self.last_event_t = t
        seq = event.get("seq")
        if type(seq) is int:
            self.last_seq = seq
        self.last_event = event
        self.cadence.feed(typ, t)
        if handler is None:
            return
        event, bad = sanitize_event(event)
        if bad:
            self.bad_events += 1
            self.last_error = f"{typ} event seq {event.get('seq')}: wrong type for {', '.join(bad)}; ignored those fields"
        try:
            handler(self, event)
            step = event.get("step")
            if type(step) is int and step >= 0 and typ in _STEP_NAMING:
                self.reported_step = step
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            self.bad_events += 0 if bad else 1  # counted once per event
            self.last_error = f"{event.get('type')} event seq {event.get('seq')}: {type(e).__name__}: {e}"

    def _on_start(self, ev: dict) -> None:
        pending = self.restart_pending
        if pending is not None and (pending.after_seq is None or (type(ev.get("seq")) is int and ev["seq"] > pending.after_seq)):
            self.restart_pending = None  # the restarted trainer's own start
        self.start = ev
        resume = _int(ev.get("resume_epoch")) or 0
        if any(e > resume for e in self.epochs):
            self.epochs = {e: v for e, v in self.epochs.items() if e <= resume}
        if self.steps and self.steps[-1].epoch > resume:
            self.steps = [p for p in self.steps if p.epoch <= resume]
        if self.last_step and (_int(self.last_step.get("epoch")) or 0) > resume:
            self.last_step = None
        self.reported_step = None  # a new segment: its own events say where it is
        self._recompute_best()
        if isinstance(ev.get("live"), dict):
            self.live = dict(ev["live"])
        if _int(ev.get("epochs")) is not None:
            self.total_epochs = _int(ev["epochs"])
        if isinstance(ev.get("name"), str) and ev["name"] and not self.name:  # cleaned by sanitize_event
            self.name = ev["name"]
        self.paused = False
        self.end = None
        self.exit_info = None
        self.process_gone = False
        if self.run_dir is not None:
            self.load_files()  # meta.json is rewritten on resume

    def _recompute_best(self) -> None:
        self.best_val_f, self.best_epoch = None, None
        if not self.epochs:
            return
        last = self.epochs[max(self.epochs)]
        if isinstance(last.get("best_val_f"), (int, float)):
            self.best_val_f, self.best_epoch = float(last["best_val_f"]), _int(last.get("best_epoch"))
            return
        for e in sorted(self.epochs):
            f = self.epochs[e].get("val_f")
            if isinstance(f, (int, float)) and (self.best_val_f is None or f > self.best_val_f):
                self.best_val_f, self.best_epoch = float(f), e

    def _on_step(self, ev: dict) -> None:
        self.last_step = ev
        self.steps_seen += 1
        loss, lr = ev.get("loss"), ev.get("lr")
        step, epoch = ev.get("step"), ev.get("epoch")
        if type(step) is not int:
            step = _int(step) or 0
        if type(epoch) is not int:
            epoch = _int(epoch) or 0
        self.steps.append(StepPoint(step, epoch, _float(loss), _float(lr)))
        if len(self.steps) >= self.max_steps:
            half = len(self.steps) // 2
            self.steps = self.steps[:half:2] + self.steps[half:]
        if self.paused and self.end is None:
            self.paused = False  # a step after 'paused' means it runs again

    def skip_steps(self, n: int) -> None:
        """``n`` step lines of a long record were skimmed, not parsed (app.runlib.tail): counted;
        the time across them is no gap in the stall cadence."""
        self.steps_seen += n
        self.events_seen += n
        self.cadence.prev_t = None
        if self.paused and self.end is None:
            self.paused = False

    def _on_epoch(self, ev: dict) -> None:
        ep = _int(ev["epoch"])
        if ep is None:
            raise ValueError(f"epoch {ev['epoch']!r} is not an integer")
        self.epochs[ep] = ev
        if _int(ev.get("epochs")) is not None:
            self.total_epochs = _int(ev["epochs"])
        if ev.get("nonfinite"):
            self.nonfinite_seen = True
        if isinstance(ev.get("best_val_f"), (int, float)):
            self.best_val_f = float(ev["best_val_f"])
            self.best_epoch = _int(ev.get("best_epoch"))
        else:
            f = ev.get("val_f")
            if isinstance(f, (int, float)) and (self.best_val_f is None or f > self.best_val_f):
                self.best_val_f, self.best_epoch = float(f), ep

    def _on_checkpoint(self, ev: dict) -> None:
        self.checkpoints[str(ev.get("kind"))] = ev

    def _on_warning(self, ev: dict) -> None:
        code = str(ev.get("code"))
        self.warning_counts[code] += 1
        self.warnings.append(ev)
        if len(self.warnings) > self.max_warnings:
            del self.warnings[0]
        if code in NONFINITE_CODES:
            self.nonfinite_seen = True

    def _on_answer(self, ev: dict) -> None:
        adj = self.adjustment_log.answer(ev)
        if adj is not None and adj.status == "applied":
            for k, (_, new) in _pairs(adj.changes):
                self.live[k] = new
                if k == "epochs" and _int(new) is not None:
                    self.total_epochs = _int(new)

    def _on_paused(self, ev: dict) -> None:
        self.paused = True
        self.paused_event = ev

    def _on_resumed(self, ev: dict) -> None:
        self.paused = False

    def _on_end(self, ev: dict) -> None:
        self.end = ev
        self.paused = False
        best, best_epoch = ev.get("best_val_f"), _int(ev.get("best_epoch"))
        if isinstance(best, (int, float)) and best_epoch is not None and best_epoch >= 1:  # epoch 0: none
            self.best_val_f, self.best_epoch = float(best), best_epoch

    def apply_command(self, cmd: dict, line_no: int) -> None:
        """Apply one control.jsonl object found at 1-based line ``line_no``."""
        self.adjustment_log.command(cmd, line_no)


#: the events whose ``step`` is where the trainer is (a ``start`` has none; an ``end`` is after the last)
_STEP_NAMING = frozenset({"step", "epoch", "checkpoint", "ack", "nack", "paused", "resumed"})

_HANDLERS = {
    "start": RunState._on_start,
    "step": RunState._on_step,
    "epoch": RunState._on_epoch,
    "checkpoint": RunState._on_checkpoint,
    "warning": RunState._on_warning,
    "ack": RunState._on_answer,
    "nack": RunState._on_answer,
    "paused": RunState._on_paused,
    "resumed": RunState._on_resumed,
    "end": RunState._on_end,
}
