"""Two runs side by side at the same epoch: val F and the small classes, so a loss shows at once."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.snapshot import RunView
from trainer.core.classes import CLASS_NAMES, SMALL_CLASSES
from trainer.core.safe_yaml import is_number

NOISE = 0.01  # differences below this are shown plain


def common_epoch(a: RunView, b: RunView) -> int | None:
    both = set(a.by_epoch) & set(b.by_epoch)
    return max(both) if both else None


def _delta(t: Text, d: float | None) -> None:
    if d is None:
        t.append("   –  ", style="dim")
        return
    style = "bold green" if d > NOISE else "bold red" if d < -NOISE else "dim"
    t.append(f"{d:+.3f}", style=style)


class CompareBar(Widget):
    DEFAULT_CSS = "CompareBar { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pair: tuple[RunView, RunView] | None = None
        self._key = None
        self._shape: tuple | None = None

    def set_views(self, a: RunView | None, b: RunView | None) -> None:
        if a is None or b is None:
            return
        ep = common_epoch(a, b)
        key = (a.name, b.name, ep, ep and a.by_epoch[ep], ep and b.by_epoch[ep])
        if key == self._key:
            return
        self._key, self.pair = key, (a, b)
        # a relayout repaints the whole screen: only when the bar's height may change
        text = self.render().plain
        shape = (text.count("\n"), max((len(x) > self.size.width for x in text.split("\n")), default=False))
        self.refresh(layout=shape != self._shape)
        self._shape = shape

    def render(self) -> Text:
        t = Text()
        if self.pair is None:
            return Text("compare: waiting for both runs", style="dim")
        a, b = self.pair
        ep = common_epoch(a, b)
        t.append("compare", style="bold")
        if ep is None:
            t.append(f" {a.name} · {b.name}  (no common epoch yet)", style="dim")
            return t
        fa, pa = a.by_epoch[ep]
        fb, pb = b.by_epoch[ep]
        # each name beside its own value, in the same order; the deltas say which way round
        t.append(f" @ epoch {ep}:  val F ")
        t.append(a.name, style="bold")
        t.append(f" {_f(fa)} · ")
        t.append(b.name, style="bold")
        t.append(f" {_f(fb)}  Δ ")
        _delta(t, fb - fa if _num(fa) and _num(fb) else None)
        t.append(f" ({b.name} − {a.name})", style="dim")
        t.append("   small: ", style="dim")
        for c in SMALL_CLASSES:
            va = pa[c] if c < len(pa) else None
            vb = pb[c] if c < len(pb) else None
            t.append(f"{CLASS_NAMES[c]} ")
            _delta(t, vb - va if _num(va) and _num(vb) else None)
            t.append("  ")
        return t


_num = is_number


def _f(v) -> str:
    return f"{v:.3f}" if _num(v) else "–"
