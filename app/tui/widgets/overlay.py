"""Every run on one plot: val F and train loss of the runs on screen (and of reference runs), overlaid.

A legend line names each run in its colour (references dim, "ref: NAME"); `e` cycles the EMA
smoothing (off, 0.6, 0.8, 0.9: said in the titles), `x` switches the x axis between epochs and
optimizer steps (epoch × the run's steps per epoch: runs with other batch sizes line up by updates).
The plots redraw as the pane plots do (plots.ViewPlot): only when what they draw changed, at most
once per ``min_interval``, step points alone at most once per ``minor_interval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from app.snapshot import RunView

from .plots import ViewPlot

EMA_STEPS = (None, 0.6, 0.8, 0.9)  # `e` cycles through these
ALIGNS = ("epoch", "step")  # `x` toggles
# a run's colour in the overlay (its identity, not its health): distinct hues, readable on dark and light
RUN_COLOURS = ((86, 182, 194), (198, 120, 221), (229, 160, 80), (97, 150, 239), (224, 108, 117),
               (152, 195, 121), (229, 210, 123), (200, 200, 200), (255, 130, 200))
REF_COLOURS = ((150, 150, 150), (125, 140, 170), (170, 145, 120), (140, 165, 135))  # references: muted
RUN_MARKER, REF_MARKER = "hd", "·"  # solid lines for the runs (as the pane plots); dotted: references
LOSS_MIN_WIDTH = 120  # narrower: the val F overlay alone
MAX_NAME = 32


@dataclass(frozen=True)
class Curve:
    """One run's curves as the overlay draws them (plain tuples: compared to decide a redraw)."""

    name: str
    colour: tuple
    ref: bool
    f: tuple  # (epochs, val F)
    loss: tuple  # (epochs, train loss): step points when there are some, else per epoch
    spe: int  # steps per epoch (0: unknown; left out of the step-aligned plot)

    @property
    def label(self) -> str:
        return f"ref: {self.name}" if self.ref else self.name

    @property
    def style(self) -> str:
        r, g, b = self.colour
        return f"rgb({r},{g},{b})"


