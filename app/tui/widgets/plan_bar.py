"""The plan bar: a serial Plan B or a sweep, its queue, each gate, its outcome and why.

A thread worker reads the plan file (app.plan.watch.PlanWatch) and posts ``PlanChanged``; the
bar redraws on that message. Styles: #planbar in app.tcss.
"""

from __future__ import annotations

import threading

from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker, get_current_worker

from app.notify import gate_lines
from app.plan.watch import PlanWatch

INTERVAL = 1.0  # seconds between reads of the plan file (a few hundred bytes)


class PlanBar(Static):
    class PlanChanged(Message):
        def __init__(self, markup: str) -> None:
            super().__init__()
            self.markup = markup

    class GateDecided(Message):
        """A gate of the plan decided (a run started after it, or was skipped): worth a notification."""

        def __init__(self, plan: str, line: str) -> None:
            super().__init__()
            self.plan, self.line = plan, line

    def __init__(self, plan: PlanWatch, **kw) -> None:
        super().__init__("plan: reading…", **kw)
        self.watch_plan = plan
        self.text = ""
        self._stop = threading.Event()

    def on_mount(self) -> None:
        self.run_worker(self._follow, thread=True, name="plan", group="plan", exclusive=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event.worker, event.state)  # the cockpit's one handler

    def on_unmount(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        worker = get_current_worker()
        last = None
        first = True
        while not worker.is_cancelled and not self._stop.is_set():
            self.watch_plan.refresh()
            lines = self.watch_plan.new_lines()
            if not first:  # the first read is the plan's history: not news
                for line in gate_lines(lines):
                    self.post_message(self.GateDecided(self.watch_plan.plan.name if self.watch_plan.plan else "plan", line))
            first = first and self.watch_plan.plan is None
            markup = self.watch_plan.markup()
            if markup != last:
                last = markup
                self.post_message(self.PlanChanged(markup))
            self._stop.wait(INTERVAL)

    def on_plan_bar_plan_changed(self, msg: "PlanBar.PlanChanged") -> None:
        self.text = msg.markup
        self.update(msg.markup)

