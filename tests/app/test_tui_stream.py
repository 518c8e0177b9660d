"""Pilot tests: streaming (coalescing, bounded memory, latency), crashes, and the two-run compare."""

from __future__ import annotations

import re

import json
import os
import signal
import sys
import time
from pathlib import Path

from fake_trainer import FakeTrainer, canned_epoch
from tui_helpers import make_app, pane_text, wait_for

from app import launch
from app.tui.app import RunsChanged

SIZE = (160, 60)
HERE = Path(__file__).resolve().parent


def write_record(run_dir: Path, epochs: int, steps_per_epoch: int, live_pid: bool = True) -> None:
    """A canned record written at once: a long run's whole history."""
    ft = FakeTrainer(run_dir, epochs=epochs, steps_per_epoch=steps_per_epoch)
    ft.pid = os.getpid()
    ft._setup()
    lines = []
    seq = 0
    t0 = time.time() - epochs * 60
    step = 0
    for e in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            step += 1
            lines.append({"v": 1, "seq": seq, "t": t0, "type": "step", "epoch": e, "step": step, "loss": 1.0 / e,
                          "lr": 3e-4, "gamma": 2.5, "samples_per_s": 100.0, "data_wait": 0.0})
            seq += 1
        m = canned_epoch(e, ft.live)
        lines.append({"v": 1, "seq": seq, "t": t0 + e * 60, "type": "epoch", "epoch": e, "step": step, **m,
                      "lr": 3e-4, "gamma": 2.5, "alpha": 0.5, "dropout": 0.2, "epoch_time": 60.0,
                      "eta_s": 60.0 * (epochs - e), "best_val_f": m["val_f"], "best_epoch": e,
                      "skipped_steps": 0, "epochs": epochs})
        seq += 1
    with open(run_dir / "events.jsonl", "a") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))
    if not live_pid:
        (run_dir / "trainer.pid").unlink()


async def test_long_history_attaches_small_and_fast(tmp_path):
    """300 epochs x 100 step events: the view holds bounded points and shows the last epoch."""
    d = tmp_path / "long"
    write_record(d, epochs=300, steps_per_epoch=100, live_pid=False)
    app = make_app([d])
    t0 = time.monotonic()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch == 300, 20, "epoch 300")
        took = time.monotonic() - t0
        v = app.views[0]
        assert len(v.loss_steps[0]) <= 240 and len(v.val_f[0]) <= 240
        assert len(app.watcher.runs[0].state.steps) <= 2000
        assert "epoch 300/300" in pane_text(app)
    print(f"attach to 30,300 events: first full view after {took:.2f}s")


async def test_flood_is_coalesced(tmp_path):
    """Thousands of events in a burst make a handful of redraws, and the last one is shown."""
    ft = FakeTrainer(tmp_path / "flood", epochs=1000, steps_per_epoch=50, history=0, step_delay=0.0, hold=True)
    app = make_app([ft.run_dir], interval=0.25)
    msgs = []
    async with app.run_test(size=SIZE, message_hook=lambda m: msgs.append(m) if isinstance(m, RunsChanged) else None) as pilot:
        t0 = time.monotonic()
        ft.start()
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch >= 40, 30, "40 epochs")
        elapsed = time.monotonic() - t0
        ft.stop_thread()
        steps = app.watcher.runs[0].state.steps_seen
        # coalesced: at most one redraw message per watcher tick, however many events each tick
        # read (counted, not timed: a loaded machine makes fewer, slower ticks, never more messages)
        assert len(msgs) <= app.watcher.ticks, (len(msgs), app.watcher.ticks)
        assert steps >= 2000 and len(msgs) * 20 < steps, (len(msgs), steps)
    print(f"flood: {steps} step events in {elapsed:.1f}s -> {len(msgs)} redraw messages")


async def test_event_to_screen_latency(tmp_path):
    ft = FakeTrainer(tmp_path / "lat", epochs=50, history=2, step_delay=0.0, hold=True)
    ft.pid = os.getpid()
    app = make_app([ft.run_dir], interval=0.25)
    async with app.run_test(size=SIZE) as pilot:
        ft._setup()
        ft._epoch(1, 0)
        await wait_for(pilot, lambda: 0 in app.views and app.views[0].epoch == 1, 10, "epoch 1")
        lat = []
        for e in range(2, 4):  # two epochs: the figure itself is bench/tui_latency.py's
            t0 = time.monotonic()
            ft._epoch(e, 0)
            await wait_for(pilot, lambda: f"epoch {e}/50" in pane_text(app), 5, f"epoch {e}")
            lat.append(time.monotonic() - t0)
        # a figure, not an assertion (no timed assertions: bench/tui_latency.py measures it)
        print(f"event-to-screen latency at 4 Hz polling: max {max(lat) * 1000:.0f} ms, "
              f"mean {sum(lat) / len(lat) * 1000:.0f} ms")


