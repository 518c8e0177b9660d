"""The steering and listing verbs: segwatch set|pause|resume|stop|checkpoint|ls.

The trainer is simulated by a tiny thread that reads control.jsonl and answers in events.jsonl:
a fake for these CLI tests only (the real trainer is tested against the protocol separately).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from pathlib import Path

import pytest
from _runrecord import Record

import app.cli
from app.commands import control
from app.runlib.tail import JsonlTail
from trainer.core.live import validate

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    """The verbs of app.commands.control alone (other modules may extend them in app.cli)."""
    parser = argparse.ArgumentParser(prog="segwatch")
    sub = parser.add_subparsers(dest="command")
    control.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


class FakeTrainer(threading.Thread):
    """Answers every command: ack (applying set values with trainer.core.live.validate) or nack."""

    def __init__(self, rec: Record, refuse: str | None = None):
        super().__init__(daemon=True)
        self.rec, self.refuse = rec, refuse
        self.stop_flag = threading.Event()
        self.tail = JsonlTail(rec.dir / "control.jsonl")

    def run(self):
        while not self.stop_flag.wait(0.01):
            for line_no, cmd in self.tail.read_new_numbered():
                if self.refuse:
                    self.rec.nack(cmd, self.refuse, line_no)
                    continue
                if cmd["cmd"] == "set":
                    clean, problem = validate(cmd.get("values"), self.rec.live, 1)
                    if problem:
                        self.rec.nack(cmd, problem, line_no)
                        continue
                    cmd = {**cmd, "values": clean}
                self.rec.ack(cmd, epoch=1)
                if cmd["cmd"] == "pause":
                    self.rec.event("paused", epoch=1, step=self.rec.step, id=cmd["id"])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.join(5)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGWATCH_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def live_run(runs: Path, name="alpha") -> Record:
    rec = Record(runs / name)
    rec.start()
    rec.epochs_run(1, 2)
    return rec


def test_set_wait_ack(runs, capsys):
    rec = live_run(runs)
    with FakeTrainer(rec):
        code = main(["set", "alpha", "lr=3e-4", "hflip=false", "--wait", "--timeout", "10", "--reason", "calmer"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "set lr 5.00e-04 -> 3.00e-04, hflip on -> off" in out
    assert "applied at epoch 1, step" in out and "lr 5.00e-04->3.00e-04, hflip on->off" in out
    cmd = json.loads((rec.dir / "control.jsonl").read_text())
    assert cmd["values"] == {"lr": 0.0003, "hflip": False} and cmd["reason"] == "calmer"


def test_set_list_value_and_run_path(runs, capsys):
    rec = live_run(runs)
    alpha = "[" + ", ".join(["1e-1"] * 19) + "]"  # YAML 1.1 strings inside a list: coerced
    with FakeTrainer(rec):
        code = main(["set", str(rec.dir), f"alpha={alpha}", "--wait", "--timeout", "10"])
    assert code == 0, capsys.readouterr()
    assert rec.live["alpha"] == [0.1] * 19


def test_set_without_wait_just_sends(runs, capsys):
    rec = live_run(runs)
    assert main(["set", "alpha", "gamma=1.5"]) == 0
    assert "gamma 2 -> 1.5" in capsys.readouterr().out
    assert len((rec.dir / "control.jsonl").read_text().splitlines()) == 1


def test_set_nack_exits_1(runs, capsys):
    rec = live_run(runs)
    with FakeTrainer(rec, refuse="the trainer is shutting down"):
        code = main(["set", "alpha", "gamma=1.5", "--wait", "--timeout", "10"])
    assert code == 1
    assert "refused: the trainer is shutting down" in capsys.readouterr().out


def test_set_timeout_exits_3(runs, capsys):
    live_run(runs)
    assert main(["set", "alpha", "gamma=1.5", "--wait", "--timeout", "0.2"]) == 3
    assert "no answer within 0.2 s" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expect", [
    (["set", "alpha", "gamma=-1"], "gamma = -1 is not allowed"),
    (["set", "alpha", "gama=1"], "did you mean 'gamma'"),
    (["set", "alpha", "lr"], "expected KEY=VALUE"),
    (["set", "alpha", "lr="], "no value"),
    (["set", "alpha", "lr=[1,"], "cannot read the value"),
    (["set", "alpha", "lr=1e-3", "lr=2e-3"], "given twice"),
    (["set", "alpah", "lr=1e-3"], "did you mean 'alpha'"),
    (["pause", "nope"], "no run 'nope'"),
])
def test_bad_input_exits_2_with_one_line(runs, capsys, argv, expect):
    live_run(runs)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1
    assert not (runs / "alpha" / "control.jsonl").exists()


def test_pause_wait_and_ended_run(runs, capsys):
    rec = live_run(runs)
    with FakeTrainer(rec):
        assert main(["pause", "alpha", "--wait", "--timeout", "10"]) == 0
    # the step the header shows (the last one done; the ack's step is the first to run paused)
    assert re.search(r"^paused after step \d+ \(epoch 1\): pause$", capsys.readouterr().out, re.M)
    rec.end("stopped", epoch=2)
    assert main(["checkpoint", "alpha"]) == 2
    assert "has ended (stopped)" in capsys.readouterr().err


def test_ls(runs, capsys):
    live_run(runs, "running-one")
    done = Record(runs / "done-one")
    done.start()
    done.epochs_run(1, 3, f_of=lambda e: [0, 0.7, 0.8, 0.75][e])
    done.end("completed", epoch=3, best_val_f=0.8, best_epoch=2)
    crashed = Record(runs / "crashed-one")
    crashed.start()
    crashed.epochs_run(1, 1)
    c = crashed.command("set", {"lr": 0.0003})
    crashed.ack(c)
    (crashed.dir / "exit.json").write_text(json.dumps({"returncode": -9, "signal": 9, "t": crashed.t + 1}))
    (crashed.dir / "stderr.log").write_text("Traceback (most recent call last):\nMemoryError: boom\n")
    crashed.write_raw(b"\x00\x01torn")
    crashed.write_raw(b"\n")
    (runs / "not-a-run").mkdir()
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for text in ["running-one", "running", "done-one", "finished", "0.8000 (e2)", "0.7500", "3/10",
                 "crashed-one", "crashed: killed by SIGKILL (signal 9)", "lr 5.00e-04->3.00e-04 applied",
                 "bad lines", "crashed-one stderr: MemoryError: boom"]:
        assert text in out, (text, out)
    assert "not-a-run" not in out


def test_registered_in_segwatch(runs, capsys):
    live_run(runs, "via-cli")
    assert app.cli.main(["ls", str(runs)]) == 0
    assert "via-cli" in capsys.readouterr().out
    assert {"set", "pause", "resume", "stop", "checkpoint", "ls"} <= set(app.cli.build_parser()._subparsers._group_actions[0].choices)


def test_ls_empty_and_missing(tmp_path, capsys):
    assert main(["ls", str(tmp_path / "missing")]) == 0
    assert "no runs folder" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["ls", str(tmp_path / "empty")]) == 0
    assert "no runs in" in capsys.readouterr().out




def test_the_resume_verb_has_one_owner():
    """`resume` is registered once, by app/commands/run.py (a paused run gets the command, an ended one restarts);
    the control verbs' module registers pause, stop and checkpoint only."""
    import argparse

    from app.cli import build_parser
    from app.commands import control, run

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices["resume"].get_default("func") is run.cmd_resume
    alone = argparse.ArgumentParser().add_subparsers()
    control.register(alone)
    assert {"pause", "stop", "checkpoint"} <= set(alone.choices) and "resume" not in alone.choices


def test_segwatch_resume_on_a_paused_run_sends_resume_and_waits(runs, capsys):
    import app.cli

    rec = live_run(runs)
    with FakeTrainer(rec):
        assert main(["pause", "alpha", "--wait", "--timeout", "10"]) == 0
        capsys.readouterr()
        assert app.cli.main(["resume", "alpha", "--wait", "--timeout", "10", "--reason", "back"]) == 0
    out = capsys.readouterr().out
    assert "alpha: resume" in out and re.search(r"^resumed at step \d+ \(epoch 1\): resume$", out, re.M)
    sent = [json.loads(x) for x in (rec.dir / "control.jsonl").read_text().splitlines()]
    assert [(c["cmd"], c.get("reason")) for c in sent] == [("pause", None), ("resume", "back")]
