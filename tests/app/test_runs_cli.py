"""`segwatch ls` (newest first, health column, age, --json), `segwatch rm` (never a live run; asks
unless --yes), and a taken run name said where the user looks."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runrecord import Record
from fake_trainer import FakeTrainer

ROOT = Path(__file__).resolve().parents[2]


def segwatch(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, input=stdin if stdin is not None else "")


@pytest.fixture
def runs(tmp_path):
    """Four runs: a finished healthy one, a finished overfitting one, a stalled one (its trainer's
    process alive, its last event an hour old), and a live one (newest)."""
    root = tmp_path / "runs"
    FakeTrainer(root / "healthy", epochs=6, history=6, hold=False).run()
    FakeTrainer(root / "overfit", epochs=14, history=14, hold=False, scenario="overfit").run()
    stand_in = subprocess.Popen(["fake-trainer-stand-in", "3600"], executable=shutil.which("sleep"),
                                stdin=subprocess.DEVNULL)
    rec = Record(root / "stuck")
    rec.t = time.time() - 3600
    rec.start(epochs=10, pid=stand_in.pid)
    rec.epochs_run(1, 3)
    (rec.dir / "trainer.pid").write_text(str(stand_in.pid))
    live = FakeTrainer(root / "live", epochs=50, history=2, step_delay=0.2).start()
    try:
        yield root
    finally:
        live.stop_thread()
        stand_in.kill()
        stand_in.wait()


def test_ls_newest_first_with_health_age_and_json(runs):
    p = segwatch("ls", "--json", str(runs))
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["name"] for r in rows] == ["live", "overfit", "healthy", "stuck"]  # by last event, newest first
    by = {r["name"]: r for r in rows}
    assert by["healthy"]["health"] == "GREEN" and by["healthy"]["status"] == "finished"
    assert by["overfit"]["health"] in ("YELLOW", "RED") and by["overfit"]["suggestion"]
    assert by["stuck"]["health"] == "STALLED" and by["stuck"]["age_s"] > 3000
    assert by["live"]["status"] in ("running", "starting") and by["live"]["age_s"] < 600
    assert by["healthy"]["best_val_f"] == pytest.approx(by["healthy"]["val_f"]) and by["healthy"]["best_epoch"] == 6
    assert [r["last_event_t"] for r in rows] == sorted((r["last_event_t"] for r in rows), reverse=True)
    p = segwatch("ls", str(runs))
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "health", "status"] and "age" in lines[0]
    assert [ln.split()[0] for ln in lines[1:5]] == ["live", "overfit", "healthy", "stuck"]
    assert lines[3].split()[1] == "GREEN" and lines[4].split()[1] == "STALLED"
    assert re.search(r"(59m\d\ds|1h00m)$", lines[4].rstrip()), lines[4]


def test_rm_refuses_a_live_run_and_asks_first(runs):
    p = segwatch("rm", "--runs-dir", str(runs), "healthy", "live", "--yes")
    assert p.returncode == 2 and "live is running" in p.stderr and "nothing removed" in p.stderr
    p = segwatch("rm", "--runs-dir", str(runs), "stuck", "--yes")  # stalled is alive: refused too
    assert p.returncode == 2 and "stuck is stalled" in p.stderr
    assert (runs / "healthy").is_dir() and (runs / "live").is_dir() and (runs / "stuck").is_dir()
    p = segwatch("rm", "--runs-dir", str(runs), "healthy")  # no terminal to ask on, no --yes
    assert p.returncode == 2 and "--yes" in p.stderr and (runs / "healthy").is_dir()
    p = segwatch("rm", "--runs-dir", str(runs), "nope", "--yes")
    assert p.returncode == 2 and "nope" in p.stderr
    p = segwatch("rm", "--runs-dir", str(runs), "healthy", str(runs / "overfit"), "--yes")
    assert p.returncode == 0, p.stderr
    assert not (runs / "healthy").exists() and not (runs / "overfit").exists() and (runs / "live").is_dir()
    assert "removed" in p.stderr


@pytest.mark.slow
def test_a_taken_run_name_and_a_shrunk_warmup_are_said(tmp_path):
    root = tmp_path / "runs"
    FakeTrainer(root / "lmsa_aggressive", epochs=2, history=2, hold=False).run()
    tiny = ["data.synthetic_train=8", "data.synthetic_val=4", "data.image_size=32", "training.epochs=1",
            "training.warmup_epochs=0", "training.batch_size=4"]
    p = segwatch("run", "configs/lmsa_aggressive.yaml", *[x for s in tiny for x in ("--set", s)], "--runs-dir",
                 str(root), "--device", "cpu", "--no-gpu", "--headless", "--interval", "0.2", timeout=300)
    assert p.returncode == 0, p.stderr
    note = f"{root / 'lmsa_aggressive'} exists; this run is lmsa_aggressive-2 (choose another name with --name NAME)"
    assert note in p.stderr and note in p.stdout  # before the TUI / the log, and in the log itself
    assert "shrank the warmup" not in p.stderr  # training.warmup_epochs was set explicitly
    assert (root / "lmsa_aggressive-2" / "events.jsonl").is_file()
    # --name; and without training.warmup_epochs, --set training.epochs=1 shrinks the warmup: said
    tiny = [x for x in tiny if not x.startswith("training.warmup_epochs")]
    p = segwatch("run", "configs/lmsa_aggressive.yaml", *[x for s in tiny for x in ("--set", s)], "--runs-dir",
                 str(root), "--device", "cpu", "--no-gpu", "--headless", "--name", "mine", timeout=300)
    assert p.returncode == 0 and (root / "mine").is_dir() and "exists" not in p.stderr
    shrank = "mine: --set training.epochs=1 shrank the warmup: training.warmup_epochs 10 -> 0"
    assert shrank in p.stderr and shrank in p.stdout


def test_headless_notes_are_said_once_when_stdout_and_stderr_are_one_file(tmp_path):
    """`segwatch run --headless > log 2>&1`: the notes printed on stderr are not printed again."""
    from app.commands.run import _same_file

    with open(tmp_path / "log", "w") as f, open(tmp_path / "other", "w") as g:
        dup = os.fdopen(os.dup(f.fileno()), "w")
        try:
            assert _same_file(f, dup)  # 2>&1
            assert not _same_file(f, g)  # > log, stderr elsewhere: the log gets them too
        finally:
            dup.close()
