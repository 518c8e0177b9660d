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
        self.parts: list = []
        self.header: PaneHeader | None = None

    def compose(self) -> ComposeResult:
        # kept by reference (no queries): the clock may tick while the app shuts down
        self.header = PaneHeader(classes="pane-header")
        self.parts = [self.header, Numbers(classes="numbers"), LossPlot(classes="loss-plot"),
                      FPlot(classes="f-plot"), HealthPanel(classes="health"), ClassTable(classes="classes"),
                      AdjustLog(classes="adjustments")]
        if self._thresholds:
            self.parts[3].thresholds = self._thresholds
        yield from self.parts[:2]
        with Horizontal(classes="plots"):
            yield from self.parts[2:4]
        yield from self.parts[4:]

    def set_view(self, view: RunView) -> None:
        self.view = view
        for c in COLOURS:
            self.set_class(view.colour == c, f"-{c}")
        # Assigning a border title refreshes the whole pane (every child repainted) even when the
        # text is the same: only assign on a change (bench/tui_load.py: 12% -> see RESULTS.md).
        title, subtitle = f"{view.index + 1} {view.name}", f"{view.status} · {view.phase}"
        if title != self.border_title:
            self.border_title = title
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle
        for w in self.parts:
            w.set_view(view)

    def tick(self) -> None:
        """Once a second: let the header move its ETA on even when no event arrives."""
        if self.view is not None and self.header is not None and self.is_attached:
            self.header.set_view(self.view)
