"""DDP as the student runs it: the real trainer re-exec'd under torchrun with two gloo ranks.

An uneven validation split, a stop and a resume that must keep the run's shape (world size,
steps per epoch, the LR curve), and class frequencies computed once."""

from __future__ import annotations

import json

import pytest
from test_trainer_process import events_of, run_trainer, send, start_trainer, stderr_of, trainer_cmd, wait_for

from trainer.record import read_events
from trainer.schedule import lr_at

pytestmark = pytest.mark.slow
SMALL = ["data.image_size=32", "model.width=8", "training.dist_timeout=30"]


@pytest.mark.parametrize("n_val", [65, 1], ids=["65-val-images", "fewer-val-images-than-ranks"])
def test_an_uneven_validation_split_does_not_hang_the_ranks(tmp_path, n_val):
    # 65 images, batch 8, 2 ranks: rank 0 validates 5 batches, rank 1 four (or one image: rank 1 none)
    run = tmp_path / "r"
    p = run_trainer(trainer_cmd("baseline.yaml", run, *SMALL, "training.epochs=1", f"data.synthetic_val={n_val}")
                    + ["--nproc-per-node", "2"], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    ep = events_of(run, "epoch")
    assert len(ep) == 1 and isinstance(ep[0]["val_f"], float) and isinstance(ep[0]["val_loss"], float)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def rank_logs(run) -> list[list[dict]]:
    return [[json.loads(x) for x in (run / "ranks" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]


def test_a_stopped_ddp_run_resumes_with_its_shape_and_lr_curve(tmp_path):
    run = tmp_path / "r"
    # 64 images, 2 ranks, batch 8: 4 steps per epoch; a warmup epoch, then cosine decay
    cmd = trainer_cmd("baseline.yaml", run, *SMALL, "training.epochs=3", "training.warmup_epochs=1",
                      "data.synthetic_train=64", "debug.rank_log=true", "debug.step_delay=0.1",
                      "loss.use_class_weights=true") + ["--nproc-per-node", "2"]
    proc = start_trainer(cmd, run, timeout=180)
    try:
        wait_for(lambda: [s for s in events_of(run, "step") if s["step"] >= 6], 120, "step 6")
        send(run, "stop")
        assert proc.wait(timeout=120) == 0, stderr_of(proc)
    finally:
        proc.kill()
    assert events_of(run, "end")[-1]["reason"] == "stopped"
    stopped_at = events_of(run, "checkpoint")[-1]["step"]
    assert 6 <= stopped_at < 12
    n_events = len(read_events(run / "events.jsonl"))

    # onto fewer processes: refused before anything is written, naming the way out
    p = run_trainer(["python", "-m", "trainer", "--resume", str(run), "--device", "cpu", "--nproc-per-node", "1"])
    assert p.returncode == 2 and "--allow-reshape" in p.stderr and "trained on 2" in p.stderr, p.stderr
    assert len(read_events(run / "events.jsonl")) == n_events

    # a plain resume keeps the run's shape: the process count comes from the checkpoint
    p = run_trainer(["python", "-m", "trainer", "--resume", str(run), "--device", "cpu"], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    starts = events_of(run, "start")
    assert [s["world_size"] for s in starts] == [2, 2]
    assert [s["steps_per_epoch"] for s in starts] == [4, 4]
    assert events_of(run, "end")[-1]["reason"] == "completed"
    logs = rank_logs(run)
    steps = [[e for e in log if "step" in e] for log in logs]
    assert steps[0] == steps[1]  # both ranks took the same steps with the same LR
    assert [e["step"] for e in steps[0]] == list(range(1, 13))  # each step once, none repeated, none lost
    base = starts[0]["live"]["lr"]
    for e in steps[0]:  # the LR at every step, before and after the resume, is the schedule's
        assert e["lr"] == pytest.approx(lr_at(e["step"] - 1, base, 4, 12, 0.01), rel=1e-9), e
    # each rank's own RNG states are in the checkpoint (dropout differs between ranks)
    from trainer import checkpoint as ckpt

    rngs = ckpt.load(run / "checkpoints" / "last.pt")["rng_ranks"]
    assert len(rngs) == 2 and not torch_equal(rngs[0]["torch"], rngs[1]["torch"])
    # class frequencies: computed by rank 0, received by rank 1 (at each start)
    freq = [[e["class_frequencies"] for e in log if "class_frequencies" in e] for log in logs]
    assert freq == [["computed", "computed"], ["from rank 0", "from rank 0"]]


def test_allow_reshape_continues_a_two_rank_run_on_one_process_where_its_lr_curve_was(tmp_path):
    run = tmp_path / "r"
    cmd = trainer_cmd("baseline.yaml", run, *SMALL, "training.epochs=3", "training.warmup_epochs=1",
                      "data.synthetic_train=64", "debug.rank_log=true", "debug.step_delay=0.1") + ["--nproc-per-node", "2"]
    proc = start_trainer(cmd, run, timeout=180)
    try:
        wait_for(lambda: [s for s in events_of(run, "step") if s["step"] >= 5], 120, "step 5")
        send(run, "stop")
        assert proc.wait(timeout=120) == 0, stderr_of(proc)
    finally:
        proc.kill()
    k = events_of(run, "checkpoint")[-1]["step"]  # 4 steps per epoch on 2 ranks
    p = run_trainer(["python", "-m", "trainer", "--resume", str(run), "--device", "cpu", "--nproc-per-node", "1",
                     "--allow-reshape"], timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    starts = events_of(run, "start")
    assert [(s["world_size"], s["steps_per_epoch"]) for s in starts] == [(2, 4), (1, 8)]
    warn = [w for w in events_of(run, "warning") if w["code"] == "reshaped"]
    assert len(warn) == 1 and "4 -> 8 steps per epoch" in warn[0]["message"]
    base = starts[0]["live"]["lr"]
    resumed = [e for e in rank_logs_one(run) if "step" in e and e["step"] > 2 * k]
    # the first step after the resume is step 2k + 1 of 24: the same point of the run as step k + 1 of 12
    assert resumed[0]["step"] == 2 * k + 1
    assert resumed[0]["lr"] == pytest.approx(lr_at(k, base, 4, 12, 0.01), rel=1e-9)
    for e in resumed:
        assert e["lr"] == pytest.approx(lr_at(e["step"] - 1, base, 8, 24, 0.01), rel=1e-9)
    assert resumed[-1]["step"] == 24 and events_of(run, "end")[-1]["reason"] == "completed"


def rank_logs_one(run) -> list[dict]:
    return [json.loads(x) for x in (run / "ranks" / "rank0.jsonl").read_text().splitlines()]
