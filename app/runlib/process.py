"""Is the trainer process of a run alive: the liveness checks of one run directory.

What is probed (docs/runlib.md, "Status"): exit.json (written by the supervisor when the trainer
process ended), the trainer's pid (trainer.pid, else the last start event's) and whether that pid
is a live trainer on this machine (``/proc``). The status rules that judge these facts live in
app.runlib.liveness; :meth:`app.runlib.state.RunState.observe_process` takes them in.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NamedTuple

from . import runfiles, safeio

_HOST = socket.gethostname()


class Probe(NamedTuple):
    """One look at the trainer process of a run."""

    exit_info: dict | None  # exit.json, when the supervisor wrote it
    alive: bool | None  # True / False when the process is known to run / be gone; None: unknown
    pid: int | None


class Restart(NamedTuple):
    """A trainer process started on a run (``segwatch resume``) whose ``start`` event is not read yet."""

    after_seq: int | None  # the last seq of the record before the launch
    since: float  # when it was launched (unix time)
    attempt: str | None  # its attempt id (SEGWATCH_ATTEMPT)


def read_proc(pid: int) -> tuple[str, float] | None:
    """(state letter, CPU seconds used) of a process from /proc/PID/stat, or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
        fields = raw[raw.rindex(b")") + 2:].split()
        ticks = os.sysconf("SC_CLK_TCK") or 100
        return fields[0].decode("ascii", "replace"), (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return None


def read_exit_info(run_dir: Path, notes: dict[str, str]) -> dict | None:
    """exit.json written by the supervisor when the trainer process ended, or None."""
    return runfiles.read_mapping(run_dir / "exit.json", notes, max_bytes=safeio.SMALL)


def trainer_pid(run_dir: Path, start: dict | None) -> int | None:
    """The trainer's pid: trainer.pid, else the last start event's ``pid``."""
    try:
        return int(safeio.read_bytes(run_dir / "trainer.pid", safeio.SMALL).decode("ascii", "replace").split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if start is not None and isinstance(start.get("pid"), int) and not isinstance(start.get("pid"), bool):
        return start["pid"]
    return None


def process_alive(pid: int | None, host: object = None) -> bool | None:
    """True/False when the trainer's process is known to run / be gone; None if unknown.

    Alive means: the pid exists (``os.kill(pid, 0)``) and, where /proc exists, its command
    line mentions "trainer" (a reused pid is not alive; neither is a zombie). Unknown when
    there is no pid, or when ``host`` (meta.json's) names another machine.
    """
    if isinstance(host, str) and host and host != _HOST:
        return None  # trained on another machine (a shared folder): cannot tell from here
    if pid is None or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return None
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read(8192)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        if cmdline:
            return b"trainer" in cmdline
        sample = read_proc(pid)  # empty: a zombie, or exec in progress
        return (sample[0] if sample else None) not in ("Z", "X", None)
    return True


def probe(run_dir: Path, start: dict | None, host: object, notes: dict[str, str]) -> Probe:
    """exit.json, the pid and whether it is alive, read in that order."""
    pid = trainer_pid(run_dir, start)
    return Probe(read_exit_info(run_dir, notes), process_alive(pid, host), pid)
