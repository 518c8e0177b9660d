"""`segwatch run`, `segwatch attach`, `segwatch resume`: start or find runs, open the cockpit.

The cockpit (Textual) is imported only when it opens; with ``--headless`` or when stdout is not
a terminal, one line per epoch per run is printed instead (app.headless).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from app import launch, launchers
from app.commands import control
from app.health import Rules, RulesError, load_rules, plot_thresholds
from app.plan import start as plan_start
from app.runlib import Run, RunNotFound, default_runs_dir, list_runs, resolve_run
from trainer.core.config import ConfigError, load_config

ALIVE = ("starting", "running", "paused", "stalled")  # stalled: alive, no progress (never start a second trainer)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="start trainers (one per config, in parallel) and open the cockpit",
        description="Start one trainer per CONFIG in the background (each in its own process session: "
        "quitting the cockpit or losing the SSH connection never stops them), then watch them live.",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config file(s), e.g. configs/lmsa_focal.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run (repeatable), e.g. --set training.epochs=50")
    p.add_argument("--name", help="run name (default: the config's name); with several configs NAME-<config name>")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--same-gpu", action="store_true",
                   help="let all runs share the visible GPUs (default: one GPU per run when several are visible)")
    _view_options(p)
    plan_start.add_arguments(p)
    launchers.add_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "attach", help="open the cockpit on existing runs (running or finished)",
        description="Watch runs that are already there, with their whole history, whoever started them. "
        "Without RUN: every running run under the runs folder.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN", help="run name (under --runs-dir) or run directory")
    _view_options(p)
    p.set_defaults(func=cmd_attach)

    # one verb continues a run whatever its state: paused -> the `resume` command (as the control
    # verbs send theirs), ended -> restart from the last checkpoint and attach
    p = sub.add_parser("resume", help="continue a paused run, or restart a stopped or crashed one from its checkpoint",
                       description="Continue a paused run. A stopped or crashed run is restarted from its last checkpoint; "
                       "with --epochs N a finished one too, trained on to N epochs in all.")
    p.add_argument("run", help="run name (under --runs-dir) or run directory")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="restart an ended run (finished, stopped, crashed) and train it to N epochs in all: a "
                   "`set epochs N` is queued before the trainer starts, so the schedule is recomputed exactly as "
                   "for a live epochs change (docs/control.md)")
    control.add_command_options(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device for a restarted run")
    p.add_argument("--allow-reshape", action="store_true", help=RESHAPE_HELP)
    _view_options(p, skip_existing=True)
    launchers.add_arguments(p)
    p.set_defaults(func=cmd_resume, verb="resume")


RESHAPE_HELP = ("a DDP run restarts on the process count it was trained with; this lets it continue on fewer "
                "where fewer GPUs are visible (the step counter is rescaled to the new steps per epoch)")


def _add_missing(p: argparse.ArgumentParser, flag: str, **kw: Any) -> None:
    if flag not in p._option_string_actions:
        p.add_argument(flag, **kw)


def _view_options(p: argparse.ArgumentParser, skip_existing: bool = False) -> None:
    add = (lambda flag, **kw: _add_missing(p, flag, **kw)) if skip_existing else p.add_argument
    add("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")
    add("--headless", action="store_true",
        help="no TUI: one line per epoch per run (automatic when stdout is not a terminal)")
    add("--interval", type=float, default=None, metavar="S",
        help="seconds between reads of the records (default 0.25 in the TUI, 2 headless)")
    add("--no-gpu", action="store_true", help="do not query GPU utilisation (nvidia-ml-py)")
    add("--ref", dest="refs", action="append", default=[], metavar="RUN",
        help="overlay RUN (a name under the runs folder or a run directory, finished or not) as a dotted "
        "reference curve, 'ref: NAME', read once; no pane, no keys (repeatable)")
    add("--notify-cmd", type=_notify_cmd, default=None, metavar="CMD",
        help="run CMD (split like a shell line, run without a shell) with each notification as JSON on stdin: "
        "a run turning yellow or red, stalling, ending, crashing, a plan's gate deciding (docs/tui.md)")


def _notify_cmd(text: str) -> list[str]:
    from app.notify import NotifyCmdError, parse_notify_cmd

    try:
        return parse_notify_cmd(text) or []
    except NotifyCmdError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--notify-cmd: ").removeprefix("--notify-cmd ")) from None


def _err(msg: str, code: int = 2) -> int:
    print(f"segwatch: {msg}", file=sys.stderr)
    return code


def _same_file(a: Any, b: Any) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind one of them (tests, pipes closed)
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _runs_dir(args: argparse.Namespace) -> Path:
    return Path(args.runs_dir) if getattr(args, "runs_dir", None) else default_runs_dir()


def rules_for(health: Any, source: str) -> Any:
    return load_rules(overrides=health or None, source=source)


def thresholds_of(rules: Any) -> dict | None:
    return plot_thresholds(rules) if isinstance(rules, Rules) else None


def read_refs(args: argparse.Namespace) -> str | None:
    """Read every --ref once into ``args.ref_views`` (app.refs); the error to print, or None."""
    from app.refs import RefError, load_refs

    try:
        args.ref_views = load_refs(getattr(args, "refs", None) or [], _runs_dir(args))
    except RefError as e:
        return str(e)
    return None


def open_views(runs: list[Run], rules: list[Any], args: argparse.Namespace, specs: list = (), plan: Any = None,
               notes: list[str] = (), pane_notes: list[str | None] = ()) -> int:
    """``notes``: what a person must read before anything else (a run renamed because its name
    was taken): stderr (and the log in headless mode), and a toast in the cockpit."""
    headless = getattr(args, "headless", False) or not sys.stdout.isatty()
    refs = getattr(args, "ref_views", None) or []
    if headless:
        if refs:
            print("segwatch: --ref curves are drawn in the cockpit only (not in headless mode)", file=sys.stderr)
        if not _same_file(sys.stdout, sys.stderr):  # `> log 2>&1`: stderr already holds them
            for n in notes:
                print(f"segwatch: {n}", flush=True)
        from app.headless import follow

        return follow(runs, rules, interval=args.interval or 2.0, specs=specs, plan=plan,
                      notify_argv=getattr(args, "notify_cmd", None))
    from app.tui.app import SegwatchApp

    app = SegwatchApp(runs, rules, specs=specs, interval=args.interval or 0.25, gpu=not args.no_gpu,
                      runs_dir=str(_runs_dir(args)), thresholds=[thresholds_of(r) for r in rules], plan=plan,
                      notify_argv=getattr(args, "notify_cmd", None), notes=list(notes), pane_notes=list(pane_notes),
                      refs=refs)
    app.run()
    app.delivery.close(timeout=10)  # a notification still being sent (a run's end) goes out before we exit
    return app.return_code or 0


def cmd_run(args: argparse.Namespace) -> int:
    runs_dir = _runs_dir(args)
    if (problem := read_refs(args)) is not None:  # before anything starts
        return _err(problem)
    if plan_start.wants_plan(args):  # --serial / --sweep: a plan's scheduler starts the runs (app/plan)
        if getattr(args, "launcher", None) not in (None, "local"):  # plans without a login-node process
            try:
                launcher = launchers.get(args.launcher, args)
            except launchers.LauncherError as e:
                return _err(str(e))
            from app.launchers.slurm_plan import submit_plan

            return submit_plan(args, runs_dir, launcher, open_views)
        return plan_start.run_plan(args, runs_dir, open_views)
    try:
        launcher = launchers.get(getattr(args, "launcher", None), args)
        rules, wanted, shrunk = [], [], []
        for c in args.configs:  # validate everything before starting anything
            cfg = load_config(c, args.sets)
            rules.append(rules_for(cfg.health, c))
            shrunk.append(_warmup_note(c, cfg, args.sets))
            wanted.append(f"{args.name}-{cfg.name}" if args.name and len(args.configs) > 1 else args.name or cfg.name)
        specs = launch.plan_runs(args.configs, args.sets, runs_dir=runs_dir, name=args.name,
                                 device=args.device, share_gpu=args.same_gpu)
    except (ConfigError, RulesError, launchers.LauncherError) as e:
        return _err(str(e))
    notes = [f"{runs_dir / w} exists; this run is {s.name} (choose another name with --name NAME)"
             for w, s in zip(wanted, specs) if s.name != w]
    pane_notes = [f"{s.name}: {n}" if n else None for s, n in zip(specs, shrunk)]
    notes += [n for n in pane_notes if n]
    for s in specs:
        try:
            launcher.start(s)
        except launchers.LauncherError as e:
            return _err(str(e))
        print(f"segwatch: {launcher.describe(s)}", file=sys.stderr)
    if launcher.name == "local":  # a batch scheduler places its jobs itself
        for note in specs[0].notes if specs else []:
            print(f"segwatch: {note}", file=sys.stderr)
    for n in notes:
        print(f"segwatch: {n}", file=sys.stderr)
    runs = [Run(s.run_dir) for s in specs]
    return open_views(runs, rules, args, specs, notes=notes, pane_notes=pane_notes)


def _warmup_note(config: str, cfg: Any, sets: list[str]) -> str | None:
    """Say when ``--set training.epochs=N`` shrank the warmup (trainer.core.config keeps the warmup's
    share of a shortened run): the LR curve is not the file's."""
    if any(s.split("=", 1)[0].strip() == "training.warmup_epochs" for s in sets):
        return None
    try:
        from trainer.core.config import TrainingConfig, read_yaml

        train = read_yaml(config).get("training") or {}
        warm = train.get("warmup_epochs", TrainingConfig.warmup_epochs) if isinstance(train, dict) else None
    except (ConfigError, OSError):
        return None
    new = cfg.training.warmup_epochs
    if isinstance(warm, int) and warm != new:
        return (f"--set training.epochs={cfg.training.epochs} shrank the warmup: training.warmup_epochs {warm} -> {new} "
                "(--set training.warmup_epochs=N to choose)")
    return None


