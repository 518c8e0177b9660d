"""Command-line verbs that steer runs: set, pause, stop, checkpoint (`resume`, which also restarts an ended run:
app/commands/run.py; `ls` and `rm`: app/commands/runs.py).

Exit codes for the steering verbs: 0 sent (or, with --wait, acknowledged), 1 refused by the
trainer (nack), 2 bad input (unknown run, malformed KEY=VALUE, a value the live table refuses),
3 no answer (timeout, or the run ended before answering).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from app.runlib import ENDED, Run, default_runs_dir, resolve_run
from trainer.core.live import LIVE_KEYS, format_value, validate
from trainer.core.safe_yaml import typed_value

STATUS_STYLE = {"running": "green", "paused": "yellow", "starting": "cyan", "crashed": "bold red", "stalled": "bold red",
                "finished": "blue", "early_stop": "blue", "stopped": "magenta"}


class BadInput(ValueError):
    pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "set", help="change live settings of a running trainer",
        description="Send absolute values of live settings to a running trainer "
        f"(live keys: {', '.join(LIVE_KEYS)}). Values are YAML: lr=3e-4 alpha=[0.8,0.2,...] hflip=false.",
    )
    p.add_argument("run", help="run name (under --runs-dir) or run directory")
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    add_command_options(p)
    p.set_defaults(func=cmd_set)
    helps = {"pause": "hold a run between steps",
             "stop": "stop a run cleanly (it writes a checkpoint and an end event)",
             "checkpoint": "write a checkpoint now"}
    for verb, h in helps.items():
        p = sub.add_parser(verb, help=h, description=h[0].upper() + h[1:] + ".")
        p.add_argument("run", help="run name (under --runs-dir) or run directory")
        add_command_options(p)
        p.set_defaults(func=cmd_simple, verb=verb)
    from app.commands.runs import register_ls  # here: it imports this module

    register_ls(sub)


def add_command_options(p: argparse.ArgumentParser) -> None:
    """--wait, --timeout, --reason and --runs-dir of a verb that sends a command (also `resume`)."""
    p.add_argument("--wait", action="store_true", help="wait for the trainer's answer")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (kept with the command)")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")


def _err(args: argparse.Namespace, msg: str) -> int:
    print(f"segwatch {args.command}: {msg}", file=sys.stderr)
    return 2


def parse_assignments(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"expected KEY=VALUE, got {item!r} (e.g. lr=3e-4)")
        if not raw.strip():
            raise BadInput(f"{key}: no value after '=' (e.g. {key}=...)")
        if key in values:
            raise BadInput(f"{key} is given twice")
        try:
            values[key] = typed_value(raw)
        except yaml.YAMLError:
            raise BadInput(f"{key}: cannot read the value {raw!r} (YAML: 3e-4, true, [0.8, 1.2])") from None
    return values


def _open(args: argparse.Namespace) -> Run:
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    run = Run(resolve_run(args.run, runs_dir))
    run.refresh()
    if run.state.status in ENDED:
        raise BadInput(f"run '{run.name}' has ended ({run.state.status_detail()}): no trainer reads its commands")
    return run


def cmd_set(args: argparse.Namespace) -> int:
    try:
        values = parse_assignments(args.assignments)
        run = _open(args)
        clean, problem = validate(values, run.state.live, run.state.epoch_in_progress())
        if problem:
            raise BadInput(problem)
        cmd_id = run.send("set", clean, reason=args.reason, source="cli")
    except ValueError as e:  # BadInput, RunNotFound, ControlFileError, or send()'s own validation
        return _err(args, str(e))
    except OSError as e:
        return _err(args, f"cannot write control.jsonl: {e.strerror or e}")
    live = run.state.live
    what = ", ".join(f"{k} {format_value(live[k]) if k in live else '?'} -> {format_value(v)}" for k, v in clean.items())
    print(f"{run.name}: set {what}  (id {cmd_id[:8]})")
    _say_stalled(run)
    if not args.wait:
        return 0
    return _report(run, cmd_id, args)


def cmd_simple(args: argparse.Namespace) -> int:
    try:
        run = _open(args)
        if args.verb == "stop":  # launcher hook: a SLURM job is cancelled when queued, scancel'd as a fallback
            from app import launchers

            done = launchers.for_run(run.path, args).stop(run, args.timeout)
            if done is not None:
                return done
        cmd_id = run.send(args.verb, reason=args.reason, source="cli")
    except ValueError as e:  # BadInput, RunNotFound, ControlFileError
        return _err(args, str(e))
    except OSError as e:
        return _err(args, f"cannot write control.jsonl: {e.strerror or e}")
    print(f"{run.name}: {args.verb}  (id {cmd_id[:8]})")
    _say_stalled(run)
    if not args.wait:
        return 0
    return _report(run, cmd_id, args)


def _say_stalled(run: Run) -> bool:
    """Tell the user (stderr) that the run is stalled: the command waits for the trainer."""
    if run.state.status != "stalled":
        return False
    print(f"segwatch: {run.name} is STALLED: {run.state.stall_detail()}; the command is queued and is "
          "answered when the trainer makes progress again", file=sys.stderr)
    return True


def _report(run: Run, cmd_id: str, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + max(0.0, args.timeout)
    said = run.state.status == "stalled"  # said when it was sent
    while True:  # in slices of at most 1 s, so a stall that starts while we wait is said at once
        left = deadline - time.monotonic()
        ans = run.wait_for_answer(cmd_id, max(0.0, min(left, 1.0)))
        if ans is not None or run.state.status in ENDED or left <= 1.0:
            break
        if not said:
            said = _say_stalled(run)
    if ans is None:
        if run.state.status in ENDED:
            print(f"no answer: the run ended first ({run.state.status_detail()})")
        elif run.state.status == "stalled":
            print(f"no answer within {args.timeout:g} s: the run is {run.state.status_detail()}; "
                  f"the command stays queued (id {cmd_id[:8]})")
        else:
            print(f"no answer within {args.timeout:g} s; the command stays queued (id {cmd_id[:8]})")
        return 3
    where = f"epoch {ans.get('epoch')}, step {ans.get('step')}"
    if ans.get("type") == "ack":
        adj = run.state.adjustment(cmd_id)
        if adj is not None and adj.cmd != "set" and adj.when():  # 'paused after step 91 (epoch 3)': the header's step
            print(f"{adj.when()}: {adj.describe()}")
        else:
            during = " (during validation)" if ans.get("phase") == "validation" else ""
            print(f"applied at {where}{during}: {adj.describe() if adj else ans.get('cmd')}")
        return 0
    print(f"refused: {ans.get('reason') or 'no reason given'}")
    return 1
