"""`segwatch predict` + `segwatch evaluate` on real tiny runs: the val F the trainer reported is
reproduced from PNG files; ensembles, TTA flip, the submission zip, odd input, safe loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.runlib import Run
from trainer.core.classes import FLIP_PERM

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def segwatch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run("-m", "app", *args, timeout=timeout)


@pytest.fixture(scope="module")
def val_set(tiny_ablation, tmp_path_factory) -> Path:
    """The synthetic validation split the runs were scored on, as PNG images + masks."""
    out = tmp_path_factory.mktemp("valset")
    p = run("-m", "trainer.export_data", str(tiny_ablation["baseline"]), "--split", "val", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert len(list((out / "images").glob("*.png"))) == 8 == len(list((out / "masks").glob("*.png")))
    return out


def evaluate(pred: Path, gt: Path, tmp: Path) -> dict:
    js = tmp / f"eval-{pred.name}.json"
    p = segwatch("evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(js))
    assert p.returncode == 0, p.stderr
    assert "F-measure (organisers', per image)" in p.stdout
    return json.loads(js.read_text())


def state(run_dir: Path):
    r = Run(run_dir)
    r.refresh()
    return r.state


@pytest.mark.parametrize("name", ["baseline", "lmsa_focal"])
def test_predict_then_evaluate_reproduces_the_reported_val_f(tiny_ablation, val_set, tmp_path, name):
    out = tmp_path / "pred"
    p = segwatch("predict", name, "--runs-dir", str(tiny_ablation["runs_dir"]), "--images", str(val_set / "images"),
                 "--out", str(out), "--device", "cpu")
    assert p.returncode == 0, p.stderr
    st = state(tiny_ablation[name])
    got = evaluate(out, val_set / "masks", tmp_path)
    best = st.epochs[st.best_epoch]
    assert got["complete"] and got["images"] == 8
    assert abs(got["f"] - st.best_val_f) < 1e-4
    assert abs(got["pooled_f"] - best["pooled_f"]) < 1e-4
    for c, (ours, theirs) in enumerate(zip(got["per_class"].values(), best["per_class_f"])):
        assert (ours is None) == (theirs is None) and (ours is None or abs(ours - theirs) < 1e-4), c
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["models"][0]["epoch"] == st.best_epoch and manifest["models"][0]["best_val_f"] == st.best_val_f


def test_ensemble_tta_and_the_submission_zip(tiny_ablation, val_set, tmp_path):
    out, z = tmp_path / "ens", tmp_path / "sub" / "submission.zip"
    p = segwatch("predict", "baseline", "lmsa", "--runs-dir", str(tiny_ablation["runs_dir"]), "--images",
                 str(val_set / "images"), "--out", str(out), "--tta", "flip", "--zip", str(z), "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert "2 model(s), TTA flip" in p.stdout
    got = evaluate(out, val_set / "masks", tmp_path)
    assert got["complete"] and got["images"] == 8 and 0.0 < got["f"] <= 1.0
    stems = sorted(x.stem for x in (val_set / "images").glob("*.png"))
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == [f"masks/{s}.png" for s in stems]
        for s in stems:
            zf.extract(f"masks/{s}.png", tmp_path / "unzipped")
    for s in stems:
        im = Image.open(tmp_path / "unzipped" / "masks" / f"{s}.png")
        assert im.mode == "L" and im.size == (64, 64)
        assert np.array_equal(np.array(im), np.array(Image.open(out / f"{s}.png")))
    # the ensemble of a run with itself is that run: softmax averaging, not vote counting
    same, single = tmp_path / "same", tmp_path / "single"
    for args, o in ((["lmsa", "lmsa"], same), (["lmsa"], single)):
        assert segwatch("predict", *args, "--runs-dir", str(tiny_ablation["runs_dir"]), "--images",
                        str(val_set / "images"), "--out", str(o), "--device", "cpu").returncode == 0
    for s in stems:
        assert np.array_equal(np.array(Image.open(same / f"{s}.png")), np.array(Image.open(single / f"{s}.png")))


def test_tta_flip_swaps_left_and_right_back(tiny_ablation, val_set, tmp_path):
    """With TTA flip, the mask of a mirrored image is the mirrored mask with l_*/r_* swapped."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = sorted((val_set / "images").glob("*.png"))[0]
    shutil.copy(src, imgs / "a.png")
    Image.fromarray(np.array(Image.open(src))[:, ::-1].copy()).save(imgs / "a_mirror.png")
    out = tmp_path / "out"
    p = segwatch("predict", "lmsa", "--runs-dir", str(tiny_ablation["runs_dir"]), "--images", str(imgs), "--out",
                 str(out), "--tta", "flip", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    a, m = np.array(Image.open(out / "a.png")), np.array(Image.open(out / "a_mirror.png"))
    expected = np.array(FLIP_PERM, dtype=np.uint8)[a[:, ::-1]]
    assert (expected == m).mean() > 0.999  # identical up to float ties between the two batches


def test_original_size_unreadable_images_and_other_files_are_reported(tiny_ablation, val_set, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = sorted((val_set / "images").glob("*.png"))[1]
    Image.open(src).resize((100, 80)).convert("RGB").save(imgs / "wide.jpg", quality=95)
    (imgs / "broken.jpg").write_bytes(b"not a jpeg at all")
    (imgs / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    p = segwatch("predict", "baseline", "--runs-dir", str(tiny_ablation["runs_dir"]), "--images", str(imgs),
                 "--out", str(out), "--device", "cpu")
    assert p.returncode == 1, p.stderr
    assert "cannot read broken.jpg" in p.stderr and "notes.txt" in p.stderr
    im = Image.open(out / "wide.png")
    assert im.size == (100, 80) and im.mode == "L"
    assert not (out / "broken.png").exists()
    manifest = json.loads((out / "predictions.json").read_text())
    assert [u["file"] for u in manifest["unreadable"]] == ["broken.jpg"] and manifest["not_images"] == ["notes.txt"]
    assert manifest["images"] == [{"stem": "wide", "file": "wide.jpg", "size": [100, 80]}]


def test_evaluate_names_missing_extra_and_bad_masks(val_set, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(val_set / "masks", pred)
    stems = sorted(x.stem for x in pred.glob("*.png"))
    (pred / f"{stems[0]}.png").unlink()
    shutil.copy(pred / f"{stems[1]}.png", pred / "stray.png")
    Image.open(pred / f"{stems[2]}.png").convert("RGB").save(pred / f"{stems[2]}.png")
    js = tmp_path / "e.json"
    p = segwatch("evaluate", "--pred", str(pred), "--gt", str(val_set / "masks"), "--json", str(js))
    assert p.returncode == 1
    assert f"1 missing predictions (ground truth without a mask in --pred): {stems[0]}.png" in p.stderr
    assert "1 extra predictions (no ground truth): stray.png" in p.stderr
    assert f"{stems[2]}.png: mode RGB" in p.stderr
    got = json.loads(js.read_text())
    assert got["images"] == 6 and got["f"] == pytest.approx(1.0) and not got["complete"]  # GT vs itself
    assert "INCOMPLETE" in p.stdout


def test_a_checkpoint_that_does_not_fit_its_config_says_what_differs(tiny_ablation, tmp_path):
    ck = tiny_ablation["lmsa"] / "checkpoints" / "best.pt"
    p = run("-m", "trainer.predict", "--model", str(ck), "--config", str(ROOT / "configs" / "baseline.yaml"),
            "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert "no image files" in p.stderr  # the folder is checked first: nothing is loaded for nothing
    (tmp_path / "x.png").write_bytes(b"")
    p = run("-m", "trainer.predict", "--model", str(ck), "--config", str(ROOT / "configs" / "baseline.yaml"),
            "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "checkpoint mismatch" in p.stderr and "model.attention=none" in p.stderr
    assert "checkpoint keys the model does not have (e.g. stages." in p.stderr and ".*" in p.stderr
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text("model:\n  attention: lmsa\n  width: 16\n")
    p = run("-m", "trainer.predict", "--model", str(ck), "--config", str(narrow), "--images", str(tmp_path),
            "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "tensors of another shape (" in p.stderr and "checkpoint [" in p.stderr
    assert not (tmp_path / "o").exists()


class NotATensor:
    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.mark.slow  # starts python -m trainer.predict (torch imported in the child)
def test_checkpoints_are_loaded_with_weights_only(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": NotATensor()}, bad)
    (tmp_path / "x.png").write_bytes(b"")
    p = run("-m", "trainer.predict", "--model", str(bad), "--config", str(ROOT / "configs" / "baseline.yaml"),
            "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "cannot be loaded safely (torch.load weights_only=True)" in p.stderr
    assert "this would run on load" not in p.stdout


