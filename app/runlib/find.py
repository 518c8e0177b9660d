"""Finding run directories: by path or by name under the runs folder."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

MARKERS = ("config.yaml", "events.jsonl", "exit.json", "slurm.json")  # exit.json: a trainer that died before writing
# anything; slurm.json: a batch job still in the queue (app/launchers/slurm.py)


class RunNotFound(ValueError):
    """No run by that name or path; the message lists the nearest names."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("SEGWATCH_RUNS", "runs"))


def is_run_dir(path: Path) -> bool:
    return any((path / m).is_file() for m in MARKERS)


def _mtime(path: Path) -> float:
    best = 0.0
    for m in MARKERS:
        try:
            best = max(best, (path / m).stat().st_mtime)
        except OSError:
            pass
    return best


def list_runs(runs_dir: str | os.PathLike) -> list[Path]:
    """Run directories (holding config.yaml or events.jsonl, or exit.json: a supervised trainer
    that died before writing anything) under ``runs_dir``, oldest first (by the newest mtime of
    those files). A missing folder gives []."""
    root = Path(runs_dir)
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    runs = [p for p in entries if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda p: (_mtime(p), p.name))


def resolve_run(arg: str, runs_dir: str | os.PathLike) -> Path:
    """A run directory from a path or from a run name under ``runs_dir``."""
    root = Path(runs_dir)
    p = Path(arg)
    if p.is_dir() and is_run_dir(p):
        return p
    if arg and "/" not in arg and arg not in (".", ".."):
        q = root / arg
        if q.is_dir() and is_run_dir(q):
            return q
    names = [r.name for r in list_runs(root)]
    if p.is_dir():
        raise RunNotFound(f"{arg} is a folder but not a run (no {' or '.join(MARKERS)} in it)")
    near = difflib.get_close_matches(arg, names, n=3, cutoff=0.5)
    near += [n for n in names if n.startswith(arg) and n not in near][: 3 - len(near)]
    if near:
        hint = "; did you mean " + ", ".join(f"'{n}'" for n in near) + "?"
    elif names:
        hint = f" (runs there: {', '.join(names[-5:])}{', ...' if len(names) > 5 else ''})"
    elif root.is_dir():
        hint = " (it holds no runs yet)"
    else:
        hint = " (that folder does not exist; set SEGWATCH_RUNS or pass --runs-dir)"
    raise RunNotFound(f"no run '{arg}' in {root}{hint}")
