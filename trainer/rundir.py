"""The run directory of a run: opened (or reopened on resume) once its :class:`~trainer.build.Parts`
are built, with the event writer, the control channel and the lock; what a resume reads back
(:func:`load_resume`). :func:`open_run` returns the run's :class:`Components`, whole."""

from __future__ import annotations

import errno
import json
import os
import pickle
import platform
import socket
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml

from trainer import checkpoint as ckpt
from trainer.build import Parts
from trainer.core.config import Config, ConfigError, from_dict
from trainer.core.live import LIVE_KEYS
from trainer.record import EventWriter, atomic_write_text, read_events, remove_stale_temps
from trainer.runfiles import UnsafeFile, describe, open_regular, write_small
from trainer.steer import Steering

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(kw_only=True)
class Components(Parts):
    """A run being trained: its parts, its run directory, its record and its control channel."""

    run_dir: Path
    events: EventWriter
    lock_fd: int | None  # trainer.lock, held while this process trains (rank 0); None on other ranks
    state: dict  # the checkpoint resumed from ({} for a new run)
    steering: Steering = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.steering = Steering(self.run_dir / "control.jsonl", self.events, self.initial_live(), self.apply_live,
                                 is_main=self.dist.is_main,
                                 broadcast=self.dist.broadcast_objects if self.dist.enabled else None)

    def home(self) -> Path:
        return self.run_dir

    def resolved_config(self) -> dict:
        d = self.cfg.to_dict()
        for k, v in self.steering.live.items():
            sec, key = LIVE_KEYS[k].config_key.split(".")
            d[sec][key] = v
        return d


def new_run_dir(runs_dir: Path, name: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    path, n = runs_dir / name, 2
    while path.exists():
        path, n = runs_dir / f"{name}-{n}", n + 1
    return path


def open_run(parts: Parts, run_dir: Path, resume: dict | None, argv: list[str]) -> Components:
    """Create or reopen the run directory, the event writer and the control channel; the run's
    :class:`Components`, whole. ``resume``: the checkpoint's state (build.restore_state has
    loaded its weights into ``parts``)."""
    main = parts.dist.is_main
    lock_fd = None
    if main:
        # before anything is written: a link, FIFO or directory where the record goes, or a
        # link where the checkpoints go, is refused (exit 2) rather than followed
        why = describe(run_dir / "events.jsonl")
        ck = run_dir / "checkpoints"
        if not why and os.path.lexists(ck) and (ck.is_symlink() or not ck.is_dir()):
            why = f"{ck} is {'a symbolic link' if ck.is_symlink() else 'not a directory'}, not the run's checkpoints folder"
        if why:
            raise UnsafeFile(errno.EINVAL, f"{why}; nothing was changed")
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        lock_fd = lock_run_dir(run_dir)
        stale = remove_stale_temps(run_dir / "checkpoints") + remove_stale_temps(run_dir)
        if stale:
            out(f"removed {len(stale)} temp file(s) of writes a killed trainer left unfinished: {', '.join(stale)}")
        if resume is None:
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(parts.cfg.to_dict(), sort_keys=False))
        try:  # create it (0600) unless something is there; never through a link
            os.close(os.open(run_dir / "control.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o600))
        except FileExistsError:
            pass  # a FIFO, link or directory there is reported by the reader (control_refused)
        write_small(run_dir / "trainer.pid", f"{os.getpid()}\n")
    c = Components(**{f.name: getattr(parts, f.name) for f in fields(Parts) if f.init},
                   run_dir=run_dir, events=EventWriter(run_dir / "events.jsonl", enabled=main), lock_fd=lock_fd,
                   state=resume if resume is not None else {})
    if resume is not None:
        c.steering.live.update(resume["live"])
        c.apply_live(resume["live"])
        plan = None
        if main:  # only rank 0 reads control.jsonl and the record; every rank applies the same plan
            c.steering.reader.seek(resume.get("control"))
            skipped: list[int] = []
            plan = c.steering.plan_restore(resume.get("answered", []), read_events(run_dir / "events.jsonl", skipped),
                                           epoch=resume["epoch"] + 1)
            if skipped[0]:  # said in the record, not passed over (a torn last line counts too)
                c.steering.deferred.append({"code": "unreadable_events", "message": f"{skipped[0]} line(s) of "
                                            "events.jsonl are not events and were skipped when it was read on resume"})
        if c.dist.enabled:
            plan = c.dist.broadcast_objects([plan])[0]
        c.steering.apply_restore(plan)
    else:
        c.apply_live(c.steering.live)
    if main:
        meta = {
            "name": c.cfg.name, "params": c.params, "device": str(c.device), "world_size": c.dist.world_size,
            "data": c.data_desc, "synthetic": bool(c.data_desc.get("synthetic")),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "segwatch": _version()},
            "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": argv,
            "resumed_from_epoch": resume["epoch"] if resume else None,
        }
        atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))
    return c


def lock_run_dir(run_dir: Path) -> int:
    """Hold ``run_dir/trainer.lock`` (flock) for the life of this process: one trainer per run
    directory, so two resumes of the same run cannot interleave their records and checkpoints."""
    import fcntl

    path = run_dir / "trainer.lock"
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{run_dir}: another trainer (pid {holder}) is writing this run; "
                          "attach to it (segwatch attach) or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("segwatch")
    except Exception:  # noqa: BLE001 - running from a source tree without an install
        return "source"


def saved_world_size(run_dir: Path, state: dict) -> int:
    """The process count a checkpoint was trained with (older checkpoints: meta.json's)."""
    ws = state.get("world_size")
    if isinstance(ws, int) and ws >= 1:
        return ws
    try:
        ws = json.loads((run_dir / "meta.json").read_text()).get("world_size")
    except (OSError, ValueError, AttributeError):
        ws = None
    return ws if isinstance(ws, int) and ws >= 1 else 1


def load_resume(run_dir: Path, device: torch.device) -> tuple[Config, dict]:
    """Config and state of a run to resume; the last checkpoint must exist and be complete."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"--resume {run_dir}: no checkpoint at {path} (the run never finished an epoch)")
    try:
        fd = open_regular(path)  # not through a link, not a FIFO
    except OSError as e:
        raise ConfigError(f"--resume {run_dir}: {e.strerror or e}; nothing was run") from None
    try:
        # always onto the CPU: load_state_dict copies weights and optimizer state to the model's
        # device, and the RNG states must stay CPU tensors (torch.set_rng_state refuses others)
        with os.fdopen(fd, "rb") as f:
            state = ckpt.load(f, map_location="cpu")
    except pickle.UnpicklingError:
        raise ConfigError(f"--resume {run_dir}: refused {path}: it holds pickled objects that torch.load(weights_only=True) "
                          "does not load (not a checkpoint of this trainer, or tampered with); nothing was run") from None
    except Exception as e:  # noqa: BLE001 - torn or foreign file: name it, exit 2
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"--resume {run_dir}: cannot load {path}: {type(e).__name__}: {first}") from None
    missing = [k for k in ("config", "model", "optimizer", "epoch", "rng", "live") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"--resume {run_dir}: {path} is not a checkpoint of this trainer (missing: {', '.join(missing)})")
    cfg = from_dict(state["config"], source=f"{path} (config)")
    return cfg, state


def out(msg: str) -> None:
    print(msg, flush=True, file=sys.stdout)
