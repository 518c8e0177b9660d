"""What the segwatch commands say about real data going wrong: a data error shown whole by
`segwatch run`, a submission zip refused when images have no mask, `evaluate | head`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import standin

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["model.width=8", "training.batch_size=2", "training.warmup_epochs=0", "training.epochs=1",
         "data.image_size=32"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def segwatch(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], text=True, timeout=timeout, cwd=ROOT, env=env(),
                          **({"capture_output": True} | kw))


def sets(*extra: str) -> list[str]:
    out = []
    for s in (*SMALL, *extra):
        out += ["--set", s]
    return out


def test_segwatch_run_shows_a_data_error_whole(tmp_path):
    """It showed `CRASHED: exit code 2` and the last 5 stderr lines: the header and the first problems
    (train's) were cut off. Now: header first, every split's problems, nothing else."""
    root = standin.make_mini(tmp_path / "data", n_train=3, n_val=2, size=32)
    for i in range(3):
        standin.truncate(root / "train" / "images" / f"train{i:03d}.jpg")
    (root / "val" / "masks" / "val001.png").unlink()
    p = segwatch("run", str(ROOT / "configs" / "lmsa.yaml"), *sets(f"data.root={root}"), "--runs-dir",
                 str(tmp_path / "runs"), "--headless", "--device", "cpu", "--interval", "0.2")
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout
    assert "CRASHED: exit code 2 (a config or data error: nothing was trained)" in out, out
    assert "stderr: segwatch trainer: error: mini-challenge dataset at" in out, out
    for needle in ("train: 3 problem(s)", "train/images/train000.jpg", "train/images/train002.jpg",
                   "val: 1 problem(s)", "image without mask: val/images/val001.jpg"):
        assert needle in out, (needle, out)
    # the cockpit shows the same lines (its header draws RunView.stderr_tail)
    from app.runlib import Run
    from app.snapshot import build_view

    run = Run(next((tmp_path / "runs").iterdir()))
    run.refresh()
    view = build_view(0, run, None)
    assert view.status == "crashed" and view.stderr_tail[0].startswith("segwatch trainer: error:")
    assert any("val001.jpg" in ln for ln in view.stderr_tail) and len(view.stderr_tail) == 7


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("zip")
    root = standin.make_mini(tmp / "data", n_train=4, n_val=3, size=32)
    run = tmp / "run"
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa.yaml"), "--run-dir", str(run),
           "--device", "cpu", *sets(f"data.root={root}")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env())
    assert p.returncode == 0, p.stderr
    return root, run


def test_a_submission_zip_without_masks_for_some_images_is_refused(trained, tmp_path):
    root, run = trained
    images = tmp_path / "test"
    images.mkdir()
    for f in (root / "val" / "images").iterdir():
        (images / f.name).write_bytes(f.read_bytes())
    (images / "val001.jpg").write_bytes(b"not a jpeg")
    z = tmp_path / "submission.zip"
    p = segwatch("predict", str(run), "--images", str(images), "--out", str(tmp_path / "pred"), "--zip", str(z),
                 "--device", "cpu")
    assert p.returncode == 1 and not z.exists(), p.stderr
    assert "not written: 1 of 3 images have no mask (unreadable): val001" in p.stderr, p.stderr
    assert "--allow-partial-zip" in p.stderr
    p = segwatch("predict", str(run), "--images", str(images), "--out", str(tmp_path / "pred"), "--zip", str(z),
                 "--device", "cpu", "--allow-partial-zip")
    assert p.returncode == 1 and z.exists(), p.stderr
    assert "PARTIAL: no mask for 1 images: val001" in p.stderr, p.stderr
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["masks/val000.png", "masks/val002.png"]


def test_evaluate_into_a_closed_pipe_writes_its_json_and_no_traceback(trained, tmp_path):
    root, _ = trained
    r, w = os.pipe()
    os.close(r)  # the reader (`| head`) has gone before evaluate prints
    js = tmp_path / "e.json"
    try:
        p = segwatch("evaluate", "--pred", str(root / "val" / "masks"), "--gt", str(root / "val" / "masks"),
                     "--json", str(js), capture_output=False, stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr
    assert p.returncode == 141
    assert json.loads(js.read_text())["f"] == pytest.approx(1.0)


def test_headless_and_the_cockpit_say_what_real_data_a_run_trains_on(tmp_path):
    root = standin.make_mini(tmp_path / "data", n_train=4, n_val=2, size=32)
    p = segwatch("run", str(ROOT / "configs" / "lmsa.yaml"), *sets(f"data.root={root}"), "--runs-dir",
                 str(tmp_path / "runs"), "--headless", "--device", "cpu", "--interval", "0.2")
    assert p.returncode == 0, p.stdout + p.stderr
    line = next((ln for ln in p.stdout.splitlines() if "REAL DATA: real data:" in ln), "")
    for needle in ("mini-challenge layout", str(root), "train 4, val 2", "native 32 px", "training at 32 px",
                   "val F at each mask's own size"):
        assert needle in line, (needle, p.stdout)
    assert "SYNTHETIC" not in p.stdout
    from app.runlib import Run
    from app.snapshot import build_view
    from app.tui.widgets.header import PaneHeader

    run = Run(next((tmp_path / "runs").iterdir()))
    run.refresh()
    text = PaneHeader().draw(build_view(0, run, None)).plain
    assert " REAL DATA " in text and "train 4, val 2" in text and "SYNTHETIC" not in text, text
