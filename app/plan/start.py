"""``segwatch run --serial A.yaml B.yaml [--gate EXPR]`` and ``segwatch run CONFIG --sweep KEY=V1,V2``.

Everything is validated before anything starts (configs with every override, the gate, the
sweep values); then the run directories are reserved, the plan file and each run's plan.json
are written (state "queued"), and the scheduler is started in its own session.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app import launch
from app.health import RulesError, load_rules
from app.plan.gate import DEFAULT_GATE, NAMES, Gate, GateError
from app.plan.model import Plan, PlanItem, plans_dir
from app.preflight import check_data
from trainer.core.config import ConfigError, all_keys, load_config
from trainer.core.live import LIVE_KEYS

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("plans: serial Plan B and sweeps (docs/run-directory.md, Plans)")
    g.add_argument("--serial", action="store_true",
                   help="run the CONFIGs one after the other; each starts only if --gate holds for the run before it")
    g.add_argument("--gate", metavar="EXPR",
                   help=f"with --serial: when the next run starts (default: '{DEFAULT_GATE}', the plan's Plan B: "
                   f"the success threshold of the health rules). Names: {', '.join(NAMES)}")
    g.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="one run per combination of values (repeatable), e.g. --sweep loss.focal_gamma=1,2,3")
    g.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="with --sweep: at most N runs at once, the rest queued (default: one per visible GPU, at least 1)")


def wants_plan(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "serial", False) or getattr(args, "sweep", None)
                or getattr(args, "gate", None) is not None or getattr(args, "max_parallel", None) is not None)


def parse_sweeps(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["loss.focal_gamma=1,2,3"]`` -> ``[("loss.focal_gamma", ["1", "2", "3"])]``; ConfigError if bad."""
    out: list[tuple[str, list[str]]] = []
    known = all_keys()
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not raw.strip():
            raise ConfigError(f"--sweep {item}: expected KEY=V1,V2,..., e.g. --sweep loss.focal_gamma=1,2,3")
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"--sweep {item}: unknown key '{key}'" + (f"; did you mean '{near[0]}'?" if near else ""))
        if any(k == key for k, _ in out):
            raise ConfigError(f"--sweep {item}: {key} is swept twice; give all its values in one --sweep")
        values = [v.strip() for v in raw.split(",")]
        if any(not v for v in values):
            raise ConfigError(f"--sweep {item}: an empty value; allowed: a comma-separated list such as 1,2,3")
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {item}: a value is repeated")
        out.append((key, values))
    return out


def short_key(key: str) -> str:
    for k in LIVE_KEYS.values():
        if k.config_key == key:
            return k.name
    return key.split(".")[-1]


def sweep_name(base: str, combo: list[tuple[str, str]]) -> str:
    return base + "".join(f"-{short_key(k)}{_SAFE.sub('_', v)}" for k, v in combo)


