"""Real data in its exact formats (tests/standin.py: JPEG images, P-mode palette PNG masks, the
original per-part layout): the trainer's val F is the organisers' score (what `segwatch predict` +
`segwatch evaluate` give for the same checkpoint), real data trains at its own size unless told
otherwise and says what it is, and bad files of every split are named up front (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import standin
from trainer.data import DataError, MiniChallengeDataset, build_datasets
from trainer.data.dataset import SYNTHETIC_IMAGE_SIZE, collate_native
from trainer.metrics import FScoreMeter
from trainer.record import read_events
from trainer.valscore import score_batch

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["model.width=8", "training.batch_size=2", "training.warmup_epochs=0", "training.log_every=1"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def py(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def train(run_dir: Path, *sets: str) -> subprocess.CompletedProcess:
    cmd = ["-m", "trainer", "--config", str(ROOT / "configs" / "lmsa.yaml"), "--run-dir", str(run_dir), "--device", "cpu"]
    for s in (*SMALL, *sets):
        cmd += ["--set", s]
    return py(*cmd)


def events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == kind]


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """6 train + 4 val pairs, 64 px: JPEG images, P-mode palette masks (the mini-challenge layout)."""
    return standin.make_mini(tmp_path_factory.mktemp("mini"), n_train=6, n_val=4, size=64)


def test_val_f_is_what_predict_and_evaluate_give_for_the_same_checkpoint(mini, tmp_path):
    """Trained at 32 px, the trainer scores validation on the 64 px masks, exactly as predict
    (logits upsampled to each image's size) + evaluate score the checkpoint's masks."""
    p = train(tmp_path / "run", f"data.root={mini}", "data.image_size=32", "training.epochs=2")
    assert p.returncode == 0, p.stderr
    ep = {e["epoch"]: e for e in events(tmp_path / "run", "epoch")}
    best = max(ep.values(), key=lambda e: e["val_f"])["epoch"]
    for ckpt, epoch in (("best", best), ("last", 2)):
        out = tmp_path / f"pred-{ckpt}"
        p = py("-m", "app", "predict", str(tmp_path / "run"), "--checkpoint", ckpt, "--images",
               str(mini / "val" / "images"), "--out", str(out), "--device", "cpu")
        assert p.returncode == 0, p.stderr
        assert {Image.open(f).size for f in out.glob("*.png")} == {(64, 64)}  # the masks' own size
        js = tmp_path / f"eval-{ckpt}.json"
        p = py("-m", "app", "evaluate", "--pred", str(out), "--gt", str(mini / "val" / "masks"), "--json", str(js))
        assert p.returncode == 0, p.stderr
        ev = json.loads(js.read_text())
        assert ev["images"] == 4
        assert ev["f"] == pytest.approx(ep[epoch]["val_f"], abs=1e-12), (ckpt, ev["f"], ep[epoch]["val_f"])
        assert ev["pooled_f"] == pytest.approx(ep[epoch]["pooled_f"], abs=1e-12)
        got = list(ev["per_class"].values())
        assert [x is None for x in got] == [x is None for x in ep[epoch]["per_class_f"]]
        assert all(a is None or a == pytest.approx(b, abs=1e-12) for a, b in zip(got, ep[epoch]["per_class_f"]))


def test_real_data_trains_at_its_own_size_unless_configured_and_says_what_it_is(mini, tmp_path):
    p = train(tmp_path / "native", f"data.root={mini}", "training.epochs=1")
    assert p.returncode == 0, p.stderr
    start = events(tmp_path / "native", "start")[0]
    d = start["data"]
    assert start["synthetic"] is False and d["synthetic"] is False
    assert (d["kind"], d["root"], d["train_count"], d["val_count"]) == ("mini", str(mini), 6, 4)
    assert d["layout"].startswith("mini-challenge")
    assert (d["native_size"], d["image_size"]) == (64, 64) and "unset" in d["image_size_source"]
    assert d["val_scored_at"] == "each mask's own size" and d["mask_sizes"] == {"64x64": 10}
    assert d["class_weights"]["enabled"] is False and "6 training masks at 64 px" in d["class_weights"]["source"]
    assert "image_size: 64" in (tmp_path / "native" / "config.yaml").read_text()  # predict reads it back
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("data: "))
    for needle in ("real data", "mini-challenge layout", str(mini), "train 6, val 4", "native 64 px",
                   "training at 64 px", "val F at each mask's own size", "class weights: off"):
        assert needle in line, (needle, line)
    assert not [w for w in events(tmp_path / "native", "warning") if w.get("code") == "synthetic_data"]

    p = train(tmp_path / "set", f"data.root={mini}", "data.image_size=32", "training.epochs=1")
    assert p.returncode == 0, p.stderr
    d = events(tmp_path / "set", "start")[0]["data"]
    assert (d["native_size"], d["image_size"], d["image_size_source"]) == (64, 32, "data.image_size")


def test_synthetic_data_keeps_its_default_size(tmp_path):
    _, _, desc = build_datasets(root=None, synthetic_train=2, synthetic_val=1)
    assert desc["synthetic"] is True and desc["image_size"] == desc["native_size"] == SYNTHETIC_IMAGE_SIZE == 64


def test_original_layout_names_bad_files_of_every_split_up_front(tmp_path):
    """A truncated part mask used to crash mid-training (exit 1, a long traceback); val's problems
    were only seen once train's were fixed; a duplicate image index was silently dropped."""
    root = standin.make_celeb(tmp_path / "celeb", keys=range(10), size=64, img_size=128)
    anno = root / "CelebAMask-HQ-mask-anno" / "0"
    standin.truncate(anno / "00001_hair.png")   # train
    standin.truncate(anno / "00009_skin.png")   # val (val_fraction 0.1: the 10th image)
    p = train(tmp_path / "run", f"data.root={root}", "training.epochs=1")
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and not (tmp_path / "run" / "events.jsonl").exists()
    for needle in ("train: 1 problem", "00001_hair.png", "val: 1 problem", "00009_skin.png", "truncated"):
        assert needle in p.stderr, (needle, p.stderr)

    standin.truncate(anno / "00001_hair.png", keep=1.0)
    (root / "CelebA-HQ-img" / "3.png").write_bytes((root / "CelebA-HQ-img" / "3.jpg").read_bytes())
    with pytest.raises(DataError) as e:
        build_datasets(root=str(root))
    msg = str(e.value)
    assert "CelebA-HQ-img/3.jpg" in msg and "CelebA-HQ-img/3.png" in msg, msg
    assert "00009_skin.png" in msg, msg


def test_mini_layout_duplicate_stems_name_both_files_and_every_split_is_reported(tmp_path):
    root = standin.make_mini(tmp_path, n_train=2, n_val=2, size=32)
    (root / "train" / "images" / "train000.png").write_bytes(b"")
    (root / "val" / "masks" / "val000.PNG").write_bytes((root / "val" / "masks" / "val000.png").read_bytes())
    with pytest.raises(DataError) as e:
        build_datasets(root=str(root))
    msg = str(e.value)
    assert "train: " in msg and "val: " in msg, msg
    assert "train/images/train000.jpg" in msg and "train/images/train000.png" in msg, msg
    assert "val/masks/val000.PNG" in msg and "val/masks/val000.png" in msg, msg


def test_unset_size_with_masks_of_several_sizes_asks_for_one(tmp_path):
    root = standin.make_mini(tmp_path, n_train=2, n_val=1, size=64)
    standin.write_mini_pair(root, "train", "big", standin.face_mask(96, 0))
    with pytest.raises(DataError) as e:
        build_datasets(root=str(root))
    assert "set data.image_size" in str(e.value) and "96x96" in str(e.value) and "64x64" in str(e.value)
    tr, va, desc = build_datasets(root=str(root), image_size=32)
    assert desc["native_size"] is None and desc["mask_sizes"] == {"64x64": 3, "96x96": 1}
    assert MiniChallengeDataset(root, "train").mask_sizes[(96, 96)] == 1


def test_validation_masks_of_several_sizes_are_scored_each_at_its_own_size(tmp_path):
    """collate_native keeps differently sized masks apart; score_batch upsamples the logits to each."""
    masks = [torch.from_numpy(standin.face_mask(s, 0).astype(np.int64)) for s in (64, 96)]
    batch = collate_native([(torch.zeros(3, 32, 32), masks[0]), (torch.zeros(3, 32, 32), masks[1])])
    assert isinstance(batch[1], list) and batch[0].shape == (2, 3, 32, 32)
    logits = torch.randn(2, 19, 32, 32, generator=torch.Generator().manual_seed(0))

    def loss_fn(x, y):
        return torch.nn.functional.cross_entropy(x, y), {}

    mixed, each = FScoreMeter(), FScoreMeter()
    total = score_batch(logits, batch[1], loss_fn, mixed, torch.device("cpu"))
    ref = sum(score_batch(logits[k:k + 1], masks[k].unsqueeze(0), loss_fn, each, torch.device("cpu")) for k in (0, 1))
    assert mixed.compute() == each.compute() and mixed.compute()["images"] == 2
    assert float(total) == pytest.approx(float(ref))
