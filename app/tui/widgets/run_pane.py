"""One pane per run: everything about it at a glance, redrawn from RunView snapshots."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll

from app.snapshot import RunView

from .adjust_log import AdjustLog
from .base import phase_words
from .class_table import ClassTable
from .header import Numbers, PaneHeader
from .health_panel import HealthPanel
from .plots import FPlot, LossPlot

COLOURS = ("green", "yellow", "red")
PLOT_MAX, PLOT_MIN = 14, 7  # rows of the plots; below PLOT_MIN they collapse (hidden)
PANE_EVERY = 1.0  # seconds: a pane redraws at most this often; views arriving faster are coalesced


def urgent(view: RunView | None) -> tuple:
    """What is drawn at once, never coalesced: the run's state and colour, a name, a command's
    answer, a warning, a crash (only progress, epochs and steps, waits for the pane's next redraw)."""
    if view is None:
        return ()
    return (view.index, view.name, view.status, view.colour, view.over, view.adjustments, len(view.warnings),
            view.unreadable, view.read_note, view.crash_reason)


class RunPane(VerticalScroll, can_focus=False):
    def __init__(self, index: int, name: str, *, thresholds: dict | None = None, note: str | None = None) -> None:
        super().__init__(id=f"pane-{index}", classes="run-pane")
        self.index = index
        self.view: RunView | None = None
        self.border_title = f"{index + 1} {name}"
        self._thresholds = thresholds
        self.parts: list = []
        self.header: PaneHeader | None = None
        self._rows = PLOT_MAX
        self._note = note  # a line for the header from `segwatch run` (a warmup shrunk by --set training.epochs)
        self._pending: RunView | None = None  # the newest view not drawn yet
        self._drawn_t = -1e9
        self._hidden = False  # the run table shows another run's pane: keep views, draw nothing
        self.drawn_tick: int | None = None

    def compose(self) -> ComposeResult:
        # kept by reference (no queries): the clock may tick while the app shuts down
        self.header = PaneHeader(classes="pane-header")
        self.header.note = self._note
        self.parts = [self.header, Numbers(classes="numbers"), LossPlot(classes="loss-plot"),
                      FPlot(classes="f-plot"), HealthPanel(classes="health"), ClassTable(classes="classes"),
                      AdjustLog(classes="adjustments")]
        if self._thresholds:
            self.parts[3].thresholds = self._thresholds
        yield from self.parts[:2]
        self.plots = Horizontal(classes="plots")
        with self.plots:
            yield from self.parts[2:4]
        yield from self.parts[4:]

    def set_view(self, view: RunView, *, hidden: bool = False) -> None:
        """Show ``view``: at once after a quiet second or when something :func:`urgent` changed,
        else with the cockpit's next clock tick (:meth:`tick`, once a second: epochs arriving
        faster are coalesced, the newest is drawn, and every pane due then redraws in the same
        screen update as the headers' ETAs). A hidden pane (the run table shows another run's)
        keeps the view and draws it when shown."""
        self._pending = view
        self._hidden = hidden
        if hidden:
            return
        if self._drawn_t + PANE_EVERY <= time.monotonic() or urgent(self.view) != urgent(view):
            self.flush()

    def set_hidden(self, hidden: bool) -> None:
        """The run table hides this pane (or shows it again): a hidden pane keeps views, draws none."""
        self._hidden = hidden

    def flush(self) -> None:
        """Draw the pending view now (the pane was just shown, or its redraw is due)."""
        view, self._pending = self._pending, None
        if view is None or not self.parts:
            self._pending = view
            return
        self._drawn_t = time.monotonic()
        self.drawn_tick = getattr(self.app, "clock_ticks", None)  # the cockpit clock's tick it was drawn in
        self.view = view
        for c in COLOURS:
            self.set_class(view.colour == c, f"-{c}")
        # Assigning a border title refreshes the whole pane (every child repainted) even when the
        # text is the same: only assign on a change (bench/tui_load.py: 12% -> see RESULTS.md).
        title, subtitle = f"{view.index + 1} {view.name}", f"{view.status} · {phase_words(view.phase, view.epoch)}"
        if title != self.border_title:
            self.border_title = title
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle
        for w in self.parts:
            w.set_view(view)
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit)

    def fit(self) -> None:
        """Plots shrink, then collapse, so that the header, the numbers and the health panel with
        its suggested action stay on screen without scrolling (80x24 and up)."""
        if not self.parts or not self.is_attached:
            return
        header, numbers, health = self.parts[0], self.parts[1], self.parts[4]
        avail = self.scrollable_content_region.height
        top = sum(w.outer_size.height + 1 for w in (header, numbers))
        # the health panel in full when it fits with the plots collapsed; else its failing signals only
        health.set_compact(top + health.full_lines() > avail)
        used = top + health.outer_size.height
        rows = min(PLOT_MAX, avail - used - 1)  # the plots' own margin
        show = rows >= PLOT_MIN
        if show != self.plots.display:
            self.plots.display = show
            if show:
                for p in self.parts[2:4]:
                    p.tick()  # collapsed, they built nothing: draw what they kept
        if show and rows != self._rows:
            self._rows = rows
            self.plots.styles.height = rows
            for p in self.parts[2:4]:
                p.styles.height = rows

    def tick(self) -> None:
        """Once a second (the cockpit's clock): draw the view that waited (coalesced fast epochs),
        else let the header move its ETA on even when no event arrives; and heal a stale layout (a
        widget whose text outgrew its height, once seen in tmux at 80x24 after attaching to an
        ended run: no later view came to trigger the relayout; and the per-class table below the
        fold left one line tall in one start of the cockpit out of four,
        tests/app/test_tui_snapshots.py). Every pane ticks in the same callback, so their redraws
        share one screen update (bench/tui_fast_epochs.py)."""
        if self._pending is not None and not self._hidden:
            self.flush()
        elif self.view is not None and self.header is not None and self.is_attached:
            self.header.set_view(self.view)
        for plot in self.parts[2:4]:
            plot.tick()  # a plot's trailing redraw (coalesced epochs), in the same screen update
        if self.view is not None and self.header is not None and self.is_attached:
            stale = False
            for w in (self.parts[0], self.parts[1], *self.parts[4:]):  # every text part (not the plots)
                if w.size.width and w.view is not None and w.needed_height() != w.size.height:
                    w.refresh(layout=True)
                    stale = True
            if stale:
                self.call_after_refresh(self.fit)