def build_plan(args: argparse.Namespace, runs_dir: Path) -> tuple[Plan, list[Any]]:
    """Validate everything, reserve the run directories, return (plan, config per item)."""
    configs, sets = list(args.configs), list(args.sets)
    sweeps = parse_sweeps(args.sweep or [])
    if args.serial and sweeps:
        raise ConfigError("--serial and --sweep: use one of them (a sweep runs its combinations side by side)")
    if args.gate is not None and not args.serial:
        raise ConfigError("--gate needs --serial (the gate decides whether the next run of a serial plan starts)")
    if args.serial and len(configs) < 2:
        raise ConfigError("--serial needs at least two CONFIGs: the run to try first and the one to run if the gate holds")
    if sweeps and len(configs) != 1:
        raise ConfigError(f"--sweep takes one CONFIG (got {len(configs)}); start one sweep per config")
    if args.max_parallel is not None and not sweeps:
        raise ConfigError("--max-parallel needs --sweep (a serial plan runs one at a time)")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(f"--max-parallel {args.max_parallel}: allowed: an integer >= 1")
    gate_text = (args.gate if args.gate is not None else DEFAULT_GATE) if args.serial else None
    if gate_text is not None:
        try:
            Gate(gate_text)
        except GateError as e:
            raise ConfigError(str(e)) from None
    if args.serial:
        runs = [(c, sets, None, []) for c in configs]
    else:
        base = _SAFE.sub("_", args.name or load_config(configs[0], sets).name)
        runs = []
        for combo in itertools.product(*[[(k, v) for v in vals] for k, vals in sweeps]):
            combo = list(combo)
            runs.append((configs[0], sets + [f"{k}={v}" for k, v in combo], sweep_name(base, combo),
                         [k for k, _ in combo]))
    loaded = [load_config(c, s) for c, s, _, _ in runs]  # every combination validates before anything starts
    for (c, s, _, _), cfg in zip(runs, loaded):
        check_data(cfg, launch._source(Path(c), s))  # data.root before any run directory is reserved
        try:
            load_rules(overrides=cfg.health or None, source=str(c))
        except RulesError as e:
            raise ConfigError(str(e)) from None
    specs = []
    for (c, s, name, _), cfg in zip(runs, loaded):
        nm = name or (f"{args.name}-{cfg.name}" if args.name else None)
        specs += launch.plan_runs([c], s, runs_dir=runs_dir, name=nm, device=args.device, share_gpu=True)
    kind = "serial" if args.serial else "sweep"
    items = [PlanItem(name=sp.name, run_dir=str(sp.run_dir.resolve()), config=str(Path(sp.config).resolve()),
                      trainer_args=sp.trainer_args, after=(i - 1 if args.serial and i else None),
                      gate=gate_text if args.serial and i else None, values={k: cfg.get(k) for k in r[3]}, nproc=sp.nproc)
             for i, (sp, r, cfg) in enumerate(zip(specs, runs, loaded))]
    if kind == "sweep":
        n = args.max_parallel or max(1, len(launch.visible_gpus()) if args.device != "cpu" else 1)
    else:
        n = 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pdir = plans_dir(runs_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{items[0].name}-{stamp}"
    k = 2
    while (pdir / f"{name}.json").exists():
        name, k = f"{kind}-{items[0].name}-{stamp}-{k}", k + 1
    plan = Plan(name=name, kind=kind, path=str((pdir / f"{name}.json").resolve()), runs_dir=str(runs_dir.resolve()),
                items=items, max_parallel=n, gate=gate_text, device=args.device, share_gpu=bool(args.same_gpu))
    plan.save()
    return plan, loaded


def start_scheduler(plan: Plan) -> subprocess.Popen:
    """``python -m app.plan.scheduler PLAN_FILE`` in its own session; output to plans/<name>.log."""
    env = dict(os.environ)
    root = str(launch.PROJECT_ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    log = open(Path(plan.path).with_suffix(".log"), "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "app.plan.scheduler", plan.path], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, env=env, cwd=os.getcwd(), start_new_session=True, close_fds=True)
    finally:
        log.close()


def describe(plan: Plan) -> str:
    """One line for the terminal: what was planned."""
    if plan.kind == "serial":
        chain = f" -> [{plan.gate}] -> ".join(it.name for it in plan.items)
        return f"plan {plan.name}: {chain} (one at a time; the gate reads the run before it)"
    return (f"plan {plan.name}: {len(plan.items)} runs ({', '.join(it.name for it in plan.items)}), "
            f"at most {plan.max_parallel} at once")


def run_plan(args: argparse.Namespace, runs_dir: Path, open_views: Any) -> int:
    """`segwatch run` with --serial / --sweep: plan, start the scheduler, watch every run of the plan."""
    from app.plan.watch import PlanWatch
    from app.runlib import Run

    try:
        plan, cfgs = build_plan(args, runs_dir)
    except ConfigError as e:
        print(f"segwatch: {e}", file=sys.stderr)
        return 2
    proc = start_scheduler(plan)
    print(f"segwatch: {describe(plan)}; scheduler pid {proc.pid}, log {Path(plan.path).with_suffix('.log')}",
          file=sys.stderr)
    runs = [Run(it.run_dir) for it in plan.items]
    rules = [load_rules(overrides=cfg.health or None, source=it.config) for cfg, it in zip(cfgs, plan.items)]
    return open_views(runs, rules, args, plan=PlanWatch(plan.path, proc))
