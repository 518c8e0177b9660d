"""Issue 12's probes must not rot: bench/sick_runs.py, bench/sick_arm.py and bench/learning_speed.py
run end to end on tiny data, and what they claim to do (send the action to one arm only, resume the
same checkpoint, print val F) is what happens. No figure is asserted, only the mechanics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.image_size=64", "data.synthetic_train=16", "data.synthetic_val=8", "training.batch_size=8"]


def records(run_dir: Path, name: str) -> list[dict]:
    path = run_dir / name
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sick_runs_and_sick_arm_send_the_action_to_one_arm_only(tmp_path):
    bench("bench/sick_runs.py", "--quick", "--sick", "reg_heavy", "--out", str(tmp_path))
    row = json.loads((tmp_path / "sick_runs.json").read_text())["runs"][0]
    assert row["sick"] == "reg_heavy" and row["milestone"] == 2 and len(row["val_f_curve"]) == 2
    assert row["colour"] in ("green", "yellow", "red") and row["action"]["values"]
    assert len(row["after"]["fixed"]) == len(row["after"]["untouched"]) == 2 and "mean_gain" in row
    base = tmp_path / "reg_heavy"
    sent = [c for c in records(base / "fixed", "control.jsonl") if c.get("cmd") == "set"]
    assert len(sent) == 1 and sent[0]["values"] == row["action"]["values"]
    assert not [c for c in records(base / "untouched", "control.jsonl") if c.get("cmd") == "set"]
    acks = [e for e in records(base / "fixed", "events.jsonl") if e["type"] == "ack" and e.get("id") == sent[0]["id"]]
    assert len(acks) == 1 and acks[0]["changes"]  # "ack": applied ("nack" would be a refusal)
    # both arms resumed the sick run's checkpoint: their first two epochs are the sick run's own
    for arm in ("fixed", "untouched"):
        first = [e["val_f"] for e in records(base / arm, "events.jsonl") if e["type"] == "epoch"][:2]
        assert [round(x, 4) for x in first] == row["val_f_curve"]

    out = bench("bench/sick_arm.py", str(base), "lower_lr", "lr=0.0001", "--after", "1").stdout
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed["arm"] == "lower_lr" and printed["values"] == {"lr": 0.0001} and len(printed["val_f"]) == 1
    epochs = [e for e in records(base / "lower_lr", "events.jsonl") if e["type"] == "epoch"]
    untouched = {e["epoch"]: e for e in records(base / "untouched", "events.jsonl") if e["type"] == "epoch"}
    assert epochs[-1]["epoch"] == 3 and epochs[-1]["lr"] != untouched[3]["lr"]  # the same epoch, another LR


@pytest.mark.slow
def test_learning_speed_prints_val_f_every_n_steps():
    out = bench("bench/learning_speed.py", "probe", "4", "2", *TINY, "V:lscale=8", "V:warm=2").stdout
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [x["step"] for x in lines] == [2, 4]
    assert all(x["variant"] == "probe" and 0.0 <= x["val_f"] <= 1.0 for x in lines)


@pytest.mark.slow
def test_quality_resume_continues_a_stopped_run_in_place(tmp_path):
    """A long bench run outlives the session that started it: `--resume DIR --stop-after N` goes on
    from its checkpoint, and its CPU figures never mix two processes' counters."""
    sets = [x for kv in TINY for x in ("--set", kv)]
    bench("bench/quality.py", "--configs", "baseline", "--stop-after", "1", "--threads", "1", *sets, "--out", str(tmp_path))
    run_dir = tmp_path / "baseline"
    out = bench("bench/quality.py", "--resume", str(run_dir), "--stop-after", "2", "--threads", "1").stdout
    assert out.startswith("baseline: 2 epochs")
    evs = records(run_dir, "events.jsonl")
    assert [e["epoch"] for e in evs if e["type"] == "epoch"] == [1, 2]
    assert [e.get("resumed", False) for e in evs if e["type"] == "start"] == [False, True]
    cpu = records(tmp_path, "baseline.cpu.jsonl")
    assert [c["epoch"] for c in cpu] == [1, 2] and cpu[0]["pid"] != cpu[1]["pid"]
    assert len((tmp_path / "baseline.cmd").read_text().splitlines()) == 2
    # already at epoch 2: nothing is trained again
    bench("bench/quality.py", "--resume", str(run_dir), "--stop-after", "2")
    assert sum(e["type"] == "start" for e in records(run_dir, "events.jsonl")) == 2
    sys.path.insert(0, str(ROOT / "bench"))
    from quality import summarize

    row = summarize(run_dir, "baseline", "baseline", "")
    assert row["epochs"] == 2 and row["epoch_cpu_s"] == []  # epochs 1 and 2 ran in two processes: no difference taken
