"""`segwatch plan [PLAN] [--cancel]`: list plans, show one (queue, gates, decisions), cancel one."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from app.runlib import default_runs_dir
from app.runlib.safeio import clean


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="list plans (serial Plan B, sweeps), show one's queue and decisions, or cancel it",
        description="Plans are started by `segwatch run --serial ...` or `segwatch run CONFIG --sweep ...`. "
        "Without PLAN: list the plans under the runs folder. --cancel: runs not started yet never start "
        "(runs already training go on; stop them with `segwatch stop`).",
    )
    p.add_argument("plan", nargs="?", metavar="PLAN", help="plan name (under RUNS/plans) or plan file")
    p.add_argument("--cancel", action="store_true", help="cancel the plan's queued runs")
    p.add_argument("--continue", dest="continue_", action="store_true",
                   help="continue an interrupted plan (its scheduler died) from where it stopped: runs already "
                   "started are followed to their end, queued runs start as their gates decide; decisions so far are kept")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")
    p.set_defaults(func=cmd_plan)


def _find(arg: str, runs_dir: Path) -> Path | None:
    from app.plan.model import plans_dir

    for cand in (Path(arg), plans_dir(runs_dir) / arg, plans_dir(runs_dir) / f"{arg}.json"):
        if cand.is_file():
            return cand
    return None


def cmd_plan(args: argparse.Namespace) -> int:
    from app.plan.model import list_plans
    from app.plan.watch import PlanWatch

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if not args.plan:
        if args.cancel:
            print("segwatch: --cancel needs a PLAN", file=sys.stderr)
            return 2
        found = list_plans(runs_dir)
        if not found:
            print(f"no plans under {runs_dir} (start one: segwatch run --serial A.yaml B.yaml)")
            return 0
        for f in found:
            w = PlanWatch(f)
            w.refresh()
            if w.plan is None:
                print(f"{f.stem}: {w.error}")
                continue
            pl = w.plan
            print(clean(f"{pl.name}  {pl.kind}  {w.status()}  " + ", ".join(f"{it.name}:{w.item_state(it)}" for it in pl.items)))
        return 0
    path = _find(args.plan, runs_dir)
    if path is None:
        names = [f.stem for f in list_plans(runs_dir)]
        print(f"segwatch: no plan '{args.plan}' under {runs_dir}/plans"
              + (f" (plans: {', '.join(names[-5:])})" if names else ""), file=sys.stderr)
        return 2
    w = PlanWatch(path)
    w.refresh()
    if w.plan is None:
        print(f"segwatch: {w.error}", file=sys.stderr)
        return 2
    if args.continue_ and args.cancel:
        print("segwatch: --continue and --cancel: use one of them", file=sys.stderr)
        return 2
    if args.continue_:
        rc = _continue(w)
        if rc:
            return rc
    if args.cancel:
        if w.plan.finished:
            print(f"segwatch: plan {w.plan.name} is already {w.plan.status}", file=sys.stderr)
            return 2
        if path.with_suffix(".slurm").exists():  # run by SLURM jobs: cancel the queued ones (app/launchers)
            from app.launchers.slurm_plan import cancel_plan

            print(f"segwatch: plan {w.plan.name} {cancel_plan(path)}", file=sys.stderr)
            w.refresh()
        else:
            if not w.scheduler_alive():
                print(f"segwatch: the scheduler of {w.plan.name} is gone; nothing will start", file=sys.stderr)
                return 1
            os.kill(w.plan.scheduler_pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (w.refresh() and w.plan.finished):
                if w.plan.finished:
                    break
                time.sleep(0.1)  # another process's file: nothing to wait on but the file itself
    p = w.plan
    print(clean(f"plan {p.name} ({p.kind}, {w.status()}; at most {p.max_parallel} at once)"))
    for i, it in enumerate(p.items):
        line = f"  {i + 1}. {it.name:<24} {w.item_state(it)}"
        if it.gate:
            line += f"   gate: {it.gate}"
        print(clean(line))
        if it.decision and it.decision.get("why"):
            print(clean(f"       {it.decision.get('action')}: {it.decision['why']}"))
    if p.note:
        print(clean(f"  last: {p.note}"))
    return 0


def _continue(w) -> int:
    """Start a new scheduler on an interrupted plan; 0 once it has taken the plan over."""
    from app.plan.start import start_scheduler

    p = w.plan
    if p.finished:
        print(f"segwatch: plan {p.name} is {p.status}: nothing to continue", file=sys.stderr)
        return 2
    if Path(p.path).with_suffix(".slurm").exists():
        print(f"segwatch: plan {p.name} is run by SLURM jobs (no scheduler process): nothing to continue",
              file=sys.stderr)
        return 2
    if w.scheduler_alive():
        print(f"segwatch: plan {p.name} is running (scheduler pid {p.scheduler_pid}): nothing to continue",
              file=sys.stderr)
        return 2
    proc = start_scheduler(p)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            w.refresh()
            if proc.returncode == 0 and w.plan.finished:
                print(f"segwatch: plan {p.name} continued and is {w.plan.status}", file=sys.stderr)
                return 0
            print(f"segwatch: the scheduler of {p.name} exited at once (code {proc.returncode}); "
                  f"see {Path(p.path).with_suffix('.log')}", file=sys.stderr)
            return 1
        w.refresh()
        if w.plan.scheduler_pid == proc.pid:
            print(f"segwatch: plan {p.name} continued (scheduler pid {proc.pid})", file=sys.stderr)
            return 0
        time.sleep(0.05)  # another process's file: nothing to wait on but the file itself
    print(f"segwatch: the new scheduler of {p.name} (pid {proc.pid}) has not taken the plan over after 30 s",
          file=sys.stderr)
    return 1
