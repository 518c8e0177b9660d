"""Where a run's trainer process runs: the launcher interface and its registry.

A launcher starts a :class:`app.launch.LaunchSpec` (the same ``python -m trainer`` argv either
way), restarts a run from its checkpoint, and may know more about a run's process than its
record does (a batch job waiting in a queue). ``local`` (the default, app/launch.py: a
supervised process in its own session) and ``slurm`` (app/launchers/slurm.py: one batch job per
run, submitted through submitit) are the two. The app asks :func:`get` or :func:`for_run` and
never branches on the launcher's name.

Interface (duck-typed; see LocalLauncher)::

    name: str
    start(spec) -> spec                       # returns at once; spec.pid / job id filled in
    resume(run_dir, device) -> spec           # restart from checkpoints/last.pt
    stop(run, timeout) -> int | None          # None: the usual control.jsonl `stop` is enough
    describe(spec) -> str                     # one line for "started ..." messages

:func:`job_info` is the state provider hook that app/runlib/run.py calls on each refresh: what
the launcher knows about the run's job (None for local runs), see app/launchers/jobinfo.py.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from app import launch

from .jobinfo import JobInfo, job_info  # noqa: F401 - re-exported

NAMES = ("local", "slurm")


class LauncherError(ValueError):
    """Bad launcher options or a refused submission: a one-line message, exit 2."""


class LocalLauncher:
    name = "local"

    def __init__(self, args: argparse.Namespace | None = None):
        self.args = args

    def start(self, spec: launch.LaunchSpec) -> launch.LaunchSpec:
        return launch.start(spec)

    def resume(self, run_dir: Path, device: str = "auto") -> launch.LaunchSpec:
        allow = bool(getattr(self.args, "allow_reshape", False))
        spec = launch.resume_spec(run_dir, device=device, allow_reshape=allow)
        return launch.start(launch.place_resume(spec, device))  # on GPUs no live run holds

    def stop(self, run: Any, timeout: float) -> int | None:
        return None

    def describe(self, spec: launch.LaunchSpec) -> str:
        gpu = f" on GPU {spec.gpus}" if spec.gpus is not None else ""
        return f"started {spec.name} in {spec.run_dir}{gpu} (supervisor pid {spec.pid})"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--launcher`` and each launcher's own options (for ``run`` and ``resume``)."""
    if "--launcher" not in p._option_string_actions:
        p.add_argument("--launcher", choices=NAMES, default=None,
                       help="where trainers run: local (default) or slurm (one batch job per run; docs/slurm.md)")
    from . import slurm_options

    slurm_options.add_arguments(p)


def get(name: str | None, args: argparse.Namespace | None = None) -> Any:
    """The launcher called ``name`` (None: local), configured from ``args``; LauncherError if bad."""
    if name in (None, "local"):
        return LocalLauncher(args)
    if name == "slurm":
        mod = importlib.import_module("app.launchers.slurm")
        return mod.SlurmLauncher.from_args(args)
    raise LauncherError(f"--launcher {name!r}: allowed: {', '.join(NAMES)}")


def for_run(run_dir: str | Path, args: argparse.Namespace | None = None) -> Any:
    """The launcher that started this run (slurm.json -> slurm), else local."""
    if (Path(run_dir) / "slurm.json").exists():
        return get("slurm", args)
    return LocalLauncher(args)
