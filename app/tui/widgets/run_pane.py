"""One pane per run: everything about it at a glance, redrawn from RunView snapshots."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll

from app.snapshot import RunView

from .adjust_log import AdjustLog
from .class_table import ClassTable
from .header import Numbers, PaneHeader
from .health_panel import HealthPanel
from .plots import FPlot, LossPlot

COLOURS = ("green", "yellow", "red")


class RunPane(VerticalScroll, can_focus=False):
    def __init__(self, index: int, name: str, *, thresholds: dict | None = None) -> None:
        super().__init__(id=f"pane-{index}", classes="run-pane")
        self.index = index
        self.view: RunView | None = None
        self.border_title = f"{index + 1} {name}"
        self._thresholds = thresholds

    def compose(self) -> ComposeResult:
        yield PaneHeader(classes="pane-header")
        yield Numbers(classes="numbers")
        with Horizontal(classes="plots"):
            yield LossPlot(classes="loss-plot")
            f = FPlot(classes="f-plot")
            if self._thresholds:
                f.thresholds = self._thresholds
            yield f
        yield HealthPanel(classes="health")
        yield ClassTable(classes="classes")
        yield AdjustLog(classes="adjustments")

    def set_view(self, view: RunView) -> None:
        self.view = view
        for c in COLOURS:
            self.set_class(view.colour == c, f"-{c}")
        self.border_title = f"{view.index + 1} {view.name}"
        self.border_subtitle = f"{view.status} · {view.phase}"
        for w in (self.query_one(PaneHeader), self.query_one(Numbers), self.query_one(LossPlot),
                  self.query_one(FPlot), self.query_one(HealthPanel), self.query_one(ClassTable),
                  self.query_one(AdjustLog)):
            w.set_view(view)

    def tick(self) -> None:
        """Once a second: let the header move its ETA on even when no event arrives."""
        if self.view is not None:
            self.query_one(PaneHeader).set_view(self.view)
