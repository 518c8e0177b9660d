"""What the trainer process itself shows decides a stall the cadence cannot: a busy start-up is not
STALLED, a stopped process is STALLED at once (app/runlib/liveness.py, docs/runlib.md "Stall").

Real processes stand in for the trainer (their command line says "trainer", as Run.process_alive
checks): one that computes, one that sleeps, one that is stopped with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from _runrecord import Record

from app.runlib import Run, RunState
from app.runlib.liveness import STALL_FIRST_X, STARTUP_CAP_S, stall_floor
from app.runlib.process import read_proc

BUSY = "while True: pass"
IDLE = "import time; time.sleep(600)"


@pytest.fixture
def proc():
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code, "trainer"])  # argv says "trainer"
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(10)


def starting_run(tmp_path, pid: int, quiet_s: float) -> Run:
    """A run whose trainer `pid` wrote its start and a warning `quiet_s` ago, and no step since."""
    rec = Record(tmp_path / "r")
    rec.t = time.time() - quiet_s - 1.0
    rec.start(pid=pid)  # + 0.5 s
    rec.warning("synthetic_data", "built-in data")  # + 0.5 s: the last event, quiet_s ago
    return Run(rec.dir)


def wait_state(pid: int, want: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample = read_proc(pid)
        if sample and sample[0] == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never reached state {want!r} (last {read_proc(pid)})")


def test_read_proc_sees_state_and_cpu_time(proc):
    busy = proc(BUSY)
    wait_state(busy.pid, "R")
    first = read_proc(busy.pid)
    deadline = time.monotonic() + 20
    while read_proc(busy.pid)[1] <= first[1]:  # CPU time grows while it computes
        assert time.monotonic() < deadline, "CPU time never grew"
        time.sleep(0.05)
    assert read_proc(2**22 + 12345) is None  # no such process


def test_a_busy_start_up_past_the_first_bound_is_running_not_stalled(tmp_path, proc):
    """On a loaded machine the start-up (data, class frequencies, compile) can outlast the first
    bound (4 x the floor). While the process computes, it is not shown stalled."""
    busy = proc(BUSY)
    quiet = STALL_FIRST_X * stall_floor() + 60
    run = starting_run(tmp_path, busy.pid, quiet)
    wait_state(busy.pid, "R")
    run.refresh()
    assert run.state.stall_bound() < quiet
    assert run.state.status == "running", run.state.status_detail()
    assert "starting up, no step yet" in run.state.status_detail()


def test_an_idle_start_up_past_the_first_bound_is_stalled(tmp_path, proc):
    """A process that neither computes nor writes (a deadlocked loader, a hung rendezvous)."""
    idle = proc(IDLE)
    run = starting_run(tmp_path, idle.pid, STALL_FIRST_X * stall_floor() + 60)
    wait_state(idle.pid, "S")
    run.refresh()
    run.refresh()
    assert run.state.status == "stalled", run.state.status_detail()


def test_a_busy_start_up_is_stalled_after_the_cap(tmp_path, proc):
    busy = proc(BUSY)
    run = starting_run(tmp_path, busy.pid, STARTUP_CAP_S + 10)
    wait_state(busy.pid, "R")
    run.refresh()
    assert run.state.status == "stalled"


def test_a_stopped_process_is_stalled_within_seconds_whatever_the_cadence(tmp_path, proc):
    """kill -STOP: the cadence bound can be minutes (a slow start-up, long validations), but a
    stopped process cannot progress: STALLED once no event came for 5 s; kill -CONT: running."""
    busy = proc(BUSY)
    run = starting_run(tmp_path, busy.pid, 6.0)  # well inside the start-up bound (120 s)
    run.refresh()
    assert run.state.status == "running"
    busy.send_signal(signal.SIGSTOP)
    wait_state(busy.pid, "T")
    run.refresh()
    assert run.state.status == "stalled"
    detail = run.state.status_detail()
    assert detail.startswith("STALLED: process stopped") and f"kill -CONT {busy.pid}" in detail, detail
    busy.send_signal(signal.SIGCONT)
    wait_state(busy.pid, "R")
    run.refresh()
    assert run.state.status == "running", run.state.status_detail()


def test_without_proc_information_the_cadence_alone_decides(monkeypatch):
    """A run trained on another host (shared folder) or read from a record alone: no process facts."""
    monkeypatch.delenv("SEGWATCH_STALL_FLOOR_S", raising=False)
    st = RunState()
    now = [1000.0]
    st.clock = lambda: now[0]
    st.apply({"type": "start", "t": 1000.0, "seq": 0, "steps_per_epoch": 4, "pid": os.getpid()})
    now[0] = 1000.0 + st.stall_bound() + 1
    assert st.status == "stalled"


@pytest.mark.slow  # starts a process
def test_a_probe_is_a_typed_result_of_the_process_checks(tmp_path, proc):
    """app.runlib.process.probe: exit.json, the pid and whether it is a live trainer, by name."""
    import json

    from app.runlib.process import Probe, probe

    p = proc(IDLE)
    rec = Record(tmp_path / "r")
    rec.start(pid=p.pid)
    notes: dict[str, str] = {}
    got = probe(rec.dir, {"pid": p.pid}, None, notes)
    assert isinstance(got, Probe) and (got.exit_info, got.alive, got.pid) == (None, True, p.pid)
    p.kill()
    p.wait(10)
    (rec.dir / "exit.json").write_text(json.dumps({"returncode": -9, "signal": 9, "t": time.time()}))
    got = probe(rec.dir, {"pid": p.pid}, None, notes)
    assert got.alive is False and got.exit_info["signal"] == 9 and notes == {}
    assert probe(rec.dir, {"pid": p.pid}, "another-host", notes).alive is None  # cannot tell from here
