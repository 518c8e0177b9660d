"""The real trainer as a process: run record, exit codes, resume, live control, DDP on gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from trainer.record import read_events
from trainer.schedule import lr_at

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=64",
    "training.batch_size=8", "training.warmup_epochs=0", "training.log_every=1",
]


def trainer_cmd(config: str, run_dir: Path, *sets: str) -> list[str]:
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / config), "--run-dir", str(run_dir),
           "--device", "cpu"]
    for s in (*TINY, *sets):
        cmd += ["--set", s]
    return cmd


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_trainer(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def wait_for(pred, timeout: float = 60.0, what: str = "condition"):
    """Poll a file-backed condition until it holds (the trainer is another process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def send(run_dir: Path, cmd: str, **fields) -> str:
    cid = uuid.uuid4().hex
    line = json.dumps({"v": 1, "id": cid, "t": time.time(), "cmd": cmd, **fields}) + "\n"
    fd = os.open(run_dir / "control.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())
    os.close(fd)
    return cid


def events_of(run_dir: Path, type_: str) -> list[dict]:
    return [e for e in read_events(run_dir / "events.jsonl") if e["type"] == type_]


def start_trainer(cmd: list[str], run: Path, timeout: float = 60.0) -> subprocess.Popen:
    """Start a real trainer in the background and return once its first step event is written.

    Its stderr goes to a file beside the run (a pipe nobody reads could fill and block it);
    ``stderr_of(proc)`` reads it for failure messages."""
    log = run.parent / f"{run.name}.stderr"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=err)
    proc.stderr_log = log  # type: ignore[attr-defined]
    try:
        wait_for(lambda: (run / "events.jsonl").exists() and events_of(run, "step"), timeout, "the first step")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise AssertionError(f"no step within {timeout}s; trainer stderr:\n{stderr_of(proc)}") from None
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    return proc.stderr_log.read_text()[-3000:]  # type: ignore[attr-defined]

def test_tiny_run_writes_the_whole_record(tmp_path):
    run = tmp_path / "r"
    p = run_trainer(trainer_cmd("lmsa_aggressive.yaml", run, "training.epochs=2"))
    assert p.returncode == 0, p.stderr
    assert "SYNTHETIC" in p.stdout and "epoch 2/2" in p.stdout
    for name in ("config.yaml", "meta.json", "events.jsonl", "control.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).exists(), name
    assert not (run / "trainer.pid").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["synthetic"] is True and 0 < meta["params"] < 1_821_085
    evs = read_events(run / "events.jsonl")
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    types = [e["type"] for e in evs]
    assert types[0] == "start" and types[-1] == "end" and types.count("epoch") == 2
    assert {"step", "checkpoint", "warning"} <= set(types)
    ep = events_of(run, "epoch")[-1]
    for key in ("train_loss", "train_f", "val_loss", "val_f", "pooled_f", "per_class_f", "lr", "gamma", "alpha",
                "dropout", "epoch_time", "eta_s", "best_val_f", "best_epoch"):
        assert key in ep, key
    assert len(ep["per_class_f"]) == 19 and 0.0 <= ep["val_f"] <= 1.0
    assert evs[-1]["reason"] == "completed" and evs[-1]["best_epoch"] in (1, 2)
    # the LR reported by every step event is the schedule's, from the config's base
    start = evs[0]
    spe = start["steps_per_epoch"]
    for s in events_of(run, "step"):
        assert s["lr"] == pytest.approx(lr_at(s["step"] - 1, 3e-4, 0, 2 * spe))


def test_bad_config_exits_2_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  focal_gama: 2.0\n")
    run = tmp_path / "r"
    p = run_trainer([sys.executable, "-m", "trainer", "--config", str(bad), "--run-dir", str(run)], timeout=60)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "focal_gama" in p.stderr and "did you mean 'focal_gamma'" in p.stderr
    assert not run.exists()


def test_missing_data_root_is_an_error_not_synthetic(tmp_path):
    run = tmp_path / "r"
    p = run_trainer(trainer_cmd("baseline.yaml", run, f"data.root={tmp_path / 'nowhere'}"), timeout=60)
    assert p.returncode == 2 and "nowhere" in p.stderr
    assert not run.exists()


def test_live_lr_set_is_acked_and_the_schedule_continues_from_the_new_base(tmp_path):
    run = tmp_path / "r"
    proc = start_trainer(trainer_cmd("lmsa_focal.yaml", run, "training.epochs=3", "debug.step_delay=0.05"), run)
    try:
        cid = send(run, "set", values={"lr": 1e-4, "gamma": 1.5}, reason="test")
        ack = wait_for(lambda: [a for a in events_of(run, "ack") if a["id"] == cid], what="ack")[0]
        bad = send(run, "set", values={"lr": -1})
        nack = wait_for(lambda: [a for a in events_of(run, "nack") if a["id"] == bad], what="nack")[0]
        assert proc.wait(timeout=180) == 0, stderr_of(proc)
    finally:
        proc.kill()
    assert ack["changes"]["lr"] == [5e-4, 1e-4] and ack["changes"]["gamma"] == [2.0, 1.5]
    assert "lr = -1" in nack["reason"]
    spe = events_of(run, "start")[0]["steps_per_epoch"]
    later = [s for s in events_of(run, "step") if s["step"] >= ack["step"]]
    assert later, "no step after the ack"
    for s in later:  # warmup and cosine alike, rescaled from the new base
        assert s["lr"] == pytest.approx(lr_at(s["step"] - 1, 1e-4, 0, 3 * spe))
        assert s["gamma"] == 1.5
    assert all(e["gamma"] == 1.5 for e in events_of(run, "epoch") if e["step"] >= ack["step"])
    assert len([a for a in events_of(run, "ack") if a["id"] == cid]) == 1


def test_killed_run_resumes_with_seq_epochs_and_adjustments_intact(tmp_path):
    run = tmp_path / "r"
    proc = start_trainer(trainer_cmd("lmsa_focal.yaml", run, "training.epochs=3", "debug.step_delay=0.05"), run)
    try:
        cid = send(run, "set", values={"gamma": 1.0})
        wait_for(lambda: [e for e in events_of(run, "checkpoint") if e["epoch"] == 1], what="epoch 1 checkpoint")
        wait_for(lambda: [s for s in events_of(run, "step") if s["epoch"] == 2], what="a step of epoch 2")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not events_of(run, "end")
    p = run_trainer([sys.executable, "-m", "trainer", "--resume", str(run), "--device", "cpu"])
    assert p.returncode == 0, p.stderr
    evs = read_events(run / "events.jsonl")
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    starts = events_of(run, "start")
    assert [s["resume_epoch"] for s in starts] == [0, 1] and starts[1]["resumed"] is True
    assert starts[1]["live"]["gamma"] == 1.0
    after = evs[evs.index(starts[1]):]
    assert [e["epoch"] for e in after if e["type"] == "epoch"] == [2, 3]
    assert len([a for a in events_of(run, "ack") if a["id"] == cid]) == 1
    assert evs[-1]["type"] == "end" and evs[-1]["reason"] == "completed"


def test_stop_command_checkpoints_and_ends_stopped_then_resumes_mid_epoch(tmp_path):
    run = tmp_path / "r"
    proc = start_trainer(trainer_cmd("baseline.yaml", run, "training.epochs=2", "debug.step_delay=0.05"), run)
    try:
        send(run, "stop")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    end = events_of(run, "end")[-1]
    assert end["reason"] == "stopped" and (run / "checkpoints" / "last.pt").exists()
    stopped_step = events_of(run, "checkpoint")[-1]["step"]
    p = run_trainer([sys.executable, "-m", "trainer", "--resume", str(run), "--device", "cpu"])
    assert p.returncode == 0, p.stderr
    steps = [s["step"] for s in events_of(run, "step")]
    assert steps == sorted(set(steps)) and steps[0] == 1  # mid-epoch resume repeats no step
    assert events_of(run, "start")[-1]["resumed"] and stopped_step < steps[-1]


def test_the_first_step_and_each_epochs_last_step_are_logged_whatever_log_every(tmp_path):
    """With log_every longer than an epoch, readers still see a step at once (the cadence the
    stall bound learns from) and one per epoch; a resumed process logs its own first step."""
    run = tmp_path / "r"
    p = run_trainer(trainer_cmd("baseline.yaml", run, "training.epochs=2", "training.log_every=1000"))
    assert p.returncode == 0, p.stderr
    spe = events_of(run, "start")[0]["steps_per_epoch"]
    assert spe > 2
    assert [s["step"] for s in events_of(run, "step")] == [1, spe, 2 * spe]
    p = run_trainer([sys.executable, "-m", "trainer", "--resume", str(run), "--device", "cpu",
                     "--set", "training.epochs=3"])
    assert p.returncode == 0, p.stderr
    assert [s["step"] for s in events_of(run, "step")] == [1, spe, 2 * spe, 2 * spe + 1, 3 * spe]


def test_a_stop_before_the_first_validation_records_no_best(tmp_path):
    """The end event of a run stopped before any validation has no best val F (null, not -1.0,
    which `segwatch ls` showed as the run's best)."""
    run = tmp_path / "r"
    run.mkdir()
    send(run, "stop")  # answered at the first step
    p = run_trainer(trainer_cmd("baseline.yaml", run, "training.epochs=2"))
    assert p.returncode == 0, p.stderr
    assert not events_of(run, "epoch")
    end = events_of(run, "end")[-1]
    assert end["reason"] == "stopped" and end["best_val_f"] is None and end["best_epoch"] is None
    from app.runlib import Run

    r = Run(run)
    r.refresh()
    assert r.state.best_val_f is None and r.state.best_epoch is None


def test_injected_nan_is_skipped_and_never_checkpointed(tmp_path):
    import torch

    run = tmp_path / "r"
    p = run_trainer(trainer_cmd("baseline.yaml", run, "training.epochs=1", "debug.nan_at_step=2"))
    assert p.returncode == 0, p.stderr
    warns = [w for w in events_of(run, "warning") if w["code"] == "nonfinite_loss"]
    assert len(warns) == 1 and warns[0]["step"] == 2
    assert events_of(run, "epoch")[0]["skipped_steps"] == 1
    for kind in ("last", "best"):
        sd = torch.load(run / "checkpoints" / f"{kind}.pt", weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in sd.values() if t.is_floating_point())


@pytest.mark.slow
def test_ddp_two_gloo_ranks_apply_a_set_at_the_same_step(tmp_path):
    # no --run-dir: the launcher names the run once, before torchrun starts the ranks
    run = tmp_path / "runs" / "baseline"
    cmd = trainer_cmd("baseline.yaml", run, "training.epochs=2", "debug.step_delay=0.05", "debug.rank_log=true",
                      "data.synthetic_train=64")
    cmd[cmd.index("--run-dir"):cmd.index("--run-dir") + 2] = ["--runs-dir", str(tmp_path / "runs")]
    proc = start_trainer(cmd + ["--nproc-per-node", "2"], run, timeout=120)
    try:
        cid = send(run, "set", values={"lr": 2e-4})
        ack = wait_for(lambda: [a for a in events_of(run, "ack") if a["id"] == cid], what="ack")[0]
        assert proc.wait(timeout=180) == 0, stderr_of(proc)
    finally:
        proc.kill()
    logs = [[json.loads(x) for x in (run / "ranks" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    seeds = [[e["seed"] for e in log if "seed" in e] for log in logs]
    assert seeds[0] != seeds[1]  # dropout masks differ between ranks (the data order is shared)
    logs = [[e for e in log if "step" in e] for log in logs]
    assert logs[0] == logs[1]  # same step, same LR, on both ranks
    spe = events_of(run, "start")[0]["steps_per_epoch"]
    changed = [e for e in logs[0] if e["step"] >= ack["step"]]
    assert changed and all(e["lr"] == pytest.approx(lr_at(e["step"] - 1, 2e-4, 0, 2 * spe)) for e in changed)
    assert events_of(run, "start")[0]["world_size"] == 2
