"""A live `set` changes what the trainer actually computes (not just what it reports)."""

from pathlib import Path

import pytest
import torch

from trainer.core.config import load_config
from trainer.dist import DistContext
from trainer.build import build

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def comp():
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "lmsa_focal.yaml",
                      ["data.synthetic_train=16", "data.synthetic_val=4", "data.image_size=64", "training.batch_size=4"])
    return build(cfg, torch.device("cpu"), DistContext())


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 19, 16, 16, generator=g), torch.randint(0, 19, (2, 16, 16), generator=g)


def test_set_gamma_changes_the_computed_loss(comp):
    logits, target = fixed_batch()
    before, _ = comp.loss_fn(logits, target)
    comp.apply_live({"gamma": 1.5})
    after, _ = comp.loss_fn(logits, target)
    comp.apply_live({"gamma": 2.0})
    again, _ = comp.loss_fn(logits, target)
    assert after.item() != pytest.approx(before.item(), rel=1e-4)
    assert again.item() == pytest.approx(before.item(), rel=1e-6)


def test_set_alpha_and_dice_weight_change_the_loss(comp):
    logits, target = fixed_batch()
    base, _ = comp.loss_fn(logits, target)
    comp.apply_live({"alpha": 0.5})
    assert comp.loss_fn(logits, target)[0].item() != pytest.approx(base.item(), rel=1e-4)
    comp.apply_live({"alpha": 0.25, "dice_weight": 0.0})
    assert comp.loss_fn(logits, target)[0].item() < base.item()
    comp.apply_live({"dice_weight": 1.0})


def test_set_dropout_changes_every_dropout_layer(comp):
    layers = [m for m in comp.raw_model.modules() if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d))]
    assert len(layers) >= 2
    comp.apply_live({"dropout": 0.3})
    assert all(m.p == 0.3 for m in layers)


def test_set_weight_decay_leaves_no_decay_groups_alone(comp):
    comp.apply_live({"weight_decay": 2e-4})
    groups = comp.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [2e-4, 0.0]


def test_use_class_weights_loads_weights_from_training_frequencies(comp, tmp_path):
    from trainer.rundir import open_run

    run = open_run(comp, tmp_path / "r", None, [])  # the frequencies are cached in the run directory
    run.apply_live({"use_class_weights": True})
    w = comp.loss_fn.class_weights
    assert w is not None and w.shape == (19,) and torch.isfinite(w).all()
    assert (tmp_path / "r" / "class_frequencies.json").exists()
    run.events.close()
    logits, target = fixed_batch()
    weighted = comp.loss_fn(logits, target)[0].item()
    comp.apply_live({"use_class_weights": False})
    assert comp.loss_fn(logits, target)[0].item() != pytest.approx(weighted, rel=1e-4)


def test_each_live_key_has_one_way_in():
    """trainer.build.LIVE_APPLY is keyed by the shared core's live keys: one entry each, none else."""
    from trainer.build import LIVE_APPLY
    from trainer.core.live import LIVE_KEYS

    assert list(LIVE_APPLY) == list(LIVE_KEYS)


def test_an_opened_run_is_whole(comp, tmp_path):
    """open_run returns the run's Components complete: no field waits for a second phase."""
    import dataclasses

    from trainer.rundir import Components, open_run

    run = open_run(comp, tmp_path / "r", None, [])
    assert isinstance(run, Components)
    empty = [f.name for f in dataclasses.fields(run) if getattr(run, f.name) is None and not f.name.startswith("_")]
    assert empty == [] and run.steering.live == run.initial_live() and run.home() == tmp_path / "r"
    assert (tmp_path / "r" / "meta.json").exists()
    run.events.close()


def test_augmentation_changes_wait_for_the_next_epoch(comp):
    comp.apply_live({"rotation": 30.0, "scale_range": [0.8, 1.2], "hflip": False})
    assert comp.augment.rotation == 20.0  # the epoch in progress keeps its augmentation
    assert comp.start_epoch_augmentation() == {"rotation": 30.0, "scale_range": (0.8, 1.2), "hflip": False}
    assert (comp.augment.rotation, comp.augment.scale_range, comp.augment.hflip) == (30.0, (0.8, 1.2), False)
    assert comp.start_epoch_augmentation() == {}


def test_an_augmentation_ack_after_the_last_checkpoint_survives_resume(comp, tmp_path):
    """steering.restore replays acks the checkpoint does not know through apply_live: the
    augmentation keys must reach the augmentation too, not only the loss and model keys."""
    from trainer.record import EventWriter
    from trainer.steer import Steering

    ev = EventWriter(tmp_path / "events.jsonl")
    ev.emit("ack", id="late", cmd="set", changes={"rotation": [20.0, 45.0]}, epoch=3, step=40)
    s = Steering(tmp_path / "control.jsonl", ev, {"rotation": 20.0}, comp.apply_live, is_main=True)
    s.restore([], [{"type": "ack", "id": "late", "changes": {"rotation": [20.0, 45.0]}}])
    comp.start_epoch_augmentation()
    assert comp.augment.rotation == 45.0
    ev.close()


def test_live_ranges_have_one_source():
    """trainer/core/config.py's field metadata is the one table: trainer.core.live's checks are its checks, and
    app.health.schema's preset clamps lie inside what the trainer accepts."""
    from app.health.schema import LIVE_KEYS as PRESET_KEYS
    from app.health.schema import NUM_ALPHA
    from trainer.core.config import field_meta
    from trainer.core.classes import NUM_CLASSES
    from trainer.core.live import LIVE_KEYS

    assert set(PRESET_KEYS) == set(LIVE_KEYS) and NUM_ALPHA == NUM_CLASSES
    for name, k in LIVE_KEYS.items():
        meta = field_meta(k.config_key)
        if "check" in meta:
            assert k.check is meta["check"], name
        p = PRESET_KEYS[name]
        assert p["kind"] == k.kind
        if k.kind in ("float", "int"):
            assert k.check(p["lo"]) and (p["hi"] is None or k.check(p["hi"])), (name, p)
