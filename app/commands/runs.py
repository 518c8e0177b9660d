"""`segwatch ls` and `segwatch rm`: the runs folder as a collection.

`ls` lists runs newest first with their health (GREEN / YELLOW / RED / STALLED, from the same
rules and snapshot as the cockpit: app.health, app.snapshot), state, epoch, best val F and age;
`--json` for scripts. `rm` deletes run directories: never a live one (running, paused, stalled,
starting, queued in a scheduler), and only after a yes (or `--yes`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from app.commands.control import STATUS_STYLE
from app.runlib import Run, RunNotFound, default_runs_dir, list_runs, resolve_run
from app.runlib.find import is_run_dir
from app.snapshot import build_view, fmt_duration
from trainer.core.safe_yaml import as_number

ALIVE = ("starting", "running", "paused", "stalled")


def register(sub: argparse._SubParsersAction) -> None:
    """`rm` (`ls` is registered with the other verbs by app.commands.control: register_ls)."""
    p = sub.add_parser("rm", help="delete runs (never a live one; asks first)",
                       description="Delete run directories. A run whose trainer is alive (starting, running, "
                       "paused, stalled) or whose batch job is queued is refused: stop it first.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run name (under --runs-dir) or run directory")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="folder of runs ($SEGWATCH_RUNS or ./runs)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_rm)


def register_ls(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list runs, newest first, with their health and metrics",
                       description="List the runs under RUNS_DIR (default: $SEGWATCH_RUNS or ./runs), newest first "
                       "(by their last event): health (GREEN / YELLOW / RED from the run's health rules, as the cockpit "
                       "shows it; STALLED), state, epoch, best and last val F, last adjustment, age.")
    p.add_argument("runs_dir_pos", nargs="?", metavar="RUNS_DIR")
    p.add_argument("--runs-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="one JSON array, one object per run (fields: docs/tui.md)")
    p.set_defaults(func=cmd_ls)


def _runs_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "runs_dir_pos", None) or args.runs_dir or default_runs_dir())


def _err(msg: str, code: int = 2) -> int:
    print(f"segwatch: {msg}", file=sys.stderr)
    return code


_num = as_number


def ls_row(i: int, run: Run, now: float) -> dict[str, Any]:
    """One run for `ls`: its health from the run's own rules, as the cockpit shows it."""
    from app.commands.run import _run_rules

    st = run.state
    view = build_view(i, run, _run_rules(run))
    hist = st.history()
    last = hist[-1] if hist else {}
    last_t = st.last_event_t
    if last_t is None:
        times = [(run.path / f).stat().st_mtime for f in ("config.yaml", "events.jsonl", "exit.json")
                 if (run.path / f).is_file()]
        last_t = max(times) if times else None
    act = view.actions[0] if view.actions else None
    return {
        "name": run.name, "run_dir": str(run.path),
        "health": "STALLED" if view.status == "stalled" else view.colour.upper(),
        "status": st.status, "detail": st.status_detail(),
        "epoch": st.last_epoch, "epochs": st.total_epochs or None,
        "val_f": None if last and "val_f" in (last.get("nonfinite") or []) else _num(last.get("val_f")),
        "val_f_nan": bool(last and "val_f" in (last.get("nonfinite") or [])),
        "best_val_f": _num(st.best_val_f), "best_epoch": st.best_epoch,
        "last_adjustment": st.adjustments[-1].summary() if st.adjustments else None,
        "suggestion": str(getattr(act, "text", "") or "") if act is not None else "",
        "suggestion_held": act.settling_words() if act is not None and act.settling else "",
        "last_event_t": last_t, "age_s": round(now - last_t, 1) if last_t is not None else None,
        "bad_lines": st.bad_lines,
        "stderr": run.stderr_tail(1) if st.status == "crashed" and st.end is None else [],
    }


def ls_rows(runs_dir: Path) -> list[dict]:
    now = time.time()
    rows = [ls_row(i, _refreshed(p), now) for i, p in enumerate(list_runs(runs_dir))]
    return sorted(rows, key=lambda r: -(r["last_event_t"] or 0))  # newest first


def _refreshed(path: Path) -> Run:
    run = Run(path)
    run.refresh()
    return run


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-"


def cmd_ls(args: argparse.Namespace) -> int:
    runs_dir = _runs_dir(args)
    if not runs_dir.is_dir():
        if args.json:
            print("[]")
            return 0
        print(f"no runs folder at {runs_dir} (pass a folder, or set SEGWATCH_RUNS)")
        return 0
    rows = ls_rows(runs_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {runs_dir} yet")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, kw in [("run", {"no_wrap": True}), ("health", {"no_wrap": True}), ("status", {}),
                    ("epoch", {"justify": "right"}), ("best val F", {"justify": "right"}),
                    ("last val F", {"justify": "right"}), ("last adjustment", {}), ("age", {"justify": "right"})]:
        table.add_column(col, **kw)
    show_bad = any(r["bad_lines"] for r in rows)
    if show_bad:
        table.add_column("bad lines", justify="right")
    for r in rows:
        best = f"{_f(r['best_val_f'])} (e{r['best_epoch']})" if r["best_val_f"] is not None else "-"
        age = fmt_duration(r["age_s"]) if r["age_s"] is not None else "-"
        cells = [Text(r["name"]), Text(r["health"], style=HEALTH_STYLE.get(r["health"], "")),
                 Text(r["detail"], style=STATUS_STYLE.get(r["status"], "")),
                 Text(f"{r['epoch']}/{r['epochs'] or '?'}"), Text(best),
                 Text("nan" if r["val_f_nan"] else _f(r["val_f"])), Text(r["last_adjustment"] or "-"), Text(age)]
        if show_bad:
            cells.append(Text(str(r["bad_lines"] or "")))
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(table)
    for r in rows:
        if r["stderr"]:
            console.print(Text(f"{r['name']} stderr: {r['stderr'][-1]}", style="red"), overflow="ellipsis", no_wrap=True)
    return 0


HEALTH_STYLE = {"GREEN": "bold green", "YELLOW": "bold yellow", "RED": "bold red", "STALLED": "bold white on red"}


def cmd_rm(args: argparse.Namespace) -> int:
    root = _runs_dir(args)
    targets: list[tuple[Path, str]] = []
    for a in args.runs:
        try:
            d = resolve_run(a, root)
        except RunNotFound as e:
            return _err(str(e))
        if d.is_symlink() or not is_run_dir(d):
            return _err(f"{d}: not a run directory (a link, or no config.yaml / events.jsonl in it); nothing removed")
        run = Run(d)
        run.refresh()
        st = run.state
        if (st.status in ALIVE and run.process_alive() is not False) or (st.status == "queued" and st.job is not None):
            return _err(f"{run.name} is {st.status} ({d}); stop it first (segwatch stop {run.name}); nothing removed")
        if d.resolve() not in [t.resolve() for t, _ in targets]:
            targets.append((d, st.status))
    listing = ", ".join(f"{d} ({s})" for d, s in targets)
    if not args.yes:
        if not sys.stdin.isatty():
            return _err(f"rm {listing}: add --yes to delete without a terminal to ask on; nothing removed")
        answer = input(f"Delete {len(targets)} run{'s' if len(targets) != 1 else ''}: {listing}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("segwatch: nothing removed", file=sys.stderr)
            return 1
    for d, _ in targets:
        shutil.rmtree(d)
        print(f"segwatch: removed {d}", file=sys.stderr)
    return 0
