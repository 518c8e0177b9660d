"""Shared helpers for the benches: machine description, robust statistics, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001
        commit = None
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "mem_gib": mem, "loadavg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(), "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("segwatch", "torch", "textual", "textual-plotext", "numpy",
                                               "wandb", "tensorboard", "psutil")},
        "git_commit": commit, "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
    }


def summary(xs: Iterable[float]) -> dict[str, float]:
    """median, p5/p95 spread, min, max, n of a sample."""
    v = sorted(float(x) for x in xs)
    if not v:
        return {"n": 0}
    return {"n": len(v), "median": statistics.median(v), "p5": pct(v, 5), "p95": pct(v, 95), "min": v[0], "max": v[-1],
            "mean": statistics.fmean(v)}


def pct(sorted_v: list[float], p: float) -> float:
    """Percentile with linear interpolation (sorted input)."""
    if not sorted_v:
        return math.nan
    k = (len(sorted_v) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (k - lo)


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class PtyProcess:
    """A process on a pseudo-terminal of a given size (a TUI thinks it has a real terminal);
    its output is drained on a thread and discarded (kept: the byte count)."""

    def __init__(self, argv: list[str], *, cols: int = 160, rows: int = 50, env: dict | None = None,
                 cwd: str | Path | None = None, needle: bytes | None = None):
        import fcntl
        import pty
        import struct
        import termios
        import threading

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows), **(env or {})}
        self.needle, self.needle_t, self._tail = needle, None, b""
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=cwd,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.bytes_out = 0
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes_out += len(data)
            if self.needle is not None and self.needle_t is None:
                self._tail = (self._tail + data)[-(len(data) + len(self.needle)):]
                if self.needle in self._tail:
                    self.needle_t = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


def stop_all(ptys: Iterable[Any], procs: Iterable[subprocess.Popen], tmp: Path) -> None:
    """End a bench's cockpits (ptys) and trainers (procs, 20 s each to go), then remove its folder."""
    import shutil

    procs = list(procs)
    for p in ptys:
        p.stop()
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def _proc_stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, user+system CPU seconds, RSS bytes) from /proc/PID/stat, None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tck, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def tree_cpu_rss(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, RSS bytes) of a process and all its live descendants (Linux
    /proc; no psutil needed, so the quick mode runs in CI)."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st:
                stats[int(d)] = st
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for q, st in stats.items():
            if st[0] == parent and q not in tree:
                tree.add(q)
                frontier.append(q)
    cpu = sum(stats[q][1] for q in tree if q in stats)
    rss = sum(stats[q][2] for q in tree if q in stats)
    return cpu, rss


def peak_rss(pid: int) -> int | None:
    """VmHWM (peak resident set) of one process in bytes."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
