"""Run: refresh, send (O_APPEND, 0600, validation), liveness, and the supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _runrecord import Record

from app.runlib import ControlFileError, Run
from app.runlib import run as run_mod

ROOT = Path(__file__).resolve().parents[2]


def control_lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "control.jsonl").read_bytes().splitlines()]


def started_run(tmp_path, name="r") -> tuple[Record, Run]:
    rec = Record(tmp_path / name)
    rec.start()
    run = Run(rec.dir)
    run.refresh()
    return rec, run


def test_send_appends_one_line_per_command_with_one_write(tmp_path, monkeypatch):
    rec, run = started_run(tmp_path)
    opened, writes = [], []
    real_open, real_write = os.open, os.write

    def spy_open(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if str(path).endswith("control.jsonl"):
            opened.append((fd, flags, mode))
        return fd

    def spy_write(fd, data):
        if any(fd == o[0] for o in opened):
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(run_mod.os, "open", spy_open)
    monkeypatch.setattr(run_mod.os, "write", spy_write)
    id1 = run.send("set", {"lr": "3e-4", "hflip": False}, reason="calmer")
    id2 = run.send("pause")
    monkeypatch.undo()
    assert len(writes) == 2 and all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in writes)
    for _, flags, mode in opened:
        assert flags & os.O_APPEND and flags & os.O_CREAT and mode == 0o600
    assert (rec.dir / "control.jsonl").stat().st_mode & 0o777 == 0o600
    lines = control_lines(rec.dir)
    assert [x["id"] for x in lines] == [id1, id2]
    assert len(id1) == 32 and int(id1, 16) >= 0
    assert lines[0]["values"] == {"lr": 0.0003, "hflip": False}  # the float string is coerced
    assert lines[0]["v"] == 1 and lines[0]["reason"] == "calmer" and lines[0]["source"] == "cli"
    assert isinstance(lines[0]["t"], float) and lines[1]["cmd"] == "pause" and "values" not in lines[1]
    run.refresh()
    assert [a.status for a in run.state.pending()] == ["pending", "pending"]


@pytest.mark.parametrize("values, expect", [
    ({"gamma": -1}, "gamma = -1 is not allowed"),
    ({"gama": 1.0}, "did you mean 'gamma'"),
    ({"batch_size": 8}, "needs a restart"),
    ({"training.learning_rate": 0.1}, "send the live name 'lr'"),
    ({"epochs": 0}, "not allowed"),
    ({}, "non-empty"),
    (None, "non-empty"),
])
def test_send_refuses_invalid_values_and_writes_nothing(tmp_path, values, expect):
    _, run = started_run(tmp_path)
    with pytest.raises(ValueError, match=expect):
        run.send("set", values)
    with pytest.raises(ValueError, match="unknown command"):
        run.send("explode")
    with pytest.raises(ValueError, match="takes no values"):
        run.send("pause", {"lr": 0.1})
    assert not (run.path / "control.jsonl").exists()


def test_send_refuses_a_group_writable_control_file(tmp_path):
    _, run = started_run(tmp_path)
    p = run.path / "control.jsonl"
    p.write_bytes(b"")
    os.chmod(p, 0o664)
    with pytest.raises(ControlFileError, match="chmod 600"):
        run.send("pause")
    assert p.read_bytes() == b""


def test_concurrent_senders_never_interleave(tmp_path):
    rec, _ = started_run(tmp_path)
    script = (
        "import sys; from app.runlib import Run\n"
        "r = Run(sys.argv[1]); r.refresh()\n"
        "for i in range(200): r.send('set', {'gamma': (i % 10) + 0.5}, reason='x' * (i * 7 % 300), source=sys.argv[2])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(rec.dir), f"p{k}"], cwd=ROOT) for k in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    raw = (rec.dir / "control.jsonl").read_bytes()
    lines = raw.splitlines()
    assert len(lines) == 400 and raw.endswith(b"\n")
    parsed = [json.loads(x) for x in lines]
    assert len({x["id"] for x in parsed}) == 400
    assert sorted(x["source"] for x in parsed).count("p0") == 200
    run = Run(rec.dir)
    run.refresh()
    assert len(run.state.pending()) == 400 and run.state.bad_lines == 0


def test_refresh_returns_new_events_and_rebuilds_on_replace(tmp_path):
    rec = Record(tmp_path / "r")
    run = Run(rec.dir)
    assert run.refresh() == [] and run.state.status == "starting"
    rec.start()
    rec.epochs_run(1, 2)
    got = run.refresh()
    assert [e["type"] for e in got][:2] == ["start", "step"] and run.state.last_epoch == 2
    assert run.refresh() == []
    rec.write_raw(b"garbage\n")
    run.refresh()
    assert run.state.bad_lines == 1
    # the record is replaced (e.g. a run directory rewritten): the state starts over
    (rec.dir / "events.jsonl").write_bytes((json.dumps({"v": 1, "seq": 0, "t": 1.0, "type": "start",
                                                        "epochs": 3, "live": {"lr": 0.01}}) + "\n").encode())
    got = run.refresh()
    assert run.generation == 1 and len(got) == 1
    assert run.state.epochs == {} and run.state.total_epochs == 3 and run.state.bad_lines == 0


def test_wait_for_answer(tmp_path):
    rec, run = started_run(tmp_path)
    cid = run.send("set", {"lr": 0.001})
    t0 = time.monotonic()
    assert run.wait_for_answer(cid, timeout=0.2) is None
    assert time.monotonic() - t0 >= 0.2

    def trainer():
        time.sleep(0.1)
        rec.ack(control_lines(rec.dir)[0], epoch=1)

    th = threading.Thread(target=trainer)
    th.start()
    ans = run.wait_for_answer(cid, timeout=10)
    th.join()
    assert ans["type"] == "ack" and ans["changes"] == {"lr": [0.0005, 0.001]}
    assert run.state.live["lr"] == 0.001


def test_wait_for_answer_returns_when_the_run_ends(tmp_path):
    rec, run = started_run(tmp_path)
    cid = run.send("checkpoint")
    rec.end("stopped")
    t0 = time.monotonic()
    assert run.wait_for_answer(cid, timeout=30) is None
    assert time.monotonic() - t0 < 5


def test_process_alive_real_process_and_zombie(tmp_path):
    rec, run = started_run(tmp_path)
    assert run.process_alive() is None  # no pid file, no pid in the start event
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "trainer"])
    try:
        (rec.dir / "trainer.pid").write_text(f"{p.pid}\n")
        assert run.process_alive() is True
        run.refresh()
        assert run.state.status == "running"
        p.kill()
        deadline = time.monotonic() + 5
        while run.process_alive() and time.monotonic() < deadline:  # a zombie is not alive
            time.sleep(0.01)
        assert run.process_alive() is False
    finally:
        p.kill()
        p.wait()
    assert run.process_alive() is False
    run.refresh()
    assert run.state.status == "crashed" and "gone" in run.state.crash_reason
    (rec.dir / "trainer.pid").unlink()
    rec.end("completed", epoch=0)  # a clean end: never a crash
    run.refresh()
    assert run.state.status == "finished"


def test_process_on_another_host_is_unknown(tmp_path):
    rec, run = started_run(tmp_path)
    (rec.dir / "trainer.pid").write_text("999999999\n")
    run.refresh()
    assert run.process_alive() is False and run.state.status == "crashed"
    (rec.dir / "meta.json").write_text(json.dumps({"host": "elsewhere.example", "pid": 999999999}))
    rec.start(resume_epoch=0)  # meta.json is reread at each start
    run.refresh()
    run.refresh()
    assert run.process_alive() is None and run.state.status == "running"


def supervise(run_dir: Path, code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.supervise", str(run_dir), "--", sys.executable, "-c", code],
                            cwd=ROOT, **kw)


def test_supervisor_records_sigkill(tmp_path):
    d = tmp_path / "r"
    p = supervise(d, "import os, signal; print('hello'); os.kill(os.getpid(), signal.SIGKILL)")
    assert p.wait(timeout=30) == 128 + 9
    info = json.loads((d / "exit.json").read_text())
    assert info["signal"] == 9 and info["returncode"] == -9 and isinstance(info["t"], float)
    assert (d / "stdout.log").read_text() == "hello\n"
    assert not list(d.glob(".exit.json*"))  # the temp file was renamed
    run = Run(d)
    run.refresh()
    assert run.state.status_detail() == "crashed: killed by SIGKILL (signal 9)"


def test_supervisor_exit_code_3_and_stderr(tmp_path):
    d = tmp_path / "r"
    (d).mkdir()
    (d / "exit.json").write_text('{"returncode": -9, "signal": 9, "t": 1}')  # stale: removed at start
    p = supervise(d, "import sys; sys.stderr.write('ValueError: bad data\\n'); sys.exit(3)")
    assert p.wait(timeout=30) == 3
    assert json.loads((d / "exit.json").read_text())["returncode"] == 3
    run = Run(d)
    run.refresh()
    assert run.state.status_detail() == "crashed: exit code 3"
    assert run.stderr_tail() == ["ValueError: bad data"]


def test_supervisor_forwards_sigterm(tmp_path):
    d = tmp_path / "r"
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); print('up', flush=True); time.sleep(30)"
    p = supervise(d, code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ((d / "stdout.log").exists() and (d / "stdout.log").read_text()):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 7
    assert json.loads((d / "exit.json").read_text())["returncode"] == 7


def test_supervisor_usage_and_missing_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "app.supervise", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    d = tmp_path / "r"
    r = subprocess.run([sys.executable, "-m", "app.supervise", str(d), "--", "/nonexistent/trainer"], cwd=ROOT)
    assert r.returncode == 127
    info = json.loads((d / "exit.json").read_text())
    assert info["returncode"] == 127 and "cannot start" in info["error"]
