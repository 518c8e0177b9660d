"""Starting trainers that outlive the monitor.

Each trainer runs under ``python -m app.supervise RUN_DIR -- python -m trainer ...`` in its own
process session (``start_new_session=True``): a closed terminal, a dropped SSH connection or a
crash of the TUI sends it nothing. Argument lists only, never a shell. No torch here: GPUs are
counted with ``nvidia-smi -L`` (or read from CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from app.placement import held_by_run, place, resume_gpus
from app.preflight import check_data
from app.runlib import safeio
from trainer.core.config import ConfigError, load_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class LaunchSpec:
    """One trainer to start: where its run directory goes and how it is started."""

    config: Path
    run_dir: Path
    name: str
    trainer_args: list[str]
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES for this run, None = inherit
    nproc: int = 1
    notes: list = field(default_factory=list)  # GPUs this launch shares with other runs (app.placement)
    pid: int | None = None  # of the supervisor, once started
    attempt: str | None = None  # this start's attempt id (SEGWATCH_ATTEMPT), set by start()
    proc: subprocess.Popen | None = field(default=None, repr=False)


def visible_gpus(env: dict | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else ``nvidia-smi -L``."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [g.strip() for g in cvd.split(",") if g.strip() and g.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.M)]


def assign_gpus(nprocs: Sequence[int], gpus: Sequence[str], share: bool = False) -> list[str | None]:
    """Give each run its own GPU(s) when there are enough; otherwise (or when ``share``) inherit.

    ``nprocs[i]`` is the number of GPUs run i needs (its ``training.nproc_per_node``). Which GPUs
    end up shared: :func:`app.placement.place`'s notes (``plan_runs`` keeps them in ``NOTES``).
    """
    return place(nprocs, gpus, share)[0]


def reserve_run_dir(runs_dir: Path, name: str) -> Path:
    """Create ``runs_dir/name`` (or ``name-2``, ``name-3``...) atomically and return it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        cand = runs_dir / (name if i == 1 else f"{name}-{i}")
        try:
            cand.mkdir()
        except FileExistsError:
            continue
        return cand
    raise RuntimeError(f"no free run directory for {name!r} under {runs_dir}")


def plan_runs(configs: Sequence[str | Path], sets: Sequence[str] = (), *, runs_dir: Path,
              name: str | None = None, device: str = "auto", share_gpu: bool = False,
              env: dict | None = None) -> list[LaunchSpec]:
    """Validate every config (ConfigError on the first bad one), reserve run directories.

    Nothing is created until every config has validated.
    """
    if name is not None and not _NAME_OK.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_', '+' or '-' (no '/')")
    loaded = []
    for c in configs:
        path = Path(c)
        cfg = load_config(path, list(sets))
        check_data(cfg, _source(path, sets))  # a missing data.root before any run directory exists
        loaded.append((path, cfg))
    names = []
    for path, cfg in loaded:
        if name and len(loaded) > 1:
            names.append(f"{name}-{cfg.name}")
        else:
            names.append(name or cfg.name)
    gpus = visible_gpus(env) if device != "cpu" else []
    nprocs = [cfg.training.nproc_per_node for _, cfg in loaded]
    assigned, notes = place(nprocs, gpus, share=share_gpu, names=names)
    specs = []
    for (path, cfg), nm, g, n in zip(loaded, names, assigned, nprocs):
        run_dir = reserve_run_dir(Path(runs_dir), nm)
        args = ["--config", str(path.resolve())]
        for s in sets:
            args += ["--set", s]
        args += ["--set", f"name={run_dir.name}", "--run-dir", str(run_dir.resolve()), "--device", device]
        specs.append(LaunchSpec(path, run_dir, run_dir.name, args, g, n, notes=list(notes)))
    return specs


def _source(path: Path, sets: Sequence[str]) -> str:
    """How trainer.core.config names a config in its errors: 'A.yaml (with --set k=v ...)'."""
    return str(path) + (f" (with {' '.join('--set ' + s for s in sets)})" if sets else "")


