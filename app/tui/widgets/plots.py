"""Live plots (plotext via textual-plotext): losses, and val F against the plan's thresholds."""

from __future__ import annotations

import time
from typing import Any

from textual.widget import Widget
from textual_plotext import PlotextPlot

from app.health import plot_thresholds
from app.snapshot import RunView

# (epoch, val F) milestones and the late target: the default health rules' (app/health/default_rules.yaml);
# a run's own rules override them (see FPlot.thresholds).
DEFAULT_THRESHOLDS = plot_thresholds()


def x_max(v: RunView, data_x: tuple) -> float:
    last = max([x for x in data_x] + [v.epoch, 1])
    xm = max(10.0, last * 1.25)
    return min(xm, float(v.total_epochs)) if v.total_epochs and v.total_epochs > last else xm


class ViewPlot(PlotextPlot):
    """A plot redrawn from RunViews, at most once per ``min_interval`` seconds.

    Building a plotext figure is the costliest part of a redraw (25-50 ms for a 78x12 plot on
    the 2-core dev box): plots redraw at most once per ``min_interval``, and when only ``minor``
    data changed (the train loss of new step events) at most once per ``minor_interval``; the
    last view of a burst is always drawn (by :meth:`tick`, the cockpit's 1 s clock); a hidden plot
    builds nothing until shown.
    """

    DEFAULT_CSS = "ViewPlot { height: 12; min-width: 30; }"
    min_interval = 2.0  # epochs faster than this are coalesced (bench/tui_fast_epochs.py)
    minor_interval = 1.0

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._key: Any = object()
        self.view: RunView | None = None
        self._drawn_t = 0.0
        self._due_at: float | None = None  # a view not drawn yet: draw it from this time on
        self._gen = 0  # grows with each replot
        self._built: Any = None  # (gen, size, theme) -> the figure built for them

    def key(self, view: RunView) -> Any:
        return view

    def major(self, key: Any) -> Any:
        """The part of ``key`` whose change is drawn within ``min_interval``."""
        return key

    def set_view(self, view: RunView) -> None:
        """Take ``view``; draw it now if its interval has passed and the plot is on screen, else
        with a later :meth:`tick` (the cockpit's clock, once a second: the plots' trailing redraws
        share the panes' screen update instead of each timer making one of its own)."""
        k = self.key(view)
        if k == self._key:
            return
        minor_only = isinstance(self._key, tuple) and self.major(k) == self.major(self._key)
        self._key, self.view = k, view
        due = self._drawn_t + (self.minor_interval if minor_only else self.min_interval)
        self._due_at = due if self._due_at is None else min(self._due_at, due)  # a major change comes sooner
        self.tick()

    def tick(self) -> None:
        """Draw the waiting view if it is due and the plot is shown: a plot whose pane collapsed
        its plots (or the overlay, stepped aside) builds nothing until it is shown again."""
        if self._due_at is not None and time.monotonic() >= self._due_at and self._shown():
            self._draw()

    @property
    def redraw_pending(self) -> bool:
        """A view this plot shows is not drawn yet (a plot not shown has none pending)."""
        return self._due_at is not None and self._shown()

    def _shown(self) -> bool:
        node: Any = self
        while isinstance(node, Widget):
            if not node.display:
                return False
            node = node.parent
        return True

    def draw_soon(self) -> None:
        """The next view with a major change is drawn at once (a key changed how it is drawn)."""
        self._drawn_t = -1e9
        if self._due_at is not None:
            self._due_at = -1e9

    def _draw(self) -> None:
        self._due_at = None
        if self.view is None:
            return
        self._drawn_t = time.monotonic()
        self.replot(self.view)
        self._gen += 1
        self.refresh()

    def render(self) -> Any:
        """The figure, built again only after a replot or a resize: a repaint for any other
        reason (a style change, a region uncovered) reuses it (bench/tui_fast_epochs.py)."""
        key = (self._gen, self.size, self.app.theme)
        if self._built is None or self._built[0] != key:
            self._built = (key, super().render())
        return self._built[1]

    def replot(self, v: RunView) -> None:
        raise NotImplementedError


class LossPlot(ViewPlot):
    """Train loss (step points, or epochs) and val loss (epochs)."""

    minor_interval = 5.0  # new step points alone: a 5 s cadence (bench/tui_load.py)

    def key(self, view: RunView) -> Any:
        return (view.loss_steps, view.train_loss, view.val_loss, view.total_epochs)

    def major(self, key: Any) -> Any:
        return key[1:]

    def replot(self, v: RunView) -> None:
        p = self.plt
        p.clear_data()
        p.clear_figure()
        p.title("loss")
        sx, sy = v.loss_steps
        xs_all: tuple = ()
        if len(sx) >= 2:
            p.plot(list(sx), list(sy), label="train", color="cyan")
            xs_all += sx
        elif v.train_loss[0]:
            p.plot(list(v.train_loss[0]), list(v.train_loss[1]), label="train", color="cyan", marker="dot")
            xs_all += v.train_loss[0]
        if v.val_loss[0]:
            p.plot(list(v.val_loss[0]), list(v.val_loss[1]), label="val", color="orange", marker="dot")
            xs_all += v.val_loss[0]
        p.xlim(0, x_max(v, xs_all))
        p.xlabel("epoch")


class FPlot(ViewPlot):
    """Val F (and train F) with the phase thresholds: 0.3 by epoch 10, 0.65 by 100, 0.73 late."""

    thresholds: dict = DEFAULT_THRESHOLDS

    def key(self, view: RunView) -> Any:
        return (view.val_f, view.train_f, view.total_epochs, view.epoch)

    def replot(self, v: RunView) -> None:
        p = self.plt
        p.clear_data()
        p.clear_figure()
        p.title("val F")
        xm = x_max(v, v.val_f[0])
        target = self.thresholds["target"]
        p.hline(target, "gray")
        p.text(f"{target:g}", x=max(xm * 0.02, 0.5), y=target + 0.02, color="gray")
        for ep, f in self.thresholds["milestones"]:
            if ep <= xm:
                p.scatter([ep], [f], marker="x", color="red")
                p.text(f"{f:g}@{ep}", x=ep, y=max(f - 0.08, 0.0), color="gray")
        if v.train_f[0]:
            p.plot(list(v.train_f[0]), list(v.train_f[1]), label="train", color="gray+")
        if v.val_f[0]:
            p.plot(list(v.val_f[0]), list(v.val_f[1]), label="val", color="green", marker="dot")
        p.xlim(0, xm)
        p.ylim(0, 1)
        p.xlabel("epoch")
