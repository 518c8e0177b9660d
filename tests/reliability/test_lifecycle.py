"""Issue 11, app side: the state a run shows is its latest attempt's, a torn control line never
swallows the next command, and a trainer that stops making progress shows STALLED.

Real trainer processes, started exactly as `segwatch run` starts them (supervisor, own session).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from faults import CONFIGS, ROOT, TINY, env, events, segwatch, wait_for

from app import launch
from app.runlib import Run
from app.runlib.liveness import STOPPED_GRACE_S


def start_supervised(runs: Path, *sets: str) -> launch.LaunchSpec:
    (spec,) = launch.plan_runs([CONFIGS / "lmsa_focal.yaml"], [*TINY, *sets], runs_dir=runs, device="cpu")
    return launch.start(spec)


def refreshed(run_dir: Path) -> Run:
    r = Run(run_dir)
    r.refresh()
    return r


def _exit_pid(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "exit.json").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def _kill_group(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_a_late_exit_json_of_the_previous_attempt_never_marks_the_resumed_run(tmp_path):
    """Item 3: `segwatch resume` right after the run ended; the old supervisor writes its exit.json
    (exit code 0) only after the new attempt started. The run stays running; headless goes on."""
    spec = start_supervised(tmp_path, "training.epochs=8", "debug.step_delay=0.15")
    d = spec.run_dir
    headless = None
    try:
        wait_for(lambda: [c for c in events(d, "checkpoint") if c["kind"] == "last"], 180, "the first checkpoint")
        old_pid = events(d, "start")[0]["pid"]
        os.kill(spec.pid, signal.SIGSTOP)  # the old supervisor cannot write exit.json until SIGCONT
        assert segwatch("stop", str(d), "--wait", "--timeout", "120").returncode == 0
        wait_for(lambda: refreshed(d).state.status == "stopped", 60, "the run shown stopped")
        headless = subprocess.Popen([sys.executable, "-m", "app", "resume", str(d), "--headless", "--interval", "0.1"],
                                    cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
        new_start = wait_for(lambda: events(d, "start")[1:], 180, "the resumed trainer's start event")[0]
        os.kill(spec.pid, signal.SIGCONT)
        wait_for(lambda: _exit_pid(d) == old_pid, 60, "the old attempt's late exit.json")
        late = json.loads((d / "exit.json").read_text())
        assert late["returncode"] == 0
        run = refreshed(d)
        assert run.state.status == "running", run.state.status_detail()
        assert late["attempt"] == events(d, "start")[0]["attempt"] != new_start["attempt"]  # how it is told apart
        assert headless.poll() is None, headless.communicate()[0]
        stop = segwatch("stop", str(d), "--wait", "--timeout", "120")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        out, _ = headless.communicate(timeout=120)
        assert headless.returncode == 0, out
        assert "CRASHED" not in out and "exit code 0" not in out, out
        assert refreshed(d).state.status == "stopped"
    finally:
        try:
            os.kill(spec.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        _kill_group(headless)
        for s in events(d, "start"):
            try:
                os.kill(s["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_earlier_attempts_exit_json_is_ignored_by_attempt_id(tmp_path):
    """The reader's rule on its own: exit.json counts only for the attempt of the last start."""
    from app.runlib.liveness import exit_applies
    from app.runlib.process import Restart

    start = {"t": 100.0, "attempt": "b"}
    assert not exit_applies({"returncode": 0, "t": 200.0, "attempt": "a"}, start, None)  # late, older attempt
    assert exit_applies({"returncode": 1, "t": 200.0, "attempt": "b"}, start, None)
    assert not exit_applies({"returncode": 0, "t": 50.0}, {"t": 100.0}, None)  # no ids: times decide
    assert exit_applies({"returncode": 0, "t": 150.0}, {"t": 100.0}, None)
    pending = Restart(after_seq=5, since=100.0, attempt="c")  # segwatch resume launched attempt c, its start not read yet
    assert not exit_applies({"returncode": 0, "t": 200.0, "attempt": "b"}, start, pending)
    assert exit_applies({"returncode": 2, "t": 200.0, "attempt": "c"}, start, pending)