def resume_spec(run_dir: Path, device: str = "auto", allow_reshape: bool = False) -> LaunchSpec:
    """Restart a run from its last checkpoint with the process count it was trained with
    (meta.json's ``world_size``; the trainer checks it against the checkpoint's). With
    ``allow_reshape`` the trainer may continue on fewer processes where fewer GPUs are visible."""
    run_dir = Path(run_dir)
    args = ["--resume", str(run_dir.resolve()), "--device", device]
    nproc = saved_world_size(run_dir)
    if allow_reshape:
        args.append("--allow-reshape")
    elif nproc > 1:
        args += ["--nproc-per-node", str(nproc)]
    return LaunchSpec(run_dir / "config.yaml", run_dir, run_dir.name, args, nproc=nproc)


def saved_world_size(run_dir: Path) -> int:
    """The run's DDP process count as its last trainer recorded it in meta.json (1 if unknown)."""
    try:
        ws = json.loads((Path(run_dir) / "meta.json").read_text()).get("world_size")
    except (OSError, ValueError, AttributeError):
        return 1
    return ws if isinstance(ws, int) and not isinstance(ws, bool) and 1 <= ws <= 64 else 1


def place_resume(spec: LaunchSpec, device: str = "auto", runs_dir: Path | None = None,
                 env: dict | None = None) -> LaunchSpec:
    """GPUs for a local restart: ``spec.nproc`` of them (the run's own process count), none that a
    live run under ``runs_dir`` (default: the run's parent) holds, its previous ones (its last start
    event) when free; ``spec.notes`` says when it has to share."""
    visible = visible_gpus(env) if device != "cpu" else []
    if not visible:
        return spec
    from app.runlib import Run

    run = Run(spec.run_dir)
    try:
        run.refresh()
    except OSError:
        pass
    start = run.state.start or {}
    spec.gpus, note = resume_gpus(spec.run_dir, Path(runs_dir or spec.run_dir.parent), spec.nproc, visible,
                                  held_by_run(start, visible))
    spec.notes = [note] if note else []
    return spec


def child_env(spec: LaunchSpec, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    # the children must import app/ and trainer/ even when segwatch is not pip-installed
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + pp if pp else "")
    env["PYTHONUNBUFFERED"] = "1"
    if spec.attempt:
        env["SEGWATCH_ATTEMPT"] = spec.attempt  # into exit.json and the start event (app.supervise)
    else:
        env.pop("SEGWATCH_ATTEMPT", None)
    # GPU ids come from nvidia-smi (PCI bus order); CUDA's default order is fastest-first
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if spec.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpus
    return env


def supervise_argv(spec: LaunchSpec, python: str | None = None) -> list[str]:
    py = python or sys.executable
    return [py, "-m", "app.supervise", str(spec.run_dir.resolve()), "--", py, "-m", "trainer", *spec.trainer_args]


def start(spec: LaunchSpec, python: str | None = None, argv: list[str] | None = None) -> LaunchSpec:
    """Start the supervised trainer in its own session; returns at once.

    The supervisor's own output (normally nothing) goes to ``supervisor.log`` in the run
    directory; the trainer's goes to stdout.log / stderr.log (written by app.supervise).
    """
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    spec.attempt = spec.attempt or uuid.uuid4().hex[:16]
    try:  # a regular file only (a FIFO planted there would block `segwatch resume`)
        log = os.fdopen(safeio.open_fd(spec.run_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                       0o644), "ab")
    except safeio.Refused:
        log = open(os.devnull, "ab")
    try:
        spec.proc = subprocess.Popen(
            argv or supervise_argv(spec, python),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env=child_env(spec), cwd=os.getcwd(), start_new_session=True, close_fds=True,
        )
    finally:
        log.close()
    spec.pid = spec.proc.pid
    return spec


def reap(specs: Sequence[LaunchSpec]) -> None:
    """Collect exited supervisors so they do not linger as zombies while the monitor runs."""
    for s in specs:
        if s.proc is not None and s.proc.returncode is None:
            s.proc.poll()
