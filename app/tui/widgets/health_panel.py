"""The health signals of the run's phase, with the numbers behind them and the suggested action."""

from __future__ import annotations

import textwrap
from typing import Any

from rich.text import Text

from app.snapshot import RunView

from .base import MARK, ViewWidget, changes_parts, phase_words


def _g(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def action_values(action: Any) -> dict:
    return dict(_g(action, "values") or {})


class HealthPanel(ViewWidget):
    compact = False  # set by RunPane.fit on a short pane: failing signals only, the rest counted

    def key(self, view: RunView):
        return (view.signals, view.actions, view.live, view.phase, self.size.width, self.compact)

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            if self.view is not None:
                self.set_view(self.view)

    def full_lines(self) -> int:
        """Lines of the full (not compact) panel for the current view."""
        if self.view is None:
            return 2
        was, self.compact = self.compact, False
        try:
            return self.draw(self.view).plain.count("\n") + 1
        finally:
            self.compact = was

    def on_resize(self) -> None:
        if self.view is not None:
            self._key = None
            self.set_view(self.view)

    def draw(self, v: RunView) -> Text:
        t = Text()  # one line per signal: app.tcss cuts long ones at the pane edge (text-wrap: nowrap)
        t.append("health", style="bold underline")
        t.append(f"  phase {phase_words(v.phase, v.epoch)}", style="dim")
        if not v.signals:
            t.append("\n  no signals yet (waiting for epochs)", style="dim")
        shown = v.signals
        if self.compact:  # what is wrong stays; what is fine is counted
            shown = [s for s in v.signals if _g(s, "state", "pending") in ("warning", "failed")]
            counts = {k: sum(_g(s, "state", "pending") == k for s in v.signals) for k in ("ok", "pending")}
            rest = "  ".join(f"{MARK[k][0]} {n} {k}" for k, n in counts.items() if n)
            if rest:
                t.append(f"  {rest}", style="dim")
        for s in shown:
            state = _g(s, "state", "pending")
            mark, style = MARK.get(state, ("?", ""))
            t.append("\n ")
            t.append(f"{mark} ", style=f"bold {style}")
            t.append(str(_g(s, "label", _g(s, "id", "?"))), style=style if state != "ok" else "")
            detail = _g(s, "detail", "")
            if detail:
                t.append(f"  {detail}", style="dim")
        if v.actions:
            first = v.actions[0]
            t.append("\n → ", style="bold")
            # the suggestion wraps by hand (the panel does not wrap): it must never be cut
            held = first.settling  # applied already: its effect needs epochs
            for k, line in enumerate(textwrap.wrap(str(_g(first, "text", "")), max(self.size.width - 4, 20)) or [""]):
                t.append(("\n   " if k else "") + line, style="yellow" if held else "bold yellow")
            vals = action_values(first)
            t.append("\n   ")
            if held:
                for k, line in enumerate(textwrap.wrap(first.settling_words(), max(self.size.width - 4, 20))):
                    t.append(("\n   " if k else "") + line, style="dim")
            elif vals:
                t.append("[enter]/a", style="reverse")
                # the panel does not wrap (long signal lines are cut): wrap what is sent by hand
                width, col = max(self.size.width, 40), 18
                t.append(" sends")
                for i, part in enumerate(changes_parts({}, vals, v.live)):
                    if i and col + len(part) + 2 > width:
                        t.append("\n         ")
                        col = 9
                    t.append((", " if i and col > 9 else " ") + part)
                    col += len(part) + 2
            else:
                t.append("[enter]/a", style="reverse")
                t.append(f" {_g(first, 'preset', '')}: advice only, nothing to send", style="dim")
            for a in v.actions[1:1 if self.compact else 3]:
                t.append(f"\n   or: {_g(a, 'text', '')}", style="dim")
        return t