def test_a_torn_control_line_never_swallows_the_next_command(tmp_path):
    """Item 6 (writer half): control.jsonl ends in an unterminated line (a writer died mid-line);
    `segwatch set --wait` is still answered: the app starts its line on a fresh line."""
    spec = start_supervised(tmp_path, "training.epochs=30", "debug.step_delay=0.1")
    d = spec.run_dir
    try:
        wait_for(lambda: (d / "events.jsonl").exists() and events(d, "step"), 180, "the first step")
        fd = os.open(d / "control.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b'{"v": 1, "id": "torn", "cmd": "se')  # no newline: torn
        os.close(fd)
        res = segwatch("set", str(d), "gamma=1.25", "--wait", "--timeout", "120")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "applied" in res.stdout
        lines = (d / "control.jsonl").read_bytes().split(b"\n")
        assert lines[0] == b'{"v": 1, "id": "torn", "cmd": "se'  # the fragment stays a line of its own
        assert json.loads(lines[1])["values"] == {"gamma": 1.25}
    finally:
        _stop(spec)


def _stop(spec: launch.LaunchSpec) -> None:
    if spec.proc is not None and spec.proc.poll() is None:
        os.killpg(spec.proc.pid, signal.SIGTERM)
        try:
            spec.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(spec.proc.pid, signal.SIGKILL)
            spec.proc.wait(30)


def test_the_writer_starts_a_fresh_line_only_after_a_torn_one(tmp_path):
    from app.runlib.run import append_line

    p = tmp_path / "control.jsonl"
    append_line(p, b'{"a": 1}\n')
    append_line(p, b'{"b": 2}\n')
    assert p.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    with open(p, "ab") as f:
        f.write(b'{"c": ')
    append_line(p, b'{"d": 4}\n')
    assert p.read_bytes() == b'{"a": 1}\n{"b": 2}\n{"c": \n{"d": 4}\n'


# -- STALLED: alive, no progress ----------------------------------------------------------------

STALL_FLOOR = "3"  # $SEGWATCH_STALL_FLOOR_S for these tests (default 30 s): bound = max(4 x gap, 3 s)


def _stall_env() -> dict:
    return {**env(), "SEGWATCH_STALL_FLOOR_S": STALL_FLOOR}


def _trainer_pid(run_dir: Path) -> int:
    return wait_for(lambda: [s["pid"] for s in events(run_dir, "start")], 120, "the start event")[-1]


def test_a_stopped_trainer_shows_stalled_in_ls_and_headless_then_running_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGWATCH_STALL_FLOOR_S", STALL_FLOOR)
    spec = start_supervised(tmp_path, "training.epochs=40", "debug.step_delay=0.05")
    d = spec.run_dir
    pid = _trainer_pid(d)
    log = open(tmp_path / "headless.log", "w")
    headless = subprocess.Popen([sys.executable, "-m", "app", "attach", str(d), "--headless", "--interval", "0.2"],
                                cwd=ROOT, env=_stall_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stopped = False
    try:
        wait_for(lambda: events(d, "epoch"), 180, "the first epoch (its validation measured)")
        run = refreshed(d)
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        t0 = time.monotonic()
        while run.state.status != "stalled":
            assert time.monotonic() - t0 < 120, run.state.status_detail()
            time.sleep(0.05)
            run.refresh()
        took, bound = time.monotonic() - t0, run.state.stall_bound()
        c = run.state.cadence
        print(f"STALLED shown {took:.2f} s after SIGSTOP; bound {bound:.2f} s (gaps: epoch in progress "
              f"{c.current:.2f}, epochs {list(c.epochs)}, validations {list(c.validations)})")
        # by the documented rule, not a fixed guess: a stopped process (state T) is stalled once no
        # event came for min(STOPPED_GRACE_S, the cadence bound)
        assert run.state.stalled_for() > min(STOPPED_GRACE_S, bound)
        detail = run.state.status_detail()
        assert detail.startswith("STALLED: process stopped") and f"kill -CONT {pid}" in detail, detail
        assert "no event for" in detail and "last: " in detail and "bound" in detail
        ls = subprocess.run([sys.executable, "-m", "app", "ls", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env=_stall_env())
        assert ls.returncode == 0 and "STALLED: process stopped" in ls.stdout, ls.stdout + ls.stderr
        wait_for(lambda: "STALLED: process stopped" in (tmp_path / "headless.log").read_text(), 60,
                 "headless STALLED")
        res = subprocess.run([sys.executable, "-m", "app", "set", str(d), "gamma=1.5"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT, env=_stall_env())
        assert res.returncode == 0 and "is STALLED" in res.stderr and "since" in res.stderr, res.stderr
        os.kill(pid, signal.SIGCONT)
        stopped = False
        wait_for(lambda: refreshed(d).state.status == "running", 60, "running again after SIGCONT")
        wait_for(lambda: "running again: events resumed" in (tmp_path / "headless.log").read_text(), 60,
                 "headless back to running")
        from faults import answers
        wait_for(lambda: answers(d, refreshed(d).state.adjustments[-1].id), 60, "the queued command answered")
        from app.health import load_rules
        from app.snapshot import build_view

        assert build_view(0, refreshed(d), load_rules()).colour != "red"
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        _kill_group(headless)
        log.close()
        _stop(spec)


def test_the_cockpit_shows_a_stopped_trainer_stalled_and_red(tmp_path, monkeypatch):
    import asyncio

    from tui_helpers import make_app, pane_text
    from tui_helpers import wait_for as pilot_wait

    monkeypatch.setenv("SEGWATCH_STALL_FLOOR_S", STALL_FLOOR)
    spec = start_supervised(tmp_path, "training.epochs=40", "debug.step_delay=0.05")
    d = spec.run_dir
    pid = _trainer_pid(d)
    wait_for(lambda: events(d, "epoch"), 180, "the first epoch")

    async def drive():
        app = make_app([d])
        async with app.run_test(size=(160, 60)) as pilot:
            await pilot_wait(pilot, lambda: 0 in app.views and app.views[0].status == "running", 60, "running")
            os.kill(pid, signal.SIGSTOP)
            try:
                await pilot_wait(pilot, lambda: app.views[0].status == "stalled", 120, "STALLED in the cockpit")
                assert app.views[0].colour == "red"
                assert "STALLED: process stopped" in pane_text(app) and " RED " in pane_text(app)
            finally:
                os.kill(pid, signal.SIGCONT)
            await pilot_wait(pilot, lambda: app.views[0].status == "running", 60, "running again")
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        _stop(spec)


def test_stall_bound_follows_the_runs_own_cadence(monkeypatch):
    from app.runlib import RunState

    monkeypatch.delenv("SEGWATCH_STALL_FLOOR_S", raising=False)
    st = RunState()
    now = [1000.0]
    st.clock = lambda: now[0]
    t = 1000.0
    st.apply({"type": "start", "t": t, "seq": 0, "steps_per_epoch": 4, "pid": 1})
    for step in range(1, 5):
        t += 2.0
        st.apply({"type": "step", "t": t, "seq": step, "epoch": 1, "step": step})
    t += 20.0  # validation
    st.apply({"type": "epoch", "t": t, "seq": 5, "epoch": 1, "step": 4})
    assert st.stall_bound() == 80.0  # 4 x the longest recent gap (the validation, 20 s) > the 30 s floor
    now[0] = t + 79
    assert st.status == "running"
    now[0] = t + 81
    assert st.status == "stalled" and "last: epoch at epoch 1, step 4" in st.status_detail()
    st.apply({"type": "step", "t": t + 81, "seq": 6, "epoch": 2, "step": 5})
    assert st.status == "running"  # events resumed: back by itself
    st.apply({"type": "paused", "t": t + 82, "seq": 7, "epoch": 2, "step": 5})
    now[0] = t + 10_000
    assert st.status == "paused"  # a pause is a person's choice, never a stall
    st.apply({"type": "resumed", "t": t + 10_000, "seq": 8, "epoch": 2, "step": 5})
    assert st.stall_bound() == 4 * 81.0  # the pause is not a gap; the 81 s hang is (self-correcting)


# -- item 7: what can be checked before a run directory is made ---------------------------------


def _leftovers(runs: Path) -> list[str]:
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("*")) if runs.exists() else []


def test_a_missing_data_root_is_refused_before_any_run_directory_exists(tmp_path):
    runs = tmp_path / "runs"
    missing = tmp_path / "no-such-data"
    res = segwatch("run", str(CONFIGS / "lmsa_focal.yaml"), "--set", f"data.root={missing}", "--runs-dir", str(runs),
                   "--headless", "--device", "cpu", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "data.root" in err[0] and "does not exist" in err[0] and "allowed:" in err[0], err
    assert _leftovers(runs) == []  # no run directory, nothing taking the name
    assert "lmsa_focal" not in segwatch("ls", str(runs)).stdout


def test_a_data_root_of_neither_layout_and_a_plan_are_refused_up_front(tmp_path):
    runs = tmp_path / "runs"
    data = tmp_path / "data"
    (data / "train" / "images").mkdir(parents=True)  # mini layout without masks or val
    res = segwatch("run", str(CONFIGS / "baseline.yaml"), str(CONFIGS / "lmsa_focal.yaml"), "--serial",
                   "--set", f"data.root={data}", "--set", "data.format=mini", "--runs-dir", str(runs), "--headless",
                   "--device", "cpu", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "folder missing for data.format mini" in line and "train/masks/" in line, line
    assert _leftovers(runs) == []


def test_preflight_accepts_the_layouts_the_trainer_accepts(tmp_path):
    from app.preflight import check_data
    from trainer.core.config import ConfigError, load_config

    mini, celeb = tmp_path / "mini", tmp_path / "celeb"
    for d in ("train/images", "train/masks", "val/images", "val/masks"):
        (mini / d).mkdir(parents=True)
    for d in ("CelebA-HQ-img", "CelebAMask-HQ-mask-anno"):
        (celeb / d).mkdir(parents=True)
    for root in (mini, celeb):
        check_data(load_config(CONFIGS / "lmsa.yaml", [f"data.root={root}"]), "x.yaml")
    check_data(load_config(CONFIGS / "lmsa.yaml", []), "x.yaml")  # synthetic
    try:
        check_data(load_config(CONFIGS / "lmsa.yaml", [f"data.root={celeb}", "data.format=mini"]), "x.yaml")
    except ConfigError as e:
        assert "train/images/" in str(e)
    else:
        raise AssertionError("a CelebAMask-HQ folder passed as data.format mini")


# -- item 8: a plan whose scheduler died --------------------------------------------------------


def _plan_file(runs: Path) -> Path | None:
    found = sorted((runs / "plans").glob("*.json")) if (runs / "plans").is_dir() else []
    return found[0] if found else None


def _plan(runs: Path) -> dict:
    f = _plan_file(runs)
    try:
        return json.loads(f.read_text()) if f else {}
    except ValueError:  # never torn (atomic rename), but be safe
        return {}


def test_a_plan_whose_scheduler_died_shows_interrupted_and_can_be_continued(tmp_path):
    runs = tmp_path / "runs"
    sets = [a for s in [*TINY, "training.epochs=2", "debug.step_delay=0.1"] for a in ("--set", s)]
    viewer = subprocess.Popen([sys.executable, "-m", "app", "run", str(CONFIGS / "baseline.yaml"),
                               str(CONFIGS / "lmsa_focal.yaml"), "--serial", "--gate", "epochs >= 1", *sets,
                               "--runs-dir", str(runs), "--headless", "--device", "cpu"],
                              cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    sched = None
    try:
        plan = wait_for(lambda: (p := _plan(runs)).get("scheduler_pid") and p["items"][0]["state"] == "started" and p,
                        120, "the plan's first run started")
        sched = plan["scheduler_pid"]
        os.kill(sched, signal.SIGKILL)  # the scheduler dies; its first run goes on
        _kill_group(viewer)
        first = Path(plan["items"][0]["run_dir"])
        wait_for(lambda: refreshed(first).state.status == "finished", 240, "the first run to finish")
        name = plan["name"]
        shown = segwatch("plan", name, "--runs-dir", str(runs))
        assert shown.returncode == 0, shown.stderr
        assert "interrupted" in shown.stdout and f"pid {sched}" in shown.stdout, shown.stdout
        lines = shown.stdout.splitlines()
        assert "finished" in next(ln for ln in lines if "1. baseline" in ln), shown.stdout  # not "running"
        assert "--continue" in next(ln for ln in lines if "2. lmsa_focal" in ln), shown.stdout
        listed = segwatch("plan", "--runs-dir", str(runs))
        assert "interrupted" in listed.stdout and "baseline:finished" in listed.stdout, listed.stdout
        cont = segwatch("plan", name, "--continue", "--runs-dir", str(runs))
        assert cont.returncode == 0, cont.stdout + cont.stderr
        assert "continued" in cont.stderr
        done = wait_for(lambda: (p := _plan(runs)).get("status") == "done" and p, 300, "the continued plan done")
        a, b = done["items"]
        assert a["state"] == "ended" and a["result"]["status"] == "finished"
        assert b["state"] == "ended" and b["decision"]["action"] == "start" and b["decision"]["after"] == "baseline"
        assert refreshed(Path(b["run_dir"])).state.status == "finished"
        assert "done" in segwatch("plan", name, "--runs-dir", str(runs)).stdout
        again = segwatch("plan", name, "--continue", "--runs-dir", str(runs))
        assert again.returncode == 2 and "nothing to continue" in again.stderr
    finally:
        _kill_group(viewer)
        p = _plan(runs)
        for pid in [p.get("scheduler_pid")] + [it.get("supervisor_pid") for it in p.get("items", [])]:
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
