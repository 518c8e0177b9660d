"""Run a trainer and record how it ended: ``python -m app.supervise RUN_DIR -- CMD...``.

Starts CMD (an argument list, never a shell) with stdout/stderr appended to RUN_DIR/stdout.log
and RUN_DIR/stderr.log, forwards SIGTERM/SIGINT to it, waits, then writes RUN_DIR/exit.json
atomically (temp file + rename)::

    {"returncode": -9, "signal": 9, "t": 1764423000.1, "pid": 4242, "started_t": ..., "attempt": "3f9c..."}

``attempt`` identifies this start of a trainer on the run: ``$SEGWATCH_ATTEMPT`` when the
launcher set it (app.launch does), else a new id; the trainer inherits it and writes it into its
``start`` event, so a reader can tell an earlier attempt's exit.json (written late, after
``segwatch resume`` started the next one) from the latest attempt's (docs/run-directory.md).

``returncode`` is the child's as Python's subprocess reports it (negative: killed by that
signal), ``signal`` the killing signal or null. A stale exit.json from an earlier process is
removed before the child starts. The supervisor exits with the child's code (128 + signal when
killed by a signal; 127 when CMD cannot be started). The child gets its own process group, so a
Ctrl-C in the terminal reaches it once, through the supervisor.

Standard library plus app.runlib.safeio for opening the logs (never torch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

USAGE = "usage: python -m app.supervise RUN_DIR -- CMD [ARG...]"
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def write_exit(run_dir: Path, info: dict) -> None:
    tmp = run_dir / f".exit.json.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / "exit.json")


def _open_log(path: Path):
    from app.runlib import safeio

    return os.fdopen(safeio.open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), "ab")


def supervise(run_dir: Path, cmd: list[str]) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        (run_dir / "exit.json").unlink()
    except FileNotFoundError:
        pass
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def forward(signum, _frame):
        if child is not None and child.returncode is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    for s in FORWARDED:
        signal.signal(s, forward)
    attempt = os.environ.get("SEGWATCH_ATTEMPT") or uuid.uuid4().hex[:16]
    os.environ["SEGWATCH_ATTEMPT"] = attempt  # the trainer writes it into its start event
    started = time.time()
    try:  # regular files only: a FIFO or a link planted in the run directory is refused, never followed
        out = _open_log(run_dir / "stdout.log")
        err = _open_log(run_dir / "stderr.log")
    except OSError as e:  # safeio.Refused, or the folder is not writable
        msg = f"not started: {e}"
        print(f"segwatch supervise: {msg}", file=sys.stderr)
        write_exit(run_dir, {"returncode": 2, "signal": None, "t": time.time(), "pid": None,
                             "started_t": started, "error": msg, "attempt": attempt})
        return 2
    with out, err:
        try:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, process_group=0)
        except OSError as e:
            msg = f"cannot start {cmd[0]!r}: {e.strerror or e}"
            err.write(f"segwatch supervise: {msg}\n".encode())
            write_exit(run_dir, {"returncode": 127, "signal": None, "t": time.time(), "pid": None,
                                 "started_t": started, "error": msg, "attempt": attempt})
            return 127
        for s in pending:
            child.send_signal(s)
        rc = child.wait()
    sig = -rc if rc < 0 else None
    write_exit(run_dir, {"returncode": rc, "signal": sig, "t": time.time(), "pid": child.pid, "started_t": started,
                         "attempt": attempt})
    return 128 + sig if sig else rc


def spawn(run_dir: str | os.PathLike, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m app.supervise RUN_DIR -- CMD...`` in the background (its own session,
    so it outlives the terminal and the monitor that started it). The working directory is the
    caller's; the project root is put on PYTHONPATH so ``app`` imports without an install."""
    env = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.Popen(
        [sys.executable, "-m", "app.supervise", str(run_dir), "--", *cmd],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    return supervise(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main())
