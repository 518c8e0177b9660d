"""`--headless` (and whenever stdout is not a terminal): one readable line per epoch per run.

For nohup and CI logs: no TUI, no colour codes, a flush after every line. Each epoch line says
the run's health status for that epoch (the rules of its phase) and what is wrong, if anything;
adjustments that get answered and status changes (paused, crashed with its reason and the last
lines of stderr, finished) get a line too. Returns when every run has ended (0, or 1 if one
crashed); Ctrl-C / SIGTERM detach and leave the trainers running.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Sequence, TextIO

from app.health import applied_presets, evaluate
from app.notify import Delivery, Notifier, end_detail, end_summary, gate_lines
from app.snapshot import ERROR_HEAD, OVER, build_view, error_lines, fmt_duration
from trainer.datainfo import data_badge, data_line
from trainer.core.live import format_value


def _f(v: Any, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def epoch_line(name: str, ev: dict, verdict: Any, total: int | None, width: int = 0, focal: bool = True) -> str:
    """``focal``: the run uses the focal loss (gamma means nothing otherwise, and is left out)."""
    e = ev.get("epoch")
    bad = [s for s in verdict.signals if s.state in ("warning", "failed")]
    eta = f"  ETA {fmt_duration(ev['eta_s'])}" if isinstance(ev.get("eta_s"), (int, float)) else ""
    line = (
        f"{time.strftime('%H:%M:%S', time.localtime(ev.get('t') or time.time()))} {name:<{width}} "
        f"epoch {e}/{total or ev.get('epochs') or '?'} {verdict.status.upper():<6} {verdict.phase:<6} "
        f"val F {_f(ev.get('val_f'))} (best {_f(ev.get('best_val_f'))}@{ev.get('best_epoch', '-')}) "
        f"train F {_f(ev.get('train_f'))}  loss {_f(ev.get('train_loss'))}/{_f(ev.get('val_loss'))}  "
        f"lr {format_value(ev['lr']) if isinstance(ev.get('lr'), float) else '-'}" + (" " if focal else "")
        + (f"gamma {format_value(ev['gamma']) if ev.get('gamma') is not None else '-'}" if focal else "")
        + eta
    )
    if bad:
        line += "  | " + "; ".join(f"{'FAILED ' if s.state == 'failed' else ''}{s.label}: {s.detail}" for s in bad)
        if verdict.actions:
            first = verdict.actions[0]
            line += (f" -> held back: {first.settling_words()}" if first.settling
                     else f" -> suggest {first.preset}")
    return line


class Follower:
    """Prints what is new in each run; ``poll()`` once per interval."""

    def __init__(self, runs: Sequence[Any], rules: Sequence[Any], out: TextIO, notify_argv: list[str] | None = None):
        self.runs, self.rules, self.out = list(runs), list(rules), out
        self.notifier = Notifier()
        tty = getattr(out, "isatty", lambda: False)()
        # the bell and OSC notifications only on a terminal: a log file stays plain text
        self.delivery = Delivery(self._write_raw if tty else None, notify_argv, self._cmd_failed)
        self.colour: list[str] = ["green"] * len(runs)
        self.advice: list[tuple[str, str]] = [("", "")] * len(runs)  # the last verdict's summary, action
        self.printed: list[set] = [set() for _ in runs]
        self.status: list[str | None] = [None] * len(runs)
        self.answered: list[set] = [set() for _ in runs]
        self.warned: list[int] = [0] * len(runs)
        self.unreadable: list[tuple] = [(0, "")] * len(runs)
        self.width = max([len(r.state.name or r.name) for r in runs] + [4])
        self.data_said: list[dict | None] = [None] * len(runs)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _write_raw(self, seq: str) -> None:
        self.out.write(seq)
        self.out.flush()

    def _cmd_failed(self, text: str) -> None:  # from the command thread: one whole line
        self.say(f"{'':8} notify: {text}")

    def alert(self, ev: dict) -> None:
        self.delivery.send(ev)

    def poll(self) -> None:
        for i, run in enumerate(self.runs):
            try:
                run.refresh()
            except Exception as e:  # keep following the others
                self.say(f"{run.name}: cannot read the record: {type(e).__name__}: {e}")
                continue
            self._report(i, run)

    def _report(self, i: int, run: Any) -> None:
        st = run.state
        name = st.name or run.name
        data = (st.start or {}).get("data")
        if isinstance(data, dict) and data != self.data_said[i]:  # what data it is, once per (re)start
            self.data_said[i] = data
            self.say(f"{'':8} {name:<{self.width}} {data_badge(data)}: {data_line(data)}")
        history = st.history()
        applied = applied_presets(st.adjustments)
        for k, ev in enumerate(history):
            e = ev.get("epoch")
            if e in self.printed[i]:
                continue
            self.printed[i].add(e)
            upto = [w for w in st.warnings if (w.get("epoch") or 0) <= e]
            done = [(p, a) for p, a in applied if isinstance(e, int) and a <= e]  # as it was after epoch e
            v = evaluate(history[:k + 1], self.rules[i], live=st.live, total_epochs=st.total_epochs, warnings=upto,
                         run_state="running", applied=done)
            self.say(epoch_line(name, ev, v, st.total_epochs, self.width, focal=st.live.get("use_focal") is not False))
            self.colour[i] = v.status
            first = v.actions[0] if v.actions else None
            self.advice[i] = (v.summary, "" if first is None else
                              first.text + (f" ({first.settling_words()})" if first.settling else ""))
        for w in st.warnings[self.warned[i]:] if self.warned[i] <= len(st.warnings) else []:
            self.say(f"{'':8} {name:<{self.width}} warning {w.get('code')}: {w.get('message', '')}")
        self.warned[i] = len(st.warnings)
        for a in st.adjustments:
            if a.status != "pending" and a.id not in self.answered[i]:
                self.answered[i].add(a.id)
                self.say(f"{'':8} {name:<{self.width}} adjustment {a.describe()} "
                         + (a.when() or a.summary().removeprefix(a.describe()).strip())
                         + (f" ({a.reason})" if a.reason else ""))
        bad = (getattr(st, "unreadable", 0), getattr(st, "read_note", ""))
        if bad != self.unreadable[i] and (bad[0] > self.unreadable[i][0] or bad[1] != self.unreadable[i][1]):
            self.say(f"{'':8} {name:<{self.width}} {bad[0]} unreadable record line(s) skipped"
                     + (f"; {bad[1]}" if bad[1] else ""))
        self.unreadable[i] = bad
        s = st.status
        if s != self.status[i]:
            before, self.status[i] = self.status[i], s
            if s == "running" and before == "stalled":
                self.say(f"{'':8} {name:<{self.width}} running again: events resumed")
            elif s == "crashed":
                lines = error_lines(run)
                refused = bool(lines) and lines[0].startswith(ERROR_HEAD)
                self.say(f"{'':8} {name:<{self.width}} CRASHED: {st.crash_reason}"
                         + (" (a config or data error: nothing was trained)" if refused else ""))
                for line in lines:  # a data error whole (header and every problem), else the traceback's end
                    self.say(f"{'':8} {name:<{self.width}}   stderr: {line}")
            elif s != "running" or len(history) == 0:
                self.say(f"{'':8} {name:<{self.width}} {st.status_detail()}")
            if s in OVER and s != "skipped":  # how it ended, best val F, wall time, what next
                for line in end_summary(build_view(i, run, self.rules[i])):
                    if not (s == "crashed" and line.startswith("why: ")):  # said just above
                        self.say(f"{'':8} {name:<{self.width}}   {line}")
        self._notice(i, run, name, s)

    def _notice(self, i: int, run: Any, name: str, s: str) -> None:
        st = run.state
        colour = "red" if s in ("crashed", "stalled") else self.colour[i]
        summary, action = self.advice[i]
        detail = st.status_detail() if s == "stalled" else ""
        if s in OVER and s != "skipped":
            detail = end_detail(build_view(i, run, self.rules[i]))
        for ev in self.notifier.observe(i, name=name, status=s, colour=colour, epoch=st.last_epoch, detail=detail,
                                        action=action, summary=summary, run_dir=str(getattr(run, "path", ""))):
            self.alert(ev)

    def all_over(self) -> bool:
        return all(r.state.status in OVER for r in self.runs)

    def crashed(self) -> bool:
        return any(r.state.status == "crashed" for r in self.runs)


def follow(runs: Sequence[Any], rules: Sequence[Any], *, interval: float = 1.0, out: TextIO | None = None,
           specs: Sequence[Any] = (), timeout: float | None = None, plan: Any = None,
           notify_argv: list[str] | None = None) -> int:
    """``plan``: an app.plan.watch.PlanWatch; its decisions get a line, and an abandoned plan
    (scheduler gone) ends the wait for its queued runs."""
    from app.launch import reap

    out = out or sys.stdout
    f = Follower(runs, rules, out, notify_argv)
    first_plan_read = True
    stop = {"why": None}

    def detach(signum, _frame):
        stop["why"] = signal.Signals(signum).name

    old = {s: signal.signal(s, detach) for s in (signal.SIGTERM,)}
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            f.poll()
            reap(specs)
            if plan is not None:
                plan.refresh()
                for line in plan.new_lines():
                    f.say(line)
                    if not first_plan_read and line in gate_lines([line]):
                        ev = f.notifier.gate(plan.plan.name if plan.plan else "plan", line)
                        if ev is not None:
                            f.alert(ev)
                first_plan_read = first_plan_read and plan.plan is None
            if f.all_over() or (plan is not None and plan.abandoned()
                                and all(r.state.status in (*OVER, "queued") for r in runs)):
                if plan is not None:  # the scheduler records the last result, then exits
                    for line in plan.settle(timeout=30):
                        f.say(line)
                break
            if stop["why"] or (deadline and time.monotonic() > deadline):
                raise KeyboardInterrupt
            time.sleep(interval)
    except KeyboardInterrupt:
        live = [r.state.name or r.name for r in runs if r.state.status not in OVER]
        f.say(f"segwatch: detached; still training: {' '.join(live) or 'none'}")
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        f.delivery.close(timeout=10)  # the last notifications (a run's end) go out before we exit
    return 1 if f.crashed() else 0
