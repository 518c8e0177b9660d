"""Reference runs: finished (or any) runs drawn behind the live ones in the cockpit's overlay.

``segwatch attach A B --ref runs/baseline`` (repeatable) and the palette's ``ref RUN`` read a run
directory ONCE, through the same safe readers as a watched run (app.runlib: bounded slices, control
characters escaped, bad lines skipped), into a frozen :class:`~app.snapshot.RunView`. A reference is
read-only: it is never refreshed again, gets no pane, no keys, no notifications, and nothing is
written into its directory. Pure Python (no Textual, no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.health import load_rules
from app.runlib import Run, RunNotFound, resolve_run
from app.snapshot import RunView, build_view

READ_SLICE = 4 << 20  # bytes parsed at once (as the watcher does)
REF_INDEX = -1  # a reference's RunView index: never a pane's


class RefError(ValueError):
    """Not a run directory (the message names the path and what is wrong)."""


def load_ref(arg: str, runs_dir: str | os.PathLike) -> RunView:
    """The run at ``arg`` (a path or a name under ``runs_dir``), read to its end once."""
    p = Path(arg)
    if ("/" in arg or arg in (".", "..")) and not p.exists():
        raise RefError(f"--ref {arg}: no such folder (a run directory, or a run's name under {runs_dir})")
    if p.exists() and not p.is_dir():
        raise RefError(f"--ref {arg}: not a folder (a run directory holds events.jsonl and config.yaml)")
    try:
        d = resolve_run(arg, runs_dir)
    except RunNotFound as e:
        raise RefError(f"--ref {arg}: {e}") from None
    run = Run(d)
    try:
        run.refresh(max_bytes=READ_SLICE)
        while run.events_tail.more or run.control_tail.more:
            run.refresh(max_bytes=READ_SLICE)
        return build_view(REF_INDEX, run, load_rules())
    except OSError as e:
        raise RefError(f"--ref {arg}: {d} cannot be read: {e.strerror or e}") from None


def load_refs(args: list[str], runs_dir: str | os.PathLike) -> list[RunView]:
    """Every ``--ref``, in order; the first bad one raises RefError."""
    return [load_ref(a, runs_dir) for a in args or ()]
