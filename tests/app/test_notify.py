"""Never miss a red: notifications (bell, OSC 9/777, --notify-cmd) and the end-of-run summary.

The real trainer turns red (a NaN loss at step 3) and finishes; `--notify-cmd` gets each event
once as JSON; a re-attach to the finished run notifies nothing (its history is not news).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tui_helpers import make_app, wait_for

from app import launch
from app.headless import Follower, follow
from app.health import load_rules
from app.notify import BURST, Notifier, NotifyCmdError, parse_notify_cmd, terminal_sequence
from app.runlib import Run

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=8", "data.image_size=32", "training.epochs=3",
        "training.warmup_epochs=0", "training.batch_size=8", "training.log_every=1", "debug.step_delay=0.3",
        "debug.nan_at_step=3"]


def recorder(tmp_path: Path) -> tuple[list[str], Path]:
    """A --notify-cmd that appends the JSON it reads on stdin to a file (one line each)."""
    out = tmp_path / "notified.jsonl"
    code = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read().strip() + '\\n')"
    return [sys.executable, "-c", code], out


def read_events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_terminal_sequence_is_clean_and_wrapped_for_tmux():
    ev = {"title": "segwatch: a;b RED", "message": "x\x1b]0;pwned\x07 turned\nRED \x9b31m"}
    seq = terminal_sequence(ev, tmux=False, term="xterm-256color")
    assert seq.startswith("\a\x1b]9;segwatch: a,b RED: x ]0,pwned turned RED 31m\x07") or seq.startswith("\a\x1b]9;")
    # the only control characters are the ones we put there: BEL, and ESC opening each OSC
    assert seq.count("\x1b") == 2 and seq.count("\x07") == 3 and "\x9b" not in seq and "\n" not in seq
    assert "\x1b]777;notify;segwatch: a,b RED;x ]0;pwned turned RED 31m\x07" in seq
    wrapped = terminal_sequence(ev, tmux=True, term="screen")
    assert wrapped.count("\x1bPtmux;\x1b\x1b]") == 2 and wrapped.endswith("\x07\x1b\\")
    assert terminal_sequence(ev, tmux=False, term="linux") == "\a"


def test_each_event_once_with_a_baseline_and_a_rate_limit():
    now = [1000.0]
    n = Notifier(clock=lambda: now[0])
    look = dict(name="a", epoch=3, detail="", action="", summary="")
    assert n.observe(0, status="running", colour="red", **look) == []  # baseline: the replayed history
    assert n.observe(0, status="running", colour="red", **look) == []  # still red: nothing new
    assert n.observe(1, status="running", colour="green", complete=False, **look) == []  # catching up
    assert not n.has_baseline(1)
    n.observe(1, status="running", colour="green", **look)
    (ev,) = n.observe(1, status="running", colour="yellow", **look)
    assert ev["kind"] == "yellow" and "a turned YELLOW at epoch 3" in ev["message"]
    n.observe(1, status="running", colour="green", **look)
    assert n.observe(1, status="running", colour="yellow", **look) == []  # flapping: once per SAME_EVERY
    (red,) = n.observe(1, status="running", colour="red", **look)
    now[0] += 400
    n.observe(1, status="running", colour="green", **look)
    assert [e["kind"] for e in n.observe(1, status="running", colour="yellow", **look)] == ["yellow"]
    # a burst: at most BURST per minute, the rest counted in the next one
    for k in range(10, 10 + BURST + 3):
        n.observe(k, status="running", colour="green", **look)
    got = [n.observe(k, status="crashed", colour="red", **look) for k in range(10, 10 + BURST + 3)]
    assert sum(len(g) for g in got) == BURST - 1  # one slot already used by the yellow above
    now[0] += 61
    (late,) = n.observe(99, status="finished", colour="green", **look) if n.observe(
        99, status="running", colour="green", **look) == [] else ()
    assert late["kind"] == "finished" and late["held_back"] == 4 and "4 more held back" in late["message"]


def test_notify_cmd_errors_are_one_line():
    with pytest.raises(NotifyCmdError, match="not an executable file or a command on PATH"):
        parse_notify_cmd("no-such-notifier-xyz --topic a")
    with pytest.raises(NotifyCmdError, match="No closing quotation"):
        parse_notify_cmd("echo 'x")
    assert parse_notify_cmd("echo 'two words'") == ["echo", "two words"]
    p = subprocess.run([sys.executable, "-m", "app", "attach", "x", "--notify-cmd", "no-such-notifier-xyz"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and last == ("segwatch attach: error: argument --notify-cmd: 'no-such-notifier-xyz' "
                                          "is not an executable file or a command on PATH")


@pytest.mark.slow
def test_headless_notifies_red_and_end_once_and_not_on_reattach(tmp_path):
    (spec,) = launch.plan_runs([ROOT / "configs" / "lmsa_focal.yaml"], TINY, runs_dir=tmp_path / "runs", device="cpu")
    launch.start(spec)
    argv, notified = recorder(tmp_path)
    out = io.StringIO()
    try:
        rc = follow([Run(spec.run_dir)], [load_rules()], interval=0.2, out=out, specs=[spec], timeout=240,
                    notify_argv=argv)
    finally:
        if spec.proc.poll() is None:
            spec.proc.kill()
    text = out.getvalue()
    assert rc == 0, text
    kinds = [e["kind"] for e in read_events(notified)]
    assert kinds == ["red", "finished"], (kinds, text)
    red, fin = read_events(notified)
    assert red["run"] == "lmsa_focal" and red["colour"] == "red" and red["run_dir"] == str(spec.run_dir)
    assert "finished after 3 of 3 epochs" in fin["message"] and "best val F" in fin["message"]
    # the end summary in the log: how it ended, best val F and epoch, wall time, what to run next
    assert "finished after 3 of 3 epochs · best val F" in text and "wall time" in text
    assert "next: segwatch report lmsa_focal  ·  segwatch predict lmsa_focal --images DIR --out DIR" in text
    assert "\x07" not in text and "\x1b" not in text  # not a terminal: no bell, no OSC in a log
    # re-attach to the finished run: its history is replayed, nothing is notified again
    out2 = io.StringIO()
    assert follow([Run(spec.run_dir)], [load_rules()], interval=0.05, out=out2, timeout=30, notify_argv=argv) == 0
    assert "finished after 3 of 3 epochs" in out2.getvalue()
    assert [e["kind"] for e in read_events(notified)] == ["red", "finished"]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_headless_on_a_terminal_rings_the_bell(tmp_path):
    """A crash seen live: on a terminal the headless mode writes the bell and the OSCs."""
    from fake_trainer import FakeTrainer

    ft = FakeTrainer(tmp_path / "a", epochs=2, history=2, hold=False)
    ft.run()
    lines = (ft.run_dir / "events.jsonl").read_text().splitlines()
    (ft.run_dir / "events.jsonl").write_text("\n".join(x for x in lines if '"end"' not in x) + "\n")
    out = Tty()
    f = Follower([Run(ft.run_dir)], [load_rules()], out)
    f.poll()  # the baseline
    (ft.run_dir / "exit.json").write_text('{"returncode": -9, "signal": 9, "t": 9999999999}')
    f.poll()
    text = out.getvalue()
    assert "\a\x1b]9;segwatch: a CRASHED: a CRASHED after 2 of 2 epochs · best val F 0.221 (epoch 2)" in text.replace(
        "\x1bPtmux;\x1b", "")
    assert "; killed by SIGKILL (signal 9)\x07" in text
    assert [e["kind"] for e in f.delivery.delivered] == ["crashed"]


async def test_cockpit_notifies_a_red_once_with_a_toast(tmp_path):
    from fake_trainer import FakeTrainer

    ft = FakeTrainer(tmp_path / "a", epochs=12, history=1, step_delay=0.01, scenario="overfit", hold=False).start()
    argv, notified = recorder(tmp_path)
    app = make_app([ft.run_dir], interval=0.1)
    app.delivery.argv = argv
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(pilot, lambda: any(e["kind"] in ("yellow", "red") for e in app.delivery.delivered), 60,
                           "a yellow or red notification")
            await wait_for(pilot, lambda: 0 in app.views and app.views[0].over, 60, "the end")
            await wait_for(pilot, lambda: any(e["kind"] == "finished" for e in app.delivery.delivered), 10, "end")
            kinds = [e["kind"] for e in app.delivery.delivered]
            assert kinds.count("finished") == 1 and len(kinds) == len(set(kinds))
            assert any("turned" in n.message for n in app._notifications)
            header = app.panes[0].parts[0]
            assert "■ finished after 12 of 12 epochs" in header.draw(header.view).plain
            assert "next: segwatch report a" in header.draw(header.view).plain
        assert app.delivery.close(10)
        assert [e["kind"] for e in read_events(notified)] == kinds
    finally:
        ft.stop_thread()


def test_a_failing_notify_cmd_is_reported_and_the_log_goes_on(tmp_path):
    from fake_trainer import FakeTrainer

    ft = FakeTrainer(tmp_path / "a", epochs=2, history=2, hold=False)
    ft.run()
    lines = (ft.run_dir / "events.jsonl").read_text().splitlines()
    (ft.run_dir / "events.jsonl").write_text("\n".join(x for x in lines if '"end"' not in x) + "\n")
    out = io.StringIO()
    argv = [sys.executable, "-c", "import sys; sys.stdin.read(); sys.stderr.write('push service down\\n'); sys.exit(3)"]
    f = Follower([Run(ft.run_dir)], [load_rules()], out, argv)
    f.poll()
    (ft.run_dir / "exit.json").write_text('{"returncode": 1, "t": 9999999999}')
    f.poll()
    assert f.delivery.close(30)
    assert "notify: --notify-cmd exited 3 for a crashed event: push service down" in out.getvalue()
