"""Plans under SLURM, without a long-lived process on the login node (docs/slurm.md, "Plans").

``segwatch run --serial A.yaml B.yaml --launcher slurm``: the plan is built and validated exactly
as locally (app.plan.start.build_plan: every config, the gate, the run directories, the plan file
and each run's plan.json); then each run is submitted at once as its own job, each depending on
the job before it (``--dependency=afterany:<job>``). When a dependent job starts, it evaluates
its gate against the run before it (its record, as the local scheduler reads it) and either
trains or ends at once, the decision written into the plan and both runs' plan.json.

``--sweep ... --max-parallel K --launcher slurm``: one job array (``--array=0-N%K``), one task
per combination; each task marks its run started / ended in the plan.

The plan file is rewritten by the jobs themselves, under an flock on ``plans/<plan>.lock``
(several array tasks may end together). ``plans/<plan>.slurm`` (JSON, not ``*.json``: it is no
plan) records the job ids and marks the plan as run by SLURM: app/plan/watch.py does not call it
abandoned for want of a scheduler process.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from app import launch
from app.launchers.slurm_job import TrainerJob


@contextmanager
def plan_lock(plan_path: str | Path) -> Iterator[None]:
    with open(Path(plan_path).with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def marker_path(plan_path: str | Path) -> Path:
    return Path(plan_path).with_suffix(".slurm")


class PlanItemJob:
    """One run of a plan, inside its SLURM job: decide (gate), train, record the result."""

    def __init__(self, plan_path: str, index: int, trainer: TrainerJob):
        self.plan_path = str(plan_path)
        self.index = index
        self.trainer = trainer

    def __call__(self) -> int:
        if not self._decide():
            return 0  # skipped or cancelled: ends without training (the job COMPLETES)
        try:
            return self.trainer()
        finally:
            self._ended()

    def _decide(self) -> bool:
        from app.plan.gate import Gate
        from app.plan.model import load_plan, read_result

        with plan_lock(self.plan_path):
            plan = load_plan(self.plan_path)
            it = plan.items[self.index]
            if it.state != "queued":
                return it.state == "started"  # a requeued job: already decided to train
            if it.after is not None:
                prev = plan.items[it.after]
                if prev.state == "started":  # SLURM ended it (time limit, scancel...): its job never said so
                    prev.state, prev.ended_t, prev.result = "ended", time.time(), read_result(prev.run_dir)
                base = {"t": time.time(), "after": prev.name, "gate": it.gate}
                if prev.state != "ended":
                    it.decision = {**base, "holds": False, "action": "skip", "values": {},
                                   "why": f"{prev.name} did not run ({prev.state})"}
                else:
                    res = Gate(it.gate or "", where=f"gate of {it.name}").evaluate(prev.result or {})
                    it.decision = {**base, "holds": res.holds, "action": "start" if res.holds else "skip",
                                   "values": res.values,
                                   "why": f"after {prev.name} ({(prev.result or {}).get('status')}): {res.why}"}
                if it.decision["action"] == "skip":
                    it.state = "skipped"
                    plan.note = f"{it.name} skipped: {it.decision['why']}"
                    _finish_if_done(plan)
                    plan.save()
                    return False
            it.state, it.started_t = "started", time.time()
            plan.note = f"started {it.name} (SLURM job {_job_id()})"
            plan.save()
            return True

    def _ended(self) -> None:
        from app.plan.model import load_plan, read_result

        with plan_lock(self.plan_path):
            plan = load_plan(self.plan_path)
            it = plan.items[self.index]
            it.state, it.ended_t = "ended", time.time()
            it.result = read_result(it.run_dir)
            plan.note = f"{it.name} ended: {it.result.get('status')}"
            _finish_if_done(plan)
            plan.save()


def _finish_if_done(plan: Any) -> None:
    if all(it.state in ("ended", "skipped", "cancelled") for it in plan.items):
        plan.status = "done"


def _job_id() -> str:
    import os

    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}" if task else os.environ.get("SLURM_JOB_ID", "?")


def submit_plan(args: argparse.Namespace, runs_dir: Path, launcher: Any, open_views: Any) -> int:
    """`segwatch run --serial/--sweep --launcher slurm`: build the plan, submit its jobs, watch."""
    from app.health import load_rules
    from app.launchers import LauncherError
    from app.plan import start as plan_start
    from app.plan.watch import PlanWatch
    from app.runlib import Run
    from trainer.core.config import ConfigError

    try:
        plan, cfgs = plan_start.build_plan(args, runs_dir)
    except ConfigError as e:
        print(f"segwatch: {e}", file=sys.stderr)
        return 2
    specs = [launch.LaunchSpec(Path(it.config), Path(it.run_dir), it.name, list(it.trainer_args), None, it.nproc)
             for it in plan.items]
    fns = [launcher.trainer_job(sp, launcher.fresh_args(sp)) for sp in specs]
    jobs = [PlanItemJob(plan.path, i, fn) for i, fn in enumerate(fns)]
    folder = Path(plan.path).with_name(f"{plan.name}-slurm")
    plan.status, plan.note = "running", "submitted to SLURM"
    plan.save()
    try:
        if plan.kind == "serial":
            ids: list[str] = []
            for i, job in enumerate(jobs):
                more = {"dependency": f"afterany:{ids[-1]}"} if ids else {}
                ids += launcher.submit_callables(folder, plan.items[i].name, specs[i].nproc, [job], **more)
        else:
            ids = launcher.submit_callables(folder, plan.name, max(sp.nproc for sp in specs), jobs,
                                            array_parallelism=plan.max_parallel)
    except LauncherError as e:
        plan.status, plan.note = "failed", str(e)
        plan.save()
        print(f"segwatch: {e}", file=sys.stderr)
        return 2
    for sp, fn, jid in zip(specs, fns, ids):
        launcher.record_job(sp.run_dir, jid, "plan", folder, fn)
    marker_path(plan.path).write_text(json.dumps({"v": 1, "launcher": "slurm", "jobs": ids, "folder": str(folder)}) + "\n")
    how = "one after the other (afterany dependencies)" if plan.kind == "serial" else \
        f"as a job array, at most {plan.max_parallel} at once"
    print(f"segwatch: {plan_start.describe(plan)}; submitted to SLURM {how}: jobs {', '.join(ids)}", file=sys.stderr)
    runs = [Run(it.run_dir) for it in plan.items]
    rules = [load_rules(overrides=cfg.health or None, source=it.config) for cfg, it in zip(cfgs, plan.items)]
    return open_views(runs, rules, args, plan=PlanWatch(plan.path))



def cancel_plan(plan_path: str | Path) -> str:
    """`segwatch plan NAME --cancel` for a SLURM plan: scancel the jobs of runs not started yet."""
    from app.launchers.jobinfo import read_record
    from app.launchers.slurm import _scancel
    from app.plan.model import load_plan

    with plan_lock(plan_path):
        plan = load_plan(plan_path)
        done = []
        for it in plan.items:
            if it.state != "queued":
                continue
            job_id = str((read_record(Path(it.run_dir)) or {}).get("job_id") or "")
            if job_id:
                _scancel(Path(it.run_dir), job_id, "segwatch plan --cancel")
            it.state = "cancelled"
            it.decision = {"t": time.time(), "action": "skip", "holds": None, "gate": it.gate, "values": {},
                           "after": plan.items[it.after].name if it.after is not None else None,
                           "why": "the plan was cancelled (segwatch plan --cancel)"}
            done.append(f"{it.name} (job {job_id or '?'})")
        plan.status = "cancelled"
        plan.note = "cancelled: " + (", ".join(done) or "nothing was queued") + "; runs already started go on"
        plan.save()
    return plan.note
