"""Mask previews in a real terminal: a real 3-epoch training under `segwatch run` at 200x55 writes
previews/ at each validation; `m` draws the newest epoch's (the half-block renderer: its captions on
screen, truecolour cells in the class palette in `capture-pane -e`), `b`/`f` step the shown epoch and
its label with it, escape closes. Needs tmux (CI installs it in .ci/run).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import tmux_driver
from tmux_driver import Tmux, trainer_alive
from trainer.core.classes import CLASS_COLOURS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=6", "data.image_size=32", "training.epochs=3",
        "training.warmup_epochs=0", "training.batch_size=8"]
HALF = "▀"  # the renderer's cell: upper pixel as foreground, lower as background
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def wait_epochs(index: Path, want: list[int], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    data: dict = {}
    while time.monotonic() < deadline:
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError):  # not written yet (written whole, by a rename)
            data = {}
        if data.get("epochs") == want:
            return data
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for previews of epochs {want}; index: {data}")


def half_block_colours(raw: str) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(foreground, background) truecolour of each '▀' cell in a `capture-pane -e` screen."""
    cells, fg, bg = [], None, None
    pos = 0
    for m in SGR.finditer(raw + "\x1b[m"):
        for ch in raw[pos:m.start()]:
            if ch == HALF and fg and bg:
                cells.append((fg, bg))
        pos = m.end()
        parts = [int(p) if p else 0 for p in m.group(1).split(";")] if m.group(1) else [0]
        i = 0
        while i < len(parts):
            p = parts[i]
            if p == 0:
                fg = bg = None
            elif p in (38, 48) and i + 4 < len(parts) and parts[i + 1] == 2:
                rgb = tuple(parts[i + 2:i + 5])
                fg, bg = (rgb, bg) if p == 38 else (fg, rgb)
                i += 4
            elif p == 39:
                fg = None
            elif p == 49:
                bg = None
            i += 1
    return cells


def picture_lines(raw: str) -> str:
    """The lines of a `capture-pane -e` screen between the previews' title and its errors legend."""
    lines = raw.splitlines()
    plain = [SGR.sub("", ln) for ln in lines]
    top = next(i for i, ln in enumerate(plain) if "image | truth | prediction | errors" in ln)
    bottom = next((i for i, ln in enumerate(plain) if "wrong pixel" in ln and i > top), top)
    return "\n".join(lines[top + 1:bottom])  # "" when nothing lies between them (not drawn yet)


def wait_picture(tmux: Tmux, target: str, timeout: float) -> list:
    """The picture's cells once it is drawn whole: 4 tiles of 32 px side by side, scaled to fit,
    are at least 128 cells wide and 16 rows (32 px) high, every row of the picture a row of '▀'."""
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        raw = tmux.screen(target, escapes=True)
        plain = SGR.sub("", raw)
        if "image | truth | prediction | errors" in plain and "wrong pixel" in plain:
            pic = picture_lines(raw)
            cells = half_block_colours(pic)
            rows = SGR.sub("", pic).splitlines()
            if len(cells) >= 128 * 16 and rows and all(ln.count(HALF) >= 128 for ln in rows):
                return cells
            got = f"{len(cells)} half-block cells in {len(rows)} rows:\n" + "\n".join(rows)
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for the picture; {got or plain}")


def test_previews_key_draws_the_mask_and_steps_epochs(tmux, tmp_path):
    runs = tmp_path / "runs"
    sets = [x for s in TINY for x in ("--set", s)]
    cmd = [sys.executable, "-m", "app", "run", "configs/lmsa.yaml", *sets, "--runs-dir", str(runs),
           "--device", "cpu", "--no-gpu"]
    run_dir = runs / "lmsa"
    tmux("new-session", "-d", "-s", "pv", "-x", "200", "-y", "55", tmux_driver.shell(cmd, ROOT))
    try:
        tmux.wait("pv", lambda s: "lmsa" in s and "epoch" in s, 120, "the cockpit on the run")
        index = wait_epochs(run_dir / "previews" / "index.json", [1, 2, 3], 300)
        assert len(index["rows"]) == 4
        tmux("send-keys", "-t", "pv", "m")
        text = tmux.wait("pv", lambda s: "lmsa: epoch 3 (newest, following)" in s and "wrong pixel" in s, 20,
                         "the previews at epoch 3")
        # the screen's captions and legend, whole
        assert "image 1 of 4" in text and "image | truth | prediction | errors" in text
        assert "n/N image · b/f epoch back/forward" in text
        # the picture: rows of half blocks in truecolour, the truth tile in the class palette
        cells = wait_picture(tmux, "pv", 20)
        colours = {c for fg, bg in cells for c in (fg, bg)}
        assert len(colours) >= 5 and any(c != (0, 0, 0) for c in colours)
        palette = {tuple(c) for c in CLASS_COLOURS} - {(0, 0, 0)}
        assert colours & palette, "no class colour among the picture's cells"
        # the epoch-stepping keys change the shown epoch and its label
        tmux("send-keys", "-t", "pv", "b")
        tmux.wait("pv", lambda s: "lmsa: epoch 2 (2 of 3)" in s, 10, "one epoch back")
        tmux("send-keys", "-t", "pv", "b")
        text = tmux.wait("pv", lambda s: "lmsa: epoch 1 (1 of 3)" in s, 10, "the first epoch")
        assert "epoch 3 (newest" not in text
        tmux("send-keys", "-t", "pv", "f")
        tmux.wait("pv", lambda s: "lmsa: epoch 2 (2 of 3)" in s, 10, "one epoch forward")
        tmux("send-keys", "-t", "pv", "n")
        tmux.wait("pv", lambda s: "image 2 of 4" in s, 10, "the next image")
        tmux("send-keys", "-t", "pv", "Escape")
        tmux.wait("pv", lambda s: "image | truth | prediction | errors" not in s, 10, "the previews closed")
        tmux.wait("pv", lambda s: "finished" in s, 120, "the run finished")
        tmux("send-keys", "-t", "pv", "q")
        tmux.wait("pv", lambda s: "__EXIT__0" in s, 30, "segwatch to exit")
    finally:
        if trainer_alive(run_dir):
            os.kill(int((run_dir / "trainer.pid").read_text()), signal.SIGKILL)
