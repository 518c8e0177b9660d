"""The log of adjustments: sent, pending, applied (old -> new, at which step) or refused, why."""

from __future__ import annotations

import time

from rich.text import Text

from app.snapshot import RunView

from .base import ViewWidget, append_adjustment, reason_text

SHOW = 6


class AdjustLog(ViewWidget):
    def key(self, view: RunView):
        return (view.adjustments, view.live if any(a.status == "pending" for a in view.adjustments) else None)

    def draw(self, v: RunView) -> Text:
        t = Text()
        t.append("adjustments", style="bold underline")
        if not v.adjustments:
            t.append("  none yet: l/L lr, g/G gamma, u/o/f presets, enter = suggested", style="dim")
            return t
        t.append(f"  {len(v.adjustments)} sent", style="dim")
        for a in list(v.adjustments)[::-1][:SHOW]:
            t.append("\n ")
            when = time.strftime("%H:%M:%S", time.localtime(a.sent_t)) if a.sent_t else "--:--:--"
            t.append(f"{when} ", style="dim")
            append_adjustment(t, a, v.live if a.status == "pending" else None)
            if a.reason:
                t.append(f"  {reason_text(a, v.adjustments)}", style="dim italic")
            if a.source and a.source != "tui":
                t.append(f" [{a.source}]", style="dim")
        return t
