"""What a report needs from one run, read from its record (config.yaml, meta.json, events, control)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.plan.model import read_run_record
from app.runlib import Run
from trainer.core.classes import NUM_CLASSES, SMALL_CLASSES

IGNORED_DIFF_KEYS = ("name",)


@dataclass
class RunRecord:
    name: str
    path: Path
    config: dict  # config.yaml as written at the start (before any live adjustment)
    flat: dict  # "section.key" -> value
    meta: dict
    status: str
    ended: str  # how it ended, in words
    best_val_f: float | None
    best_epoch: int | None
    best: dict  # the epoch event of the best epoch ({} if none)
    history: list  # epoch events, in epoch order
    epochs_done: int
    total_epochs: int | None
    train_seconds: float | None  # sum of epoch_time over the epochs kept in the record
    adjustments: list  # app.runlib Adjustment objects (set commands)
    other_commands: int  # pause/resume/stop/checkpoint commands
    plan: dict | None = None
    synthetic: bool = False
    params: int | None = None
    warnings: dict = field(default_factory=dict)

    @property
    def attention(self) -> Any:
        return self.flat.get("model.attention")

    @property
    def use_focal(self) -> Any:
        return self.flat.get("loss.use_focal")

    def per_class(self) -> list:
        pc = self.best.get("per_class_f")
        return list(pc) if isinstance(pc, list) and len(pc) == NUM_CLASSES else [None] * NUM_CLASSES

    def small_mean(self) -> float | None:
        """Mean per-class F (best epoch) over the small parts (trainer.core.classes.SMALL_CLASSES)."""
        vals = [v for c, v in enumerate(self.per_class()) if c in SMALL_CLASSES and isinstance(v, (int, float))]
        return sum(vals) / len(vals) if vals else None


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _ended(st: Any) -> str:
    s = st.status
    done, total = st.last_epoch, st.total_epochs
    if s == "finished":
        return f"finished ({done}/{total} epochs)"
    if s == "early_stop":
        return f"early stop at epoch {done} of {total}"
    if s == "stopped":
        return f"stopped at epoch {done} of {total}"
    if s == "crashed":
        return f"crashed after epoch {done}: {st.crash_reason}"
    if s in ("queued", "skipped"):
        return st.status_detail()
    return f"{s} (epoch {done} of {total}): still training; numbers so far"


def collect(run_dir: str | Path) -> RunRecord:
    run = Run(run_dir)
    run.refresh(max_bytes=4 << 20)
    while run.events_tail.more:
        run.refresh(max_bytes=4 << 20)
    st = run.state
    hist = st.history()
    best = st.epochs.get(st.best_epoch, {}) if st.best_epoch is not None else {}
    times = [h["epoch_time"] for h in hist if isinstance(h.get("epoch_time"), (int, float))]
    sets = [a for a in st.adjustments if a.cmd == "set"]
    return RunRecord(
        name=st.name or run.name, path=Path(run_dir), config=st.config, flat=flatten(st.config), meta=st.meta,
        status=st.status, ended=_ended(st), best_val_f=st.best_val_f, best_epoch=st.best_epoch, best=dict(best),
        history=hist, epochs_done=st.last_epoch, total_epochs=st.total_epochs,
        train_seconds=sum(times) if times else None, adjustments=sets,
        other_commands=len(st.adjustments) - len(sets), plan=read_run_record(run_dir),
        synthetic=bool(st.meta.get("synthetic")), params=st.meta.get("params"), warnings=dict(st.warning_counts),
    )


def config_diff(rec: RunRecord, base: RunRecord) -> list[tuple[str, Any, Any]]:
    """(key, baseline value, this run's value) for every config key that differs, in key order."""
    keys = sorted(set(rec.flat) | set(base.flat))
    out = []
    for k in keys:
        if k in IGNORED_DIFF_KEYS:
            continue
        a, b = base.flat.get(k), rec.flat.get(k)
        if a != b:
            out.append((k, a, b))
    return out
