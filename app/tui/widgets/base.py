"""Shared pieces: a widget that draws a RunView, and number formatting."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from app.snapshot import RunView
from trainer.core.live import format_value

MARK = {"ok": ("✓", "green"), "warning": ("⚠", "yellow"), "failed": ("✗", "red"), "pending": ("·", "dim")}
COLOUR = {"green": "green", "yellow": "yellow", "red": "red"}


def f3(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) or isinstance(v, bool) else f"{v:.3f}"


def f2(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) or isinstance(v, bool) else f"{v:.2f}"


def fv(v: Any) -> str:
    """A live value: 3.00e-04, 2.5, on, [0.8, 1.2]."""
    return "–" if v is None else format_value(v)


def f_style(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return "dim"
    return "red" if v < 0.3 else "yellow" if v < 0.6 else "green"


def changes_parts(changes: dict, values: dict | None = None, live: dict | None = None) -> list[str]:
    """['lr 3.00e-04→1.80e-04', 'gamma 2.5→2'] from an ack's changes, or from values vs live."""
    parts = []
    if changes:
        for k, pair in changes.items():
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                parts.append(f"{k} {fv(pair[0])}→{fv(pair[1])}")
            else:
                parts.append(f"{k} →{fv(pair)}")
    else:
        for k, v in (values or {}).items():
            old = (live or {}).get(k)
            parts.append(f"{k} {fv(old)}→{fv(v)}" if old is not None else f"{k} →{fv(v)}")
    return parts


def undo_words(a: Any) -> str:
    """What an adjustment was, for an undo's reason: its own reason ('preset: unstable') or its change."""
    return a.reason or changes_text(a.changes, a.values) or a.cmd


def reason_text(a: Any, adjustments: Any = ()) -> str:
    """An adjustment's reason as people read it: 'undo <id> (preset: unstable)' -> 'undo preset: unstable'
    (an older undo, 'undo <id>' alone, is looked up among ``adjustments``)."""
    r = a.reason or ""
    parts = r.split(" ", 2)
    if len(parts) >= 2 and parts[0] == "undo":
        if len(parts) == 3 and parts[2].startswith("(") and parts[2].endswith(")"):
            return f"undo {parts[2][1:-1]}"
        target = next((b for b in adjustments if b.id and (b.id == parts[1] or b.id[:8] == parts[1])), None)
        if target is not None and len(parts) == 2:
            return f"undo {undo_words(target)}"
    return r


def phase_words(phase: str, epoch: int = 0) -> str:
    """The health phase in words: 'none' (no epoch yet) is 'before epoch 1'."""
    return "before epoch 1" if phase in ("none", "?", "") and not epoch else phase


def changes_text(changes: dict, values: dict | None = None, live: dict | None = None) -> str:
    return ", ".join(changes_parts(changes, values, live))


class ViewWidget(Widget):
    """Draws one aspect of a RunView; redraws only when its own part of the view changed."""

    DEFAULT_CSS = "ViewWidget { height: auto; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: RunView | None = None
        self._key: Any = object()
        self._text: Text | None = None
        self._shape: Any = None
        self._needed: tuple | None = None  # (text, width, rows) of the last needed_height

    def key(self, view: RunView) -> Any:
        """What this widget draws from the view; a redraw happens when it changes."""
        return view

    def set_view(self, view: RunView) -> None:
        k = self.key(view)
        if k == self._key:
            return
        self._key = k
        self.view = view
        text = self.draw(view)
        # a relayout repaints the whole screen: only ask for one when the height may change
        shape = (text.plain.count("\n"), max((len(x) > self.size.width for x in text.plain.split("\n")), default=False))
        self._text = text
        self.refresh(layout=shape != self._shape)
        self._shape = shape

    def render(self) -> Text:
        if self.view is None:
            return Text("waiting for the first event…", style="dim")
        if self._text is None:
            self._text = self.draw(self.view)
        return self._text

    def on_resize(self) -> None:
        self._text = None

    def needed_height(self) -> int:
        """Rows the current text takes at the current width (wrapped as render() will be);
        remembered for the same text and width (the panes ask once a second: RunPane.tick)."""
        text = self.render()
        width = self.size.width
        if self._needed is not None and self._needed[0] is text and self._needed[1] == width:
            return self._needed[2]
        if self.styles.text_wrap == "nowrap":
            rows = text.plain.count("\n") + 1
        else:
            rows = len(text.wrap(self.app.console, width))
        self._needed = (text, width, rows)
        return rows

    def draw(self, view: RunView) -> Text:
        raise NotImplementedError


def append_adjustment(t: Any, a: Any, live: dict | None = None) -> None:
    """Append one adjustment to a rich Text: what it changes (old -> new) and its answer
    (pending / 'applied at step 81 (during validation of epoch 2)' / refused: why)."""
    t.append(changes_text(a.changes, a.values, live) if a.cmd == "set" else (a.cmd or "?"), style="bold")
    if a.status == "pending":
        t.append("  pending…", style="yellow")
    elif a.status == "applied":
        t.append(f"  {a.when() or 'applied'}", style="green")
    else:
        t.append(f"  refused: {a.answer_reason}", style="red")
