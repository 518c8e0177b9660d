"""Mask previews end to end: a real tiny trainer writes previews/ at each validation, the cockpit shows
them (Pilot: m, n, b, f), `segwatch report` copies the first and last epoch's, and a hostile previews
folder (FIFO, huge file, symbolic link) is refused by the cockpit, the report and the trainer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from app.runlib import previews as pv
from app.runlib import safeio
from app.tui.screens.previews import PreviewScreen
from tests.app.tui_helpers import make_app, wait_for
from trainer.core.classes import CLASS_COLOURS, SMALL_CLASSES

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=6", "data.image_size=32", "training.batch_size=8",
        "training.epochs=3", "training.warmup_epochs=0"]


def _trainer(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa.yaml"), "--run-dir", str(run_dir),
           "--device", "cpu"]
    for s in TINY:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs side by side: 'good', and 'linked' whose previews/ is a link to a folder outside."""
    base = tmp_path_factory.mktemp("previews")
    outside = base / "outside"
    outside.mkdir()
    (base / "linked").mkdir()
    os.symlink(outside, base / "linked" / "previews")
    procs = {n: _trainer(base / n) for n in ("good", "linked")}
    for n, p in procs.items():
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, (n, err[-2000:])
    return {"base": base, "good": base / "good", "linked": base / "linked", "outside": outside}


def test_trainer_writes_previews_each_validation(runs):
    d = runs["good"] / "previews"
    index = json.loads((d / "index.json").read_text())
    assert index["epochs"] == [1, 2, 3] and index["latest"] == 3 and index["columns"][3] == "errors"
    assert len(index["rows"]) == 4 and all(set(r["small_parts"]) <= set(SMALL_CLASSES) and r["small_parts"]
                                           for r in index["rows"])
    from PIL import Image

    for e in (1, 2, 3):
        im = Image.open(d / f"epoch_{e:04d}.png")
        assert im.size == (4 * 32, 4 * 32)  # 4 tiles of 32 px side by side, a row per image
        truth = im.convert("RGB").crop((32, 0, 64, 32))
        assert {c for _, c in truth.getcolors(4096)} <= set(CLASS_COLOURS)  # truth drawn in the class palette
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    # the preview is on disk before the epoch event that names its epoch
    last = [e for e in map(json.loads, (runs["good"] / "events.jsonl").read_text().splitlines()) if e["type"] == "epoch"][-1]
    assert last["epoch"] == 3 and index["t"] <= last["t"]


def test_trainer_does_not_write_through_a_linked_previews_folder(runs):
    assert list(runs["outside"].iterdir()) == []
    events = [json.loads(ln) for ln in (runs["linked"] / "events.jsonl").read_text().splitlines()]
    warns = [e for e in events if e["type"] == "warning" and e["code"] == "previews_failed"]
    assert len(warns) == 1 and "symbolic link" in warns[0]["message"]
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "completed"


def _screen_text(app) -> str:
    s = app.screen
    assert isinstance(s, PreviewScreen)
    return "\n".join(str(w.content) for w in (s.title_w, s.info_w))


def _pic_colours(app) -> set:
    con = Console(width=120, color_system="truecolor", record=True)
    con.print(app.screen.pic_w.content)
    return {tuple(seg.style.color.triplet) for seg in con._record_buffer
            if seg.style and seg.style.color and seg.style.color.triplet}


async def test_cockpit_shows_previews_and_steps_through_them(runs):
    app = make_app([runs["good"]])
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: 0 in app.views, what="the run's first view")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen) and "epoch 3" in _screen_text(app),
                       what="the previews screen at the newest epoch")
        assert "newest, following" in _screen_text(app) and "image 1 of 4" in _screen_text(app)
        colours = _pic_colours(app)
        hair = CLASS_COLOURS[13]
        assert tuple(hair) in colours  # the truth tile, in the class palette
        await pilot.press("n")
        assert "image 2 of 4" in _screen_text(app)
        await pilot.press("b")
        assert "epoch 2 (2 of 3)" in _screen_text(app)
        await pilot.press("b", "b")
        assert "epoch 1 (1 of 3)" in _screen_text(app)
        await pilot.press("f", "f")
        assert "epoch 3 (newest, following)" in _screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PreviewScreen), what="the screen closed")


def _report(run_dir: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "app", "report", str(run_dir), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_report_includes_first_and_last_epoch_previews(runs, tmp_path):
    p = _report(runs["good"], tmp_path)
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "report.md").read_text()
    for e in (1, 3):
        name = f"previews_good_epoch_{e:04d}.png"
        assert (tmp_path / name).read_bytes() == (runs["good"] / "previews" / f"epoch_{e:04d}.png").read_bytes()
        assert f"]({name})" in md
    assert not (tmp_path / "previews_good_epoch_0002.png").exists()


def _hostile(src: Path, dst: Path, kind: str) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    d = dst / "previews"
    if kind == "fifo":
        os.unlink(d / "index.json")
        os.mkfifo(d / "index.json")
    elif kind == "huge":
        with open(d / "epoch_0003.png", "r+b") as f:
            f.truncate(pv.PNG_CAP + 1)
    elif kind == "link":
        shutil.rmtree(d)
        os.symlink(src / "previews", d)
    return dst


@pytest.mark.parametrize("kind,says", [("fifo", "index.json is a FIFO"), ("huge", "epoch_0003.png is 4,194,305 bytes"),
                                       ("link", "previews is a symbolic link")])
async def test_hostile_previews_are_refused(runs, tmp_path, kind, says):
    run = _hostile(runs["good"], tmp_path / kind, kind)
    with pytest.raises(safeio.Refused):
        pv.read_png(run, 3) if kind == "huge" else pv.read_index(run)
    p = _report(run, tmp_path / "out")  # returns (a FIFO never blocks it) and says why
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    assert says in md and "skipped" in md
    assert not (tmp_path / "out" / "previews_link_epoch_0003.png").exists()
    app = make_app([run])
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen) and says in str(app.screen.pic_w.content),
                       what=f"the refusal ({says}) on screen")