def short(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


def curve_of(v: RunView, colour: tuple, ref: bool = False) -> Curve:
    loss = v.loss_steps if len(v.loss_steps[0]) >= 2 else v.train_loss
    return Curve(short(v.name), colour, ref, v.val_f, loss, v.steps_per_epoch)


def curves_of(views: Sequence[RunView], refs: Sequence[RunView]) -> tuple[Curve, ...]:
    """The live runs (by index, each its own colour) then the references (muted)."""
    out = [curve_of(v, RUN_COLOURS[v.index % len(RUN_COLOURS)]) for v in views]
    out += [curve_of(r, REF_COLOURS[k % len(REF_COLOURS)], ref=True) for k, r in enumerate(refs)]
    return tuple(out)


def ema(ys: Sequence[float], alpha: float | None) -> list[float]:
    """Exponential moving average (s = alpha·s + (1-alpha)·y, starting at the first value); None: as is."""
    if alpha is None or not ys:
        return list(ys)
    s = ys[0]
    out = [s]
    for y in ys[1:]:
        s = alpha * s + (1 - alpha) * y
        out.append(s)
    return out


def ema_words(alpha: float | None) -> str:
    return "EMA off" if alpha is None else f"EMA {alpha:g}"


@dataclass(frozen=True)
class OverlayView:
    curves: tuple
    ema: float | None
    align: str


class OverlayPlot(ViewPlot):
    """One metric of every curve, overlaid; ``what`` picks it ("f" or "loss")."""

    DEFAULT_CSS = "OverlayPlot { height: 12; min-width: 30; }"

    def __init__(self, what: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.what = what
        self.minor_interval = 5.0 if what == "loss" else 1.0  # step points alone: a 5 s cadence
        self.empty = True  # nothing drawn yet: the first data is drawn at once, not at the cadence

    def set_view(self, view: Any) -> None:
        if self.empty:
            self.draw_soon()
        super().set_view(view)

    def key(self, view: Any) -> Any:
        data = tuple((c.name, c.colour, c.ref, getattr(c, self.what), c.spe) for c in view.curves)
        return (view.ema, view.align, data)

    def major(self, key: Any) -> Any:
        """The train loss overlay: new loss points alone wait for the 5 s cadence; a setting or a
        run coming or going is drawn within ``min_interval``. The val F overlay: every change."""
        return key[:2] + tuple((d[0], d[2]) for d in key[2]) if self.what == "loss" else key

    def title(self, view: OverlayView) -> str:
        what = "val F" if self.what == "f" else "train loss"
        return f"{what} · {ema_words(view.ema)} · x: {view.align}s"

    def replot(self, view: Any) -> None:
        p = self.plt
        p.clear_data()
        p.clear_figure()
        p.title(self.title(view))
        x_hi = 0.0
        self.empty = True
        # references first: the live runs are drawn over them
        for c in sorted(view.curves, key=lambda c: not c.ref):
            xs, ys = getattr(c, self.what)
            if not xs:
                continue
            if view.align == "step":
                if not c.spe:
                    continue  # no steps per epoch in its record: it cannot be placed on a step axis
                xs = [x * c.spe for x in xs]
            ys = ema(list(ys), view.ema)
            x_hi = max(x_hi, max(xs))
            self.empty = False
            p.plot(list(xs), ys, color=c.colour, marker=REF_MARKER if c.ref else RUN_MARKER)
        p.xlim(0, max(x_hi * 1.02, 10.0 if view.align == "epoch" else 1.0))
        if self.what == "f":
            p.ylim(0, 1)
        p.xlabel(view.align)


class OverlayLegend(Static):
    DEFAULT_CSS = "OverlayLegend { height: 1; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }"


class OverlayBar(Vertical):
    """The legend and the overlaid plots; shown by the app when there are two curves or more and
    the terminal is tall enough (the panes' health always comes first: SegwatchApp._apply_mode)."""

    DEFAULT_CSS = "OverlayBar { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ema_i = 0
        self.align = "epoch"
        self.curves: tuple[Curve, ...] = ()
        self.legend = OverlayLegend("", classes="overlay-legend")
        self.f_plot = OverlayPlot("f", classes="overlay-f")
        self.loss_plot = OverlayPlot("loss", classes="overlay-loss")
        self.row = Horizontal(classes="overlay-plots")
        self._legend_key: Any = None

    @property
    def ema(self) -> float | None:
        return EMA_STEPS[self.ema_i]

    def compose(self) -> ComposeResult:
        yield self.legend
        with self.row:
            yield self.f_plot
            yield self.loss_plot

    def view(self) -> OverlayView:
        return OverlayView(self.curves, self.ema, self.align)

    def set_curves(self, curves: tuple[Curve, ...]) -> None:
        self.curves = curves
        self._update()

    def cycle_ema(self) -> float | None:
        self.ema_i = (self.ema_i + 1) % len(EMA_STEPS)
        self._update(now=True)
        return self.ema

    def toggle_align(self) -> str:
        self.align = ALIGNS[(ALIGNS.index(self.align) + 1) % len(ALIGNS)]
        self._update(now=True)
        return self.align

    def legend_text(self) -> Text:
        t = Text()
        t.append("all runs ", style="bold")
        for c in self.curves:
            no_steps = self.align == "step" and not c.spe and c.f[0]
            t.append("  ┄ " if c.ref else "  ━ ", style=c.style)
            t.append(c.label + (" (no step count)" if no_steps else ""), style=f"dim {c.style}" if c.ref else c.style)
        t.append(f"    {ema_words(self.ema)} (e) · x: {self.align}s (x)", style="dim")
        return t

    def set_rows(self, rows: int, width: int) -> None:
        """Plot rows (the legend takes one more); the train loss plot only from LOSS_MIN_WIDTH columns."""
        if self.row.styles.height != rows:
            self.row.styles.height = rows
            for p in (self.f_plot, self.loss_plot):
                p.styles.height = rows
        wide = width >= LOSS_MIN_WIDTH
        if self.loss_plot.display != wide:
            self.loss_plot.display = wide
            if wide:
                self._update()

    def _update(self, now: bool = False) -> None:
        """Draw what changed; ``now``: a key changed a setting, drawn at once (not at the plots' cadence).
        Nothing is drawn while the bar (or the loss plot) is hidden: showing it again calls this."""
        if not self.display:
            return
        key = (tuple((c.label, c.colour, c.ref, bool(c.spe), bool(c.f[0])) for c in self.curves), self.ema, self.align)
        if key != self._legend_key:
            self._legend_key = key
            self.legend.update(self.legend_text())
        view = self.view()
        for p in (self.f_plot, self.loss_plot):
            if p.display:
                if now:
                    p.draw_soon()
                p.set_view(view)

    def refresh_plots(self) -> None:
        """The bar (or its loss plot) was just shown: draw the curves it kept."""
        self._update()
