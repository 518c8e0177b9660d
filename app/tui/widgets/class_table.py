"""Per-class F of the latest epoch; the small parts (eyes, brows, lips, ears, nose, mouth) first."""

from __future__ import annotations

from rich.text import Text

from app.snapshot import RunView
from trainer.core.classes import CLASS_NAMES, SMALL_CLASSES

from .base import ViewWidget, f_style

CELL = 18  # "background 0.52▲" plus a gap


def _cell(t: Text, cid: int, per: tuple, prev: tuple, small: bool) -> None:
    name = CLASS_NAMES[cid]
    v = per[cid] if cid < len(per) else None
    p = prev[cid] if cid < len(prev) else None
    t.append(f"{name:<11}", style="bold" if small else "dim")
    if v is None:
        t.append("  –  ", style="dim")
        t.append("  ")
        return
    t.append(f"{v:.2f}", style=f_style(v))
    if isinstance(p, (int, float)):
        d = v - p
        t.append("▲" if d > 0.005 else "▼" if d < -0.005 else " ", style="green" if d > 0 else "red")
    else:
        t.append(" ")
    t.append("  ")


class ClassTable(ViewWidget):
    def key(self, view: RunView):
        return (view.per_class, view.per_class_prev, view.last and view.last.get("epoch"), self.size.width)

    def on_resize(self) -> None:
        if self.view is not None:
            self._key = None
            self.set_view(self.view)

    def draw(self, v: RunView) -> Text:
        t = Text()
        ep = v.last.get("epoch") if v.last else None
        t.append("per-class F", style="bold underline")
        t.append(f"  epoch {ep}  small parts first (bold), ▲▼ vs the previous epoch" if ep else "  no epoch yet", style="dim")
        if not v.per_class:
            return t
        per_row = max(1, (self.size.width or 80) // CELL)
        small = list(SMALL_CLASSES)
        rest = [c for c in range(len(CLASS_NAMES)) if c not in SMALL_CLASSES]
        for label, group, is_small in (("small", small, True), ("other", rest, False)):
            for i in range(0, len(group), per_row):
                t.append("\n")
                for cid in group[i:i + per_row]:
                    _cell(t, cid, v.per_class, v.per_class_prev, is_small)
        return t