def start_supervised_fake(run_dir: Path, *extra: str) -> launch.LaunchSpec:
    spec = launch.LaunchSpec(Path("fake.yaml"), run_dir, run_dir.name, [])
    argv = [sys.executable, "-m", "app.supervise", str(run_dir), "--", sys.executable, str(HERE / "fake_trainer.py"),
            str(run_dir), "--epochs", "500", "--step-delay", "0.05", "--history", "2", *extra]
    return launch.start(spec, argv=argv)


def pid_of(run_dir: Path) -> int:
    return int((run_dir / "trainer.pid").read_text())


async def test_sigkill_turns_the_pane_red_and_the_other_keeps_going(tmp_path):
    a = start_supervised_fake(tmp_path / "victim")
    b = start_supervised_fake(tmp_path / "survivor")
    app = make_app([a.run_dir, b.run_dir], interval=0.25)
    app.watcher.specs = [a, b]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: all(i in app.views and app.views[i].epoch >= 2 for i in (0, 1)), 20, "both running")
            os.kill(pid_of(a.run_dir), signal.SIGKILL)
            t0 = time.monotonic()
            await wait_for(pilot, lambda: app.panes[0].has_class("-red") and "SIGKILL" in pane_text(app, 0), 5, "red pane")
            took = time.monotonic() - t0
            assert took < 2.0, took
            assert "killed by SIGKILL (signal 9)" in pane_text(app, 0)
            assert app.views[0].status == "crashed"
            step = app.views[1].step
            await wait_for(pilot, lambda: app.views[1].step > step, 5, "the survivor moving on")
            assert app.views[1].status == "running" and not app.panes[1].has_class("-red")
            print(f"SIGKILL -> red pane in {took * 1000:.0f} ms")
    finally:
        for d in (a.run_dir, b.run_dir):
            try:
                os.kill(pid_of(d), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for s in (a, b):
            s.proc.wait(10)


async def test_crash_shows_exit_code_and_stderr(tmp_path):
    d = tmp_path / "boom"
    spec = launch.LaunchSpec(Path("x.yaml"), d, "boom", [])
    code = ("import sys, json, os, time; d=sys.argv[1]; open(d+'/trainer.pid','w').write(str(os.getpid())); "
            "time.sleep(0.5); print('Traceback (most recent call last):', file=sys.stderr); "
            "print('RuntimeError: CUDA out of memory (fake trainer)', file=sys.stderr); sys.exit(1)")
    launch.start(spec, argv=[sys.executable, "-m", "app.supervise", str(d), "--", sys.executable, "-c", code, str(d)])
    app = make_app([d], interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "exit code 1" in pane_text(app), 10, "crashed with its exit code")
        text = pane_text(app)
        assert app.panes[0].has_class("-red")
        assert "exit code 1" in text and "CUDA out of memory" in text
    spec.proc.wait(5)


async def test_two_runs_side_by_side_with_compare(tmp_path):
    a = FakeTrainer(tmp_path / "focal", epochs=30, history=6, step_delay=0.05).start()
    b = FakeTrainer(tmp_path / "aggressive", epochs=30, history=6, step_delay=0.05, scenario="worse").start()
    try:
        app = make_app([a.run_dir, b.run_dir])
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.views) == 2 and min(v.epoch for v in app.views.values()) >= 6, 10, "both")
            p0, p1 = app.panes[0], app.panes[1]
            assert p0.region.y == p1.region.y and p0.region.x < p1.region.x  # side by side
            await wait_for(pilot, lambda: "@ epoch" in app.compare.render().plain, 5, "compare")
            text = app.compare.render().plain
            # each run named beside its own value, in the same order (issue 13)
            m = re.search(r"@ epoch (\d+): +val F focal (\S+) · aggressive (\S+)", text)
            assert m, text
            ep = int(m.group(1))
            fa, fb = app.views[0].by_epoch[ep][0], app.views[1].by_epoch[ep][0]
            assert (m.group(2), m.group(3)) == (f"{fa:.3f}", f"{fb:.3f}")
            assert "(aggressive − focal)" in text and "l_eye" in text
            assert "-0.0" in text  # the worse run shows negative deltas
            await pilot.press("2")
            assert "(aggressive − focal)" in app.compare.render().plain
    finally:
        a.stop_thread()
        b.stop_thread()
