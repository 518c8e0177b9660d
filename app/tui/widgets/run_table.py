"""Runs as a collection: one row per run when the panes do not fit, the selected run's pane beside.

Each row: the run's colour, number and name, phase and state, epoch/ETA, val F, best val F, and
the first failing signal with the suggested action. The selected row is highlighted; the keys act
on it as on a selected pane. When the panes do not fit is decided by :func:`table_mode`.
"""

from __future__ import annotations

import time

TABLE_EVERY = 1.0  # seconds: the table redraws at most this often (views arriving faster are coalesced)

from rich.text import Text
from textual.widgets import Static

from app.snapshot import RunView, fmt_duration

from .base import COLOUR, f3, phase_words
from .health_panel import _g

PANE_MIN_W, PANE_MIN_H = 70, 24  # below this a pane cannot show its health and suggestion


def table_mode(n: int, width: int, height: int) -> bool:
    """True when ``n`` full panes do not fit a ``width`` x ``height`` terminal (top bar, compare
    bar and footer take about 5 rows): one pane per run would hide their health."""
    if n <= 1:
        return False
    body = height - 5
    if n == 2:
        return width // 2 < PANE_MIN_W or body < PANE_MIN_H
    rows = (n + 1) // 2
    return width // 2 < PANE_MIN_W or body // rows < PANE_MIN_H


def failing(v: RunView) -> str:
    """The first warning/failed signal and the suggested action, in words."""
    bad = [s for s in v.signals if _g(s, "state") in ("failed", "warning")]
    parts = []
    if v.status in ("crashed", "stalled"):
        parts.append(v.status_detail)
    elif bad:
        s = bad[0]
        parts.append(f"{'✗' if _g(s, 'state') == 'failed' else '⚠'} {_g(s, 'label', _g(s, 'id', '?'))}"
                     + (f" (+{len(bad) - 1})" if len(bad) > 1 else ""))
    if v.actions and not v.over:
        parts.append(f"→ {_g(v.actions[0], 'text', '')}")
    return "  ".join(parts) or ("–" if v.over else "✓ all signals ok")


class RunTable(Static):
    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self.views: dict[int, RunView] = {}
        self.names: list[str] = []
        self.selected = 0
        self._last: object = None
        self._lines = -1  # lines of the text shown
        self._drawn_t = -1e9
        self._drawn_sel: tuple = ()  # (selected, runs with a view) when last drawn
        self._timer = None
        self.beside = False  # set by the app: the table beside the selected pane (wide terminals)

    def show(self, views: dict[int, RunView], names: list[str], selected: int) -> None:
        self.views, self.names, self.selected = views, names, selected
        eta = {i: int((v.eta_at - time.time()) // 10) if v.eta_at else None for i, v in views.items()}
        key = (tuple((i, v.built_t) for i, v in sorted(views.items())), tuple(names), selected, tuple(eta.items()))
        if key == self._last:
            return
        self._last = key
        wait = self._drawn_t + TABLE_EVERY - time.monotonic()
        # a key press, and a run's first view, are shown at once
        if wait <= 0 or (selected, len(views)) != self._drawn_sel:
            self._redraw()
        elif self._timer is None:
            self._timer = self.set_timer(wait, self._redraw)

    def _redraw(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = None
        self._drawn_t, self._drawn_sel = time.monotonic(), (self.selected, len(self.views))
        self._put(self.table())

    def _put(self, text: Text) -> None:
        """Show ``text``; a relayout (which repaints the whole screen, ~80 ms here) only when
        its number of lines changed (bench/tui_fast_epochs.py)."""
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._lines)
        self._lines = lines

    def table(self) -> Text:
        """One line per run; when the table is wide enough for two columns of text (beside the
        pane) each run gets a second line with its signal and suggested action, never cut short."""
        width = max(self.size.width, 40)
        rows = []
        for i, name in enumerate(self.names):
            v = self.views.get(i)
            if v is None:
                rows.append((i, ("dim", f"{i + 1} {name}"), "", "waiting…", "", "", "", "dim"))
                continue
            c = COLOUR.get(v.colour, "white")
            eta = f" {fmt_duration(v.eta_at - time.time())}" if v.eta_at and not v.over else ""
            best = f"{f3(v.best_val_f)}@{v.best_epoch}" if isinstance(v.best_val_f, (int, float)) and v.best_epoch else "–"
            phase = phase_words(v.phase, v.epoch) + ("" if v.status == "running" else " STALLED" if v.status == "stalled" else f" {v.status}")
            rows.append((i, (c, f"{i + 1} {v.name}"), phase, f"{v.epoch}/{v.total_epochs or '?'}{eta}",
                         f3((v.last or {}).get("val_f")), best, failing(v), "yellow" if v.colour != "green" else "dim"))
        wn = min(max([len(r[1][1]) for r in rows] + [3]), 28)
        wp = max([len(r[2]) for r in rows] + [5])
        we = max([len(r[3]) for r in rows] + [11])
        head = f"  {'run':<{wn}}  {'phase':<{wp}}  {'epoch / ETA':<{we}}  {'val F':>5}  {'best':<8}"
        two_lines = self.beside and width - len(head) < 90  # beside the pane: room for two lines, not for one
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(head + ("" if two_lines else "  signal → suggested action"), style="bold dim")
        for i, (colour, name), phase, epoch, f, best, signal, sig_style in rows:
            sel = "reverse " if i == self.selected else ""
            line = Text()
            line.append("● ", style=f"bold {colour}")
            line.append(f"{name[:wn]:<{wn}}", style=f"{sel}bold")
            line.append(f"  {phase:<{wp}}  {epoch:<{we}}  {f:>5}  {best:<8}", style=f"{sel}{colour}")
            if signal and not two_lines:
                line.append(f"  {signal}", style=sig_style)
            line.truncate(width, overflow="ellipsis")
            t.append("\n")
            t.append_text(line)
            if signal and two_lines:
                sub = Text(f"    {signal}", style=sig_style)
                sub.truncate(width, overflow="ellipsis")
                t.append("\n")
                t.append_text(sub)
        return t

    def on_resize(self) -> None:
        self._last = None
        self._lines = -1
        self._put(self.table())
