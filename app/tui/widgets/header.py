"""The top of a run pane: who, how healthy, how far, how fast; and the numbers that matter now."""

from __future__ import annotations

import textwrap
import time

from rich.text import Text

from app.notify import end_summary
from app.snapshot import RunView, fmt_duration
from trainer.core.safe_yaml import is_number
from trainer.datainfo import data_line

from .base import COLOUR, ViewWidget, append_adjustment, f3, fv, phase_words, reason_text

BAR = 24
BAR_MIN = 6  # the narrowest bar: below it the line wraps instead


def progress_bar(frac: float, width: int = BAR) -> str:
    cells = frac * width
    full = int(cells)
    part = "▏▎▍▌▋▊▉"[int((cells - full) * 7)] if full < width and cells - full >= 1 / 7 else ""
    return "█" * full + part + " " * (width - full - len(part))


def alpha_line(info: dict | None, message: str) -> str:
    """The pane's one line on a background-heavy focal alpha: the weights and the way out, whole (the
    trainer's note explains kornia's convention too, and cut to the pane it lost the way out)."""
    info = info or {}
    bg, parts = info.get("background"), info.get("parts_mean")
    if info.get("background_heavy") and is_number(bg, finite=True) and is_number(parts, finite=True) and parts > 0:
        return (f"focal alpha weights background {bg:.2f} against {parts:.2f} for the face parts ({bg / parts:.1f}x); "
                "'focal_alpha: balanced' weights the rare parts up")
    return textwrap.shorten(message, 160, placeholder=" …")