def _run_rules(run: Run) -> Any:
    try:
        return rules_for(run.state.config.get("health"), str(run.path / "config.yaml"))
    except RulesError as e:
        print(f"segwatch: {e}; using the default health rules", file=sys.stderr)
        return load_rules()


def cmd_attach(args: argparse.Namespace) -> int:
    runs_dir = _runs_dir(args)
    if (problem := read_refs(args)) is not None:
        return _err(problem)
    if args.runs:
        try:
            dirs = [resolve_run(a, runs_dir) for a in args.runs]
        except RunNotFound as e:
            return _err(str(e))
        runs = [Run(d) for d in dirs]
    else:
        runs = []
        for d in list_runs(runs_dir):
            r = Run(d)
            r.refresh()
            if (r.state.status in ALIVE and r.process_alive() is not False) or (
                    r.state.status == "queued" and r.state.job is not None):  # a SLURM job in the queue
                runs.append(r)
        if not runs:
            names = [d.name for d in list_runs(runs_dir)]
            hint = f"; name one: segwatch attach {names[-1]}" if names else ""
            return _err(f"no running run under {runs_dir}{hint}", 1)
    return open_views(runs, [_run_rules(r) for r in runs], args)


def _queue_epochs(run: Run, epochs: int) -> str | None:
    """``resume --epochs N``: append ``set epochs N`` to the ended run's control.jsonl, to be
    answered by the restarted trainer at its first control point (after a finished run's last
    epoch, that is where a live ``set epochs`` would have applied). The same command, checks and
    schedule as a live change; None, or why not (nothing written)."""
    done = run.state.last_epoch
    if epochs <= done:
        return (f"{run.name}: --epochs {epochs} is not more than the {done} epoch(s) it has done; give the total "
                f"number of epochs to reach (more than {done})")
    try:
        run.send("set", {"epochs": epochs}, reason=f"resume --epochs {epochs}", source="resume")
    except ValueError as e:  # the live table's own check (warmup_epochs < epochs, at most 100000)
        return f"{run.name}: --epochs {epochs}: {e}"
    except OSError as e:  # ControlFileError (a link or FIFO in place of control.jsonl), a full disk
        return f"{run.name}: --epochs {epochs}: cannot write control.jsonl: {e.strerror or e}"
    return None


