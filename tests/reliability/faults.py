"""Shared helpers of the fault-injection suite: start real trainers on tiny sizes, wait on files
with deadlines (never bare sleeps), read records, find processes and listening sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from trainer.record import read_events

#: warnings every run on the built-in data with the plan's scalar alpha starts with (not false alarms)
START_NOTICES = ("synthetic_data", "alpha_background")
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "app") not in sys.path:  # the cockpit's Pilot helpers (tui_helpers)
    sys.path.append(str(ROOT / "tests" / "app"))
CONFIGS = ROOT / "configs"
SHIPPED = ["baseline.yaml", "lmsa.yaml", "lmsa_focal.yaml", "lmsa_aggressive.yaml"]
# small enough for two shared CPU cores: 4 steps per epoch, a 84k-parameter model
TINY = [
    "data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=32", "training.batch_size=8",
    "training.warmup_epochs=0", "training.log_every=1", "model.width=8",
]


def trainer_argv(run_dir: Path, *sets: str, config: str = "lmsa_focal.yaml") -> list[str]:
    """`python -m trainer` arguments (after the interpreter) for a tiny run in ``run_dir``."""
    argv = ["--config", str(CONFIGS / config), "--run-dir", str(run_dir), "--device", "cpu"]
    for s in (*TINY, *sets):
        argv += ["--set", s]
    return argv


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def popen_trainer(argv: list[str], **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "trainer", *argv], cwd=ROOT, env=env(), **kw)


def run_trainer(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env())


def segwatch(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("cwd", ROOT)
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(), **kw)


def wait_for(pred: Callable, timeout: float = 90.0, what: str = "condition", poll: float = 0.05):
    """Poll until ``pred()`` is truthy and return it; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def events(run_dir: Path, type_: str | None = None) -> list[dict]:
    evs = read_events(Path(run_dir) / "events.jsonl")
    return evs if type_ is None else [e for e in evs if e.get("type") == type_]


def send(run_dir: Path, cmd: str, raw: bytes | None = None, **fields) -> str:
    """Append one command line (or ``raw`` bytes) to control.jsonl with one O_APPEND write."""
    cid = uuid.uuid4().hex
    line = raw if raw is not None else (json.dumps({"v": 1, "id": cid, "t": time.time(), "cmd": cmd, **fields}) + "\n").encode()
    fd = os.open(Path(run_dir) / "control.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return cid


def answers(run_dir: Path, cid: str) -> list[dict]:
    return [e for e in events(run_dir) if e.get("type") in ("ack", "nack") and e.get("id") == cid]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds open (/proc/<pid>/fd/* -> 'socket:[N]')."""
    found = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def listening_sockets() -> dict[int, str]:
    """inode -> 'proto local-address' of every TCP socket in LISTEN and every bound UDP socket."""
    out: dict[int, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if len(f) < 10:
                continue
            state, inode = f[3], int(f[9])
            if (proto.startswith("tcp") and state == "0A") or (proto.startswith("udp") and state == "07"):
                out[inode] = f"{proto} {f[1]}"
    return out


def ports_of(pids: list[int]) -> list[str]:
    """Listening TCP / bound UDP sockets held by any of ``pids``."""
    listening = listening_sockets()
    return [f"pid {p}: {listening[i]}" for p in pids for i in socket_inodes(p) if i in listening]