class PaneHeader(ViewWidget):
    """Name, status colour and phase; epoch/total with a bar and ETA; samples/s; GPU; crash."""

    note: str | None = None  # from `segwatch run`: the warmup shrunk by --set training.epochs

    def key(self, view: RunView):
        g = tuple((d.get("util"), d.get("proc_mem"), d.get("mem_used")) for d in view.gpu or ())
        eta = int((view.eta_at - time.time()) // 10) if view.eta_at else None  # ETA ticks every 10 s
        return (view.name, view.colour, view.status, view.status_detail, view.phase, view.epoch,
                view.total_epochs, round(view.progress, 3), eta, view.samples_per_s, view.step,
                g, view.crash_reason, view.stderr_tail, view.summary,
                view.index, tuple(view.warning_counts.items()), view.unreadable, view.read_note,
                view.best_val_f, view.best_epoch, view.wall_s,
                data_line(view.data))

    def draw(self, v: RunView) -> Text:
        c = COLOUR.get(v.colour, "white")
        t = Text()
        t.append(f"{v.index + 1} ", style="dim")
        t.append(v.name, style="bold")
        t.append("  ")
        t.append(f" {v.colour.upper()} ", style=f"bold black on {c}")
        t.append(f"  {phase_words(v.phase, v.epoch)}", style="bold")
        t.append(f"  {v.status_detail if v.status in ('paused', 'crashed', 'stalled') else v.status}",
                 style="bold red" if v.status == "stalled" else "red" if v.status == "crashed"
                 else "yellow" if v.status == "paused" else "")
        if v.warning_counts.get("synthetic_data") or (v.data or {}).get("synthetic"):
            t.append("  ")
            t.append(" SYNTHETIC DATA ", style="bold white on magenta")
        elif v.data:
            t.append("  ")
            t.append(" REAL DATA ", style="bold black on green")
        if v.warning_counts.get("alpha_background"):  # the start's alpha weights background above the parts
            t.append("  ")
            t.append(" ALPHA FAVOURS BACKGROUND ", style="bold black on yellow")
        t.append("\n")
        if v.data and not v.data.get("synthetic"):
            t.append(data_line(v.data)[:400] + "\n", style="green")
        head = f"epoch {v.epoch}/{v.total_epochs or '?'} "
        tail = [(f" {v.progress * 100:4.1f}%", "")]
        if v.eta_at and not v.over:
            tail.append((f"  ETA {fmt_duration(v.eta_at - time.time())}", ""))
        if v.samples_per_s:
            tail.append((f"  {v.samples_per_s:.0f} samples/s", ""))
        if v.step is not None:
            tail.append((f"  step {v.step}", "dim"))
        elif v.status == "running":
            tail.append(("  waiting for the first step…", "dim"))
        elif v.status == "starting":
            tail.append(("  starting the trainer…", "dim"))
        # the bar gives way first, so that ETA, speed and step stay on one line in a narrow pane
        room = self.size.width - len(head) - sum(len(s) for s, _ in tail)
        t.append(head)
        t.append(progress_bar(v.progress, max(BAR_MIN, min(BAR, room)) if self.size.width else BAR), style=c)
        for s, style in tail:
            t.append(s, style=style)
        if self.note and not v.over:
            t.append(f"\nⓘ {self.note.split(': ', 1)[-1]}", style="cyan")
        if v.over and v.status != "skipped":  # how it ended and what to run next
            first, *rest = end_summary(v)
            t.append(f"\n■ {first}", style="bold " + ("red" if v.status == "crashed" else "green"))
            for line in rest:
                if not line.startswith("why: "):  # a crash's reason is shown below, with stderr
                    t.append(f"\n  {line}", style="bold")
        if v.gpu:
            t.append("\n" + gpu_text(v.gpu), style="cyan")
        if v.warning_counts.get("alpha_background"):
            note = next((w for w in v.warnings if w.get("code") == "alpha_background"), None)
            if note or v.alpha_info:
                t.append(f"\n⚠ {alpha_line(v.alpha_info, str((note or {}).get('message', '')))}", style="yellow dim")
        badges = ("synthetic_data", "alpha_background")
        others = {k: n for k, n in v.warning_counts.items() if k not in badges}
        if others:
            last = next((w for w in reversed(v.warnings) if w.get("code") not in badges), None)
            t.append("\n⚠ " + "  ".join(f"{k} ×{n}" for k, n in others.items()), style="yellow")
            if last:
                t.append(f"  last: {str(last.get('message', ''))[:120]}", style="yellow dim")
        if v.unreadable or v.read_note:
            n = v.unreadable
            t.append(f"\n⚠ {n} unreadable record line{'s' if n != 1 else ''} skipped" if n else "\n⚠ record:",
                     style="yellow")
            if v.read_note:
                t.append(f"  {v.read_note[:160]}", style="yellow dim")
        if v.status == "crashed":
            t.append(f"\n✖ {v.crash_reason or 'crashed'}", style="bold red")
            for line in v.stderr_tail:  # already capped: a data error whole, else the traceback's last lines
                t.append(f"\n  {line[:300]}", style="red dim")
        return t


def gpu_text(devices: list) -> str:
    """``GPU3 87%  mem 5.2/80 GiB`` per device; under DDP each prefixed with its rank."""
    parts = []
    for d in devices:
        mem = d.get("proc_mem") if d.get("proc_mem") is not None else d.get("mem_used") or 0
        rank = f"rank {d['rank']}: " if len(devices) > 1 and d.get("rank") is not None else ""
        parts.append(f"{rank}GPU{d.get('index')} {d.get('util')}%  mem {mem / 2**30:.1f}/"
                     f"{(d.get('mem_total') or 0) / 2**30:.0f} GiB")
    return "   ".join(parts)


class Numbers(ViewWidget):
    """Train and val loss, val F and best val F, train F; lr, gamma, alpha, dropout."""

    def key(self, view: RunView):
        return (view.last and view.last.get("epoch"), view.best_val_f, view.best_epoch, view.live, view.step_lr,
                view.adjustments[-1] if view.adjustments else None)

    def draw(self, v: RunView) -> Text:
        e = v.last or {}
        t = Text()
        t.append("loss ", style="dim")
        t.append(f"train {f3(e.get('train_loss'))}  val {f3(e.get('val_loss'))}")
        t.append("   val F ", style="dim")
        t.append(f3(e.get("val_f")), style="bold")
        t.append("  best ", style="dim")
        best = v.best_val_f if isinstance(v.best_val_f, (int, float)) and v.best_val_f >= 0 else None
        t.append(f"{f3(best)}" + (f" @{v.best_epoch}" if best is not None and v.best_epoch else ""), style="bold green")
        t.append("  train F ", style="dim")
        t.append(f3(e.get("train_f")))
        t.append("\n")
        live = v.live
        for i, (label, key) in enumerate((("lr", "lr"), ("gamma", "gamma"), ("alpha", "alpha"), ("dropout", "dropout"))):
            if i:
                t.append("  ")
            t.append(f"{label} ", style="dim")
            t.append(fv(live.get(key)), style="bold")
        if isinstance(v.step_lr, float) and v.step_lr != live.get("lr"):
            t.append(f"  (last step used lr {fv(v.step_lr)})", style="dim")
        if v.adjustments:  # the newest change stays in sight: the adjustment log may be below the fold
            a = v.adjustments[-1]
            t.append("\nlast change ", style="dim")
            append_adjustment(t, a, v.live if a.status == "pending" else None)
            if a.reason:
                t.append(f"  {reason_text(a, v.adjustments)}", style="dim italic")
        return t
