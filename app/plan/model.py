"""Plans: queues of runs that segwatch starts for you (serial Plan B, sweeps).

A plan is one JSON file, ``<runs>/plans/<plan>.json``, plus a ``plan.json`` in each of its run
directories (docs/run-directory.md, "Plans"). Both are rewritten atomically (temp file +
rename) by ONE writer: ``segwatch run`` when it creates the plan, then the plan's scheduler
(``python -m app.plan.scheduler``). Readers (the cockpit, the headless mode, ``segwatch
report``) only read. Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.health import load_rules
from app.runlib import Run, safeio
from trainer.core.safe_yaml import as_number

PLAN_VERSION = 1
#: queued -> started -> ended, or queued -> skipped (a gate did not hold, or the run before it
#: did not run) / cancelled (the plan was cancelled before it started)
ITEM_STATES = ("queued", "started", "ended", "skipped", "cancelled")
NOT_STARTED = ("queued", "skipped", "cancelled")
RUN_RECORD = "plan.json"


@dataclass
class PlanItem:
    name: str
    run_dir: str
    config: str
    trainer_args: list
    after: int | None = None  # serial: index of the run whose result the gate reads
    gate: str | None = None
    values: dict = field(default_factory=dict)  # sweep: {"loss.focal_gamma": 2, ...}
    nproc: int = 1
    state: str = "queued"
    gpus: str | None = None
    started_t: float | None = None
    ended_t: float | None = None
    decision: dict | None = None  # why it started or was skipped (serial runs after the first)
    result: dict | None = None  # the gate values of this run once it ended
    supervisor_pid: int | None = None


@dataclass
class Plan:
    name: str
    kind: str  # "serial" | "sweep"
    path: str  # the plan file
    runs_dir: str
    items: list
    max_parallel: int = 1
    gate: str | None = None
    created: float = field(default_factory=time.time)
    status: str = "created"  # created | running | done | cancelled | failed
    scheduler_pid: int | None = None
    device: str = "auto"
    share_gpu: bool = False
    note: str = ""  # the last thing the scheduler wants people to know

    # --- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["v"] = PLAN_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if not isinstance(d, dict) or d.get("v") != PLAN_VERSION:
            raise ValueError(f"not a version-{PLAN_VERSION} plan file")
        known = {f.name for f in fields(PlanItem)}
        items = [PlanItem(**{k: v for k, v in it.items() if k in known}) for it in d.get("items", [])]
        top = {f.name for f in fields(cls)} - {"items"}
        return cls(items=items, **{k: v for k, v in d.items() if k in top})

    def save(self) -> None:
        atomic_json(Path(self.path), self.to_dict())
        for i, _ in enumerate(self.items):
            self.save_run_record(i)

    def save_run_record(self, i: int) -> None:
        """``plan.json`` in item i's run directory: its place in the plan and every decision."""
        it = self.items[i]
        nxt = [dict(o.decision, run=o.name) for o in self.items if o.after == i and o.decision]
        rec = {
            "v": PLAN_VERSION, "plan": self.name, "plan_file": self.path, "kind": self.kind, "index": i,
            "of": len(self.items), "state": it.state, "after": self.items[it.after].name if it.after is not None else None,
            "gate": it.gate, "values": it.values, "decision": it.decision, "next": nxt,
            "queue": [o.name for o in self.items], "t": time.time(),
        }
        d = Path(it.run_dir)
        if d.is_dir():
            atomic_json(d / RUN_RECORD, rec)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled", "failed")


def atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def load_plan(path: str | os.PathLike) -> Plan:
    try:
        data = safeio.load_json(path, safeio.LARGE)
    except safeio.Refused as e:
        raise ValueError(f"{path}: {e.why}; not read") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the plan file: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    try:
        return Plan.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def plans_dir(runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / "plans"


def list_plans(runs_dir: str | os.PathLike) -> list[Path]:
    try:
        return sorted(plans_dir(runs_dir).glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    except OSError:
        return []


def read_run_record(run_dir: str | os.PathLike) -> dict | None:
    """A run's ``plan.json`` (None when it was not started by a plan, or is unreadable)."""
    try:
        d = safeio.load_json(Path(run_dir) / RUN_RECORD)
    except (OSError, ValueError):  # safeio.Refused is an OSError
        return None
    return safeio.clean_value(d) if isinstance(d, dict) else None


# --- the result a gate reads ----------------------------------------------------------------

def rules_thresholds(config: dict, source: str) -> tuple[float | None, float | None, str]:
    """(success, acceptable, problem) from a run config's ``health:`` overrides."""
    try:
        rules = load_rules(overrides=config.get("health") or None, source=source)
    except Exception as e:  # noqa: BLE001 - RulesError, or a broken config: say so, use nothing
        return None, None, f"{source}: {e}"
    t = rules.thresholds
    return float(t.late_success), float(t.late_acceptable), ""


def read_result(run_dir: str | os.PathLike) -> dict:
    """The gate's names (app.plan.gate.NAMES) for a run, from its record."""
    run = Run(run_dir)
    run.refresh(max_bytes=4 << 20)
    while run.events_tail.more:
        run.refresh(max_bytes=4 << 20)
    return result_of(run)


def result_of(run: Any) -> dict:
    st = run.state
    hist = st.history()
    last = hist[-1] if hist else {}
    best = st.epochs.get(st.best_epoch) if st.best_epoch is not None else None
    times = [h.get("epoch_time") for h in hist if isinstance(h.get("epoch_time"), (int, float))]
    success, acceptable, problem = rules_thresholds(st.config, str(Path(run.path) / "config.yaml"))
    return {
        "best_val_f": st.best_val_f, "best_epoch": st.best_epoch,
        "final_val_f": _num(last.get("val_f")), "final_train_f": _num(last.get("train_f")),
        "pooled_f": _num((best or {}).get("pooled_f")), "epochs": st.last_epoch,
        "total_epochs": st.total_epochs, "train_minutes": round(sum(times) / 60.0, 4) if times else None,
        "status": st.status, "success_threshold": success, "acceptable_threshold": acceptable,
        **({"rules_problem": problem} if problem else {}),
    }


_num = as_number