def cmd_resume(args: argparse.Namespace) -> int:
    if (problem := read_refs(args)) is not None:
        return _err(problem)
    try:
        d = resolve_run(args.run, _runs_dir(args))
    except RunNotFound as e:
        return _err(str(e))
    run = Run(d)
    run.refresh()
    status = run.state.status
    if status == "queued" and run.state.job is not None:  # a batch job waiting in the scheduler's queue
        print(f"segwatch: {run.name} is {run.state.status_detail()}; attaching", file=sys.stderr)
        return open_views([run], [_run_rules(run)], args)
    epochs = getattr(args, "epochs", None)
    if status in ALIVE and run.process_alive() is not False:
        if epochs is not None:
            return _err(f"{run.name} is {status}: --epochs restarts an ended run; change a live one with "
                        f"`segwatch set {run.name} epochs={epochs}`", 2)
        if status == "paused":
            return control.cmd_simple(args)  # send `resume` to the paused trainer, as the control verbs do
        print(f"segwatch: {run.name} is {status}; attaching", file=sys.stderr)
        return open_views([run], [_run_rules(run)], args)
    if status == "finished" and epochs is None:
        return _err(f"{run.name} finished all its {run.state.total_epochs or ''} epochs; to train it longer: "
                    f"segwatch resume {run.name} --epochs N (N epochs in all)", 2)
    if not (d / "checkpoints" / "last.pt").exists():
        return _err(f"{run.name} has no checkpoint to resume from ({d / 'checkpoints' / 'last.pt'} is missing)")
    if epochs is not None:
        problem = _queue_epochs(run, epochs)
        if problem:
            return _err(problem, 2)
    since = time.time()
    try:
        launcher = (launchers.get(args.launcher, args) if getattr(args, "launcher", None)
                    else launchers.for_run(d, args))
        spec = launcher.resume(d, device=getattr(args, "device", "auto") or "auto")
    except launchers.LauncherError as e:
        return _err(str(e))
    print(f"segwatch: resuming {run.name} from its last checkpoint: {launcher.describe(spec)}", file=sys.stderr)
    for note in getattr(spec, "notes", None) or []:  # a GPU it has to share with a live run
        print(f"segwatch: {note}", file=sys.stderr)
    resumed = Run(d)
    # the old end, the old attempt's exit.json (even one its supervisor writes late) and pid are not this one's
    resumed.expect_restart(since, run.state.last_seq, spec.attempt)
    return open_views([resumed], [_run_rules(run)], args, [spec])

