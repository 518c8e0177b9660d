"""The health signals of the run's phase, with the numbers behind them and the suggested action."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from app.snapshot import RunView

from .base import MARK, ViewWidget, changes_text


def _g(obj: Any, key: str, default: Any = None) -> Any:
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def action_values(action: Any) -> dict:
    return dict(_g(action, "values") or {})


class HealthPanel(ViewWidget):
    def key(self, view: RunView):
        return (view.signals, view.actions, view.live, view.phase)

    def draw(self, v: RunView) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")  # one line per signal, cut at the pane's edge
        t.append("health", style="bold underline")
        t.append(f"  phase {v.phase}", style="dim")
        if not v.signals:
            t.append("\n  no signals yet (waiting for epochs)", style="dim")
        for s in v.signals:
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
            t.append(str(_g(first, "text", "")), style="bold yellow")
            vals = action_values(first)
            t.append("\n   ")
            t.append("[enter]/a", style="reverse")
            if vals:
                t.append(f" sends {changes_text({}, vals, v.live)}")
            else:
                t.append(f" {_g(first, 'preset', '')}: advice only, nothing to send", style="dim")
            for a in v.actions[1:3]:
                t.append(f"\n   or: {_g(a, 'text', '')}", style="dim")
        return t
