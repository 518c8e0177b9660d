"""An immutable picture of one run, built off the UI thread, drawn by the UI thread.

The watcher thread owns the ``Run`` objects (app.runlib); after each refresh it builds a
:class:`RunView` (plain values and copies, nothing shared with the Run) and hands it over, so
widgets never read state that another thread is mutating. Pure Python: no Textual, no torch;
the headless mode uses it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from app.health import applied_presets, evaluate
from app.health.evaluate import Verdict
from app.runlib import ENDED, Adjustment, Run, RunState
from app.runlib.records import answer_words

OVER = (*ENDED, "skipped")  # skipped: by a plan (app/plan)
MAX_PLOT_POINTS = 240


@dataclass(frozen=True)
class AdjustView:
    id: str
    cmd: str
    values: dict
    reason: str
    source: str
    sent_t: float
    status: str  # pending | applied | refused
    changes: dict
    answer_epoch: Any
    answer_step: Any
    answer_reason: str
    answer_phase: Any = None  # "validation": acked while an epoch was validating

    def when(self) -> str:
        """'applied at step 81 (during validation of epoch 2)', 'paused after step 91 (epoch 3)'."""
        return answer_words(self.cmd, self.status, self.answer_step, self.answer_epoch, self.answer_phase)


@dataclass(frozen=True)
class RunView:
    index: int
    run_dir: str
    name: str
    status: str
    status_detail: str
    colour: str  # green | yellow | red
    phase: str
    summary: str
    epoch: int  # last completed epoch
    total_epochs: int
    progress: float  # 0..1, includes the epoch in progress
    eta_at: float | None  # unix time the run should end
    samples_per_s: float | None
    step: int | None
    step_lr: float | None  # the LR the last step used (schedule applied)
    last: dict | None  # the latest epoch event
    best_val_f: float | None
    best_epoch: int | None
    live: dict
    signals: tuple = ()
    actions: tuple = ()
    loss_steps: tuple = ((), ())  # (x in epochs, train loss) from step events
    train_loss: tuple = ((), ())
    val_loss: tuple = ((), ())
    val_f: tuple = ((), ())
    train_f: tuple = ((), ())
    per_class: tuple = ()  # latest epoch, 19 values (None = absent)
    per_class_prev: tuple = ()
    by_epoch: dict = field(default_factory=dict)  # epoch -> (val_f, per_class_f), for compare
    adjustments: tuple = ()
    warnings: tuple = ()  # the last few warning events
    warning_counts: dict = field(default_factory=dict)
    unreadable: int = 0  # record lines / events skipped because they could not be read
    read_note: str = ""  # what went wrong reading the record (a deleted events.jsonl, the last bad line)
    exit_info: dict | None = None
    crash_reason: str = ""
    stderr_tail: tuple = ()
    gpu: list | None = None  # one dict per device (rank) of the run: app.gpu
    data: dict | None = None  # the start event's description of the data (trainer/datainfo.py)
    built_t: float = 0.0
    wall_s: float | None = None  # an ended run's wall time (start to end; summed epoch times after a resume)
    alpha_info: dict | None = None  # the start event's `alpha_info` (what the focal alpha weights)
    steps_per_epoch: int = 0  # from the start event (0: unknown); the overlay's step-aligned x axis

    @property
    def over(self) -> bool:
        return self.status in OVER


def downsample(xs: Sequence, ys: Sequence, n: int = MAX_PLOT_POINTS) -> tuple[tuple, tuple]:
    """At most ``n`` points: buckets averaged, the first and last point always kept."""
    keep = [i for i, y in enumerate(ys) if y is not None] if None in ys else None
    px = list(xs) if keep is None else [xs[i] for i in keep]
    py = list(ys) if keep is None else [ys[i] for i in keep]
    if len(px) <= n:
        return tuple(px), tuple(py)
    size = len(px) / (n - 1)
    ox, oy = [], []
    for b in range(n - 1):
        lo = int(b * size)
        hi = max(int((b + 1) * size), lo + 1)
        ox.append(sum(px[lo:hi]) / (hi - lo))
        oy.append(sum(py[lo:hi]) / (hi - lo))
    ox.append(px[-1])
    oy.append(py[-1])
    return tuple(ox), tuple(oy)


def _adjust_view(a: Adjustment) -> AdjustView:
    return AdjustView(
        id=str(a.id), cmd=str(a.cmd), values=dict(a.values or {}), reason=a.reason or "",
        source=a.source or "", sent_t=a.sent_t or 0.0, status=a.status or "pending",
        changes=dict(a.changes or {}), answer_epoch=a.answer_epoch, answer_step=a.answer_step,
        answer_reason=a.answer_reason or "",
        answer_phase=a.answer.get("phase") if isinstance(a.answer, dict) else None,
    )


def _verdict(history: list, state: RunState, rules: Any) -> Verdict | _Fallback:
    try:
        return evaluate(history, rules, live=dict(state.live or {}), run_state=state.status,
                        total_epochs=state.total_epochs, warnings=list(state.warnings or ()),
                        applied=applied_presets(state.adjustments or ()))
    except Exception as e:  # a rules bug must not take the cockpit down
        return _Fallback(summary=f"health rules failed: {type(e).__name__}: {e}")


@dataclass
class _Fallback:
    summary: str
    phase: str = "?"
    status: str = "yellow"
    signals: tuple = ()
    actions: tuple = ()


def build_view(index: int, run: Run, rules: Any, gpu: list | None = None, verdict: Verdict | None = None) -> RunView:
    """Snapshot a refreshed ``Run``; call it on the thread that owns the run."""
    st = run.state
    history = list(st.history())
    v = verdict if verdict is not None else _verdict(history, st, rules)
    last = history[-1] if history else None
    start = st.start or {}
    spe = start.get("steps_per_epoch") or 0
    total = st.total_epochs or start.get("epochs") or 0
    done = last["epoch"] if last else int(start.get("resume_epoch") or 0)
    progress = 0.0
    ls = st.last_step
    if total:
        frac = 0.0
        if ls and spe and ls.get("epoch", 0) > done:
            base = last["step"] if last and last.get("step") is not None else done * spe
            frac = min(max((ls.get("step", 0) - base) / spe, 0.0), 1.0)
        progress = min((done + frac) / total, 1.0)
    eta_at = None
    if last and last.get("eta_s") is not None and st.status in ("running", "paused", "starting"):
        eta_at = last.get("t", time.time()) + last["eta_s"]
    steps = list(st.steps or ())
    sx = [p.step / spe if spe else p.epoch for p in steps]
    sy = [p.loss for p in steps]
    ex = [h["epoch"] for h in history]
    status = st.status
    colour = "red" if status in ("crashed", "stalled") else (v.status or "green")
    try:
        tail = error_lines(run) if status == "crashed" else ()
    except Exception:
        tail = ()
    warns = list(st.warnings or ())
    return RunView(
        index=index, run_dir=str(run.path), name=st.name or run.name, status=status,
        status_detail=_safe(st.status_detail), colour=colour, phase=v.phase or "?",
        summary=v.summary or "", epoch=done, total_epochs=total, progress=progress,
        eta_at=eta_at, samples_per_s=(ls or {}).get("samples_per_s"), step=st.reported_step,
        step_lr=(ls or {}).get("lr"),
        last=dict(last) if last else None, best_val_f=st.best_val_f, best_epoch=st.best_epoch,
        live=dict(st.live or {}), signals=tuple(v.signals or ()),
        actions=tuple(v.actions or ()),
        loss_steps=downsample(sx, sy), train_loss=downsample(ex, [h.get("train_loss") for h in history]),
        val_loss=downsample(ex, [h.get("val_loss") for h in history]),
        val_f=downsample(ex, [h.get("val_f") for h in history]),
        train_f=downsample(ex, [h.get("train_f") for h in history]),
        per_class=tuple(last.get("per_class_f") or ()) if last else (),
        per_class_prev=tuple(history[-2].get("per_class_f") or ()) if len(history) > 1 else (),
        by_epoch={h["epoch"]: (h.get("val_f"), tuple(h.get("per_class_f") or ())) for h in history},
        adjustments=tuple(_adjust_view(a) for a in (st.adjustments or ())[-50:]),
        warnings=tuple(dict(w) for w in warns[-5:]), warning_counts=dict(st.warning_counts or {}),
        unreadable=st.unreadable, read_note=st.read_note,
        exit_info=dict(st.exit_info) if st.exit_info else None, crash_reason=st.crash_reason or "",
        stderr_tail=tail, gpu=gpu, built_t=time.time(), wall_s=_wall_s(st, history) if status in OVER else None,
        data=dict(start["data"]) if isinstance(start.get("data"), dict) else None,
        alpha_info=dict(start["alpha_info"]) if isinstance(start.get("alpha_info"), dict) else None,
        steps_per_epoch=spe if type(spe) is int and spe > 0 else 0,
    )


def _wall_s(st: RunState, history: list) -> float | None:
    """Start to end of every trainer segment, summed (the pauses between a stop and its resume
    left out); the summed epoch times only where the record has no usable times."""
    seg = st.segment_wall()
    if seg is not None:
        return float(st.wall_before + seg)
    times = [h.get("epoch_time") for h in history if isinstance(h.get("epoch_time"), (int, float))]
    return float(sum(times)) if times else None


ERROR_HEAD = "segwatch trainer: error:"  # how the trainer starts a config/data error (exit 2)
MAX_ERROR_LINES = 40


def error_lines(run: Run) -> tuple[str, ...]:
    """What to show under a crashed run: the trainer's whole error message when it refused to start
    (a config or data error lists every problem, header first), capped at MAX_ERROR_LINES; else the
    last 8 lines of stderr (the end of a traceback)."""
    lines = list(run.stderr_tail(400, max_bytes=256 * 1024))
    for k in range(len(lines) - 1, -1, -1):
        if lines[k].startswith(ERROR_HEAD):
            err = lines[k:]
            if len(err) > MAX_ERROR_LINES:
                err = err[:MAX_ERROR_LINES - 1] + [f"... and {len(err) - MAX_ERROR_LINES + 1} more lines in stderr.log"]
            return tuple(err)
    return tuple(lines[-8:])


def _safe(fn: Any) -> str:
    try:
        return fn() if callable(fn) else str(fn or "")
    except Exception:
        return ""


def undo_target(adjustments: Sequence[AdjustView]) -> AdjustView | None:
    """The latest applied ``set`` that is not itself an undo and has not been undone."""
    undone = {a.reason.split()[1] for a in adjustments if a.reason.startswith("undo ") and len(a.reason.split()) > 1}
    for a in reversed(adjustments):
        if a.cmd == "set" and a.status == "applied" and a.changes and not a.reason.startswith("undo ") \
                and a.id not in undone and a.id[:8] not in undone:
            return a
    return None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = max(int(seconds), 0)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"
