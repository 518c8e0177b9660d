"""Non-finite training: debug.nan_at_step makes the loss NaN at a given step. The step is
skipped (the weights are not touched), the run turns red with a warning in the monitor, and
neither checkpoint ever holds non-finite weights (a run whose weights did go non-finite gets
its checkpoint write refused, keeping the last good one)."""

from __future__ import annotations

from pathlib import Path

import torch
from faults import CONFIGS, TINY, events, run_trainer, trainer_argv

from app.health import load_rules
from app.runlib import Run
from app.snapshot import build_view
from trainer import checkpoint as ckpt


def finite(path: Path) -> bool:
    sd = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return all(torch.isfinite(t).all() for t in sd.values() if t.is_floating_point())


def test_nan_loss_step_is_skipped_run_turns_red_checkpoints_stay_finite(tmp_path):
    run = tmp_path / "r"
    p = run_trainer(trainer_argv(run, "training.epochs=2", "debug.nan_at_step=2", config="baseline.yaml"))
    assert p.returncode == 0, p.stderr
    warns = [w for w in events(run, "warning") if w["code"] == "nonfinite_loss"]
    assert len(warns) == 1 and warns[0]["step"] == 2 and "skipped" in warns[0]["message"]
    assert [e["skipped_steps"] for e in events(run, "epoch")] == [1, 0]
    step2 = [s for s in events(run, "step") if s["step"] == 2][0]
    assert step2["loss"] is None and "loss" in step2["nonfinite"]  # the record says NaN, not "not measured"
    for kind in ("last", "best"):
        assert finite(run / "checkpoints" / f"{kind}.pt"), kind
    r = Run(run)
    r.refresh()
    view = build_view(0, r, load_rules())
    assert view.colour == "red", (view.colour, view.summary)
    assert any(s.id == "no_nonfinite" and s.state == "failed" for s in view.signals)
    assert view.warning_counts.get("nonfinite_loss") == 1


def test_checkpoint_write_is_refused_when_the_weights_are_not_finite(tmp_path):
    """In-process, the trainer's own save(): poison one weight, the write is refused with a
    warning event, and the previous last.pt stays as it was."""
    from trainer.core.config import load_config
    from trainer.dist import DistContext
    from trainer.build import build
    from trainer.rundir import open_run
    from trainer.train import Trainer

    cfg = load_config(CONFIGS / "baseline.yaml", [*TINY, "training.epochs=2"])
    comp = open_run(build(cfg, torch.device("cpu"), DistContext()), tmp_path / "r", None, [])
    trainer = Trainer(comp)
    trainer.save("last")
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    good = last.read_bytes()
    with torch.no_grad():
        next(comp.raw_model.parameters()).view(-1)[0] = float("nan")
    trainer.save("last")
    trainer.save("best")
    comp.events.close()
    assert last.read_bytes() == good and ckpt.load(last)["epoch"] == 0
    assert not (tmp_path / "r" / "checkpoints" / "best.pt").exists()
    refused = [w for w in events(tmp_path / "r", "warning") if w["code"] == "checkpoint_refused"]
    assert len(refused) == 2 and "NaN" in refused[0]["message"]


def test_a_skipped_step_leaves_batchnorm_statistics_untouched(tmp_path):
    """One image with a block of +Inf pixels: the loss is non-finite, the step is skipped, and the
    forward pass that already folded Inf/NaN into BatchNorm's running statistics is undone, so
    later validations are scored and checkpoints written."""
    run = tmp_path / "r"
    p = run_trainer(trainer_argv(run, "training.epochs=2", "debug.inf_pixels_at_step=2", config="baseline.yaml"))
    assert p.returncode == 0, p.stderr
    warns = [w for w in events(run, "warning") if w["code"] == "nonfinite_loss"]
    assert [w["step"] for w in warns] == [2]
    assert not [w for w in events(run, "warning") if w["code"] == "checkpoint_refused"]
    assert all(isinstance(e["val_f"], float) for e in events(run, "epoch"))
    sd = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    stats = {k: v for k, v in sd.items() if k.endswith(("running_mean", "running_var"))}
    assert stats and all(torch.isfinite(v).all() for v in stats.values())
    assert finite(run / "checkpoints" / "best.pt")
