"""`--headless`: one readable line per epoch per run, for nohup and CI logs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from _runrecord import Record
from fake_trainer import FakeTrainer

from app.headless import follow
from app.health import load_rules
from app.runlib import Run

ROOT = Path(__file__).resolve().parents[2]


def test_one_line_per_epoch_per_run(tmp_path):
    a = FakeTrainer(tmp_path / "a", epochs=8, history=8, hold=False)
    b = FakeTrainer(tmp_path / "b", epochs=8, history=8, hold=False, scenario="overfit")
    a.run()
    b.run()
    out = io.StringIO()
    rc = follow([Run(a.run_dir), Run(b.run_dir)], [load_rules(), load_rules()], interval=0.01, out=out, timeout=10)
    lines = out.getvalue().splitlines()
    epoch_lines = [ln for ln in lines if " epoch " in ln and "/8 " in ln]
    assert rc == 0
    assert len(epoch_lines) == 16
    assert sum(ln.split()[1] == "a" for ln in epoch_lines) == 8 and sum(ln.split()[1] == "b" for ln in epoch_lines) == 8
    assert all(("GREEN" in ln) or ("YELLOW" in ln) or ("RED" in ln) for ln in epoch_lines)
    assert any("YELLOW" in ln and "|" in ln and "Val loss" in ln for ln in epoch_lines if ln.split()[1] == "b")
    assert any(ln.strip().endswith("finished") for ln in lines)
    assert "\x1b[" not in out.getvalue()  # plain text: no colour codes in logs


def test_crashed_run_exits_1_with_the_reason(tmp_path):
    a = FakeTrainer(tmp_path / "a", epochs=2, history=2, hold=False)
    a.run()
    # the record of a process that died: no end event, exit.json from the supervisor
    lines = (a.run_dir / "events.jsonl").read_text().splitlines()
    (a.run_dir / "events.jsonl").write_text("\n".join(x for x in lines if '"end"' not in x) + "\n")
    (a.run_dir / "exit.json").write_text('{"returncode": -9, "signal": 9, "t": 9999999999}')
    (a.run_dir / "stderr.log").write_text("something broke\n")
    out = io.StringIO()
    rc = follow([Run(a.run_dir)], [load_rules()], interval=0.01, out=out, timeout=5)
    assert rc == 1
    assert "CRASHED: killed by SIGKILL (signal 9)" in out.getvalue()
    assert "stderr: something broke" in out.getvalue()


def test_attach_is_headless_when_stdout_is_not_a_terminal(tmp_path):
    a = FakeTrainer(tmp_path / "runs" / "a", epochs=3, history=3, hold=False)
    a.run()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "attach", "--runs-dir", str(tmp_path / "runs"), "a",
                        "--interval", "0.05"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("epoch ") >= 3 and "finished" in p.stdout


def test_attach_without_running_runs_says_so(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app", "attach", "--runs-dir", str(tmp_path)], capture_output=True,
                       text=True, timeout=60, env=env, cwd=ROOT)
    assert p.returncode == 1 and "no running run" in p.stderr


def test_a_preset_just_applied_is_held_back_in_the_log(tmp_path):
    """A flat train loss and val F 0.25 at the epoch-10 milestone suggest early_fix; applied in epoch
    11 and nothing better after it: the log says it is held back for 3 epochs, then suggests it again."""
    rec = Record(tmp_path / "r")
    rec.start(epochs=20)
    rec.epochs_run(1, 10, f_of=lambda e: 0.025 * e)
    cmd = rec.command("set", {"lr": 3e-4}, reason="suggested: early_fix")
    rec.ack(cmd, epoch=11)
    rec.epochs_run(11, 15, f_of=lambda e: 0.25)
    rec.end("stopped", epoch=15)
    out = io.StringIO()
    follow([Run(rec.dir)], [load_rules()], interval=0.01, out=out, timeout=10)
    tails = {int(ln.split(" epoch ")[1].split("/")[0]): ln.split(" -> ")[-1] for ln in out.getvalue().splitlines()
             if " epoch " in ln and "/20 " in ln}
    assert tails[10] == "suggest early_fix"
    held = "held back: early_fix applied in epoch 11; suggested again after epoch 14 if still needed"
    assert tails[11] == tails[12] == tails[13] == held
    assert tails[14] == tails[15] == "suggest early_fix"


def test_ls_json_says_why_a_suggestion_is_held_back(tmp_path):
    """`segwatch ls --json`: the same record as above, read after epoch 12 and after epoch 15."""
    from app.commands.runs import _refreshed, ls_row

    rec = Record(tmp_path / "r")
    rec.start(epochs=20)
    rec.epochs_run(1, 10, f_of=lambda e: 0.025 * e)
    rec.ack(rec.command("set", {"lr": 3e-4}, reason="suggested: early_fix"), epoch=11)
    rec.epochs_run(11, 12, f_of=lambda e: 0.25)
    row = ls_row(0, _refreshed(rec.dir), time.time())
    assert row["suggestion_held"] == "early_fix applied in epoch 11; suggested again after epoch 14 if still needed"
    rec.epochs_run(13, 15, f_of=lambda e: 0.25)
    row = ls_row(0, _refreshed(rec.dir), time.time())
    assert row["suggestion_held"] == "" and row["suggestion"]
