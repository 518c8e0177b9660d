"""Mask previews: at each validation, the model's predictions for a few fixed validation images.

``previews/epoch_NNNN.png`` is one picture per epoch: a row per image, four tiles per row (image |
ground truth | prediction | errors), each tile at most ``TILE`` px on its long side. Masks are drawn
with ``CLASS_COLOURS``; the errors tile is the image greyed and darkened with every wrong pixel in
red, and bright yellow where the truth or the prediction is a small part (eyes, brows, lips, ears,
nose, mouth), so small-part errors show at a glance. ``previews/index.json`` says which images, the
layout and which epochs are on disk. Both are written atomically (temp file + rename, no link
followed); the first epoch and the latest ``KEEP`` are kept. Rank 0 only. See docs/run-directory.md.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data.augment import IMAGE_MEAN, IMAGE_STD
from trainer.core.classes import CLASS_COLOURS, IGNORE_INDEX, SMALL_CLASSES
from trainer.runfiles import UnsafeFile, describe, open_regular

IMAGES = 4  # images per preview
TILE = 128  # px, long side of one tile
KEEP = 30  # latest epochs kept on disk (and the first)
SCAN = 64  # validation images looked at when choosing
COLUMNS = ("image", "truth", "prediction", "errors")
ERR_ANY = (230, 40, 40)
ERR_SMALL = (255, 230, 0)

_PALETTE = np.array(list(CLASS_COLOURS) + [(0, 0, 0)] * (256 - len(CLASS_COLOURS)), dtype=np.uint8)
_SMALL = np.zeros(256, dtype=bool)
_SMALL[list(SMALL_CLASSES)] = True


def choose(val_ds: Any, n: int = IMAGES, scan: int = SCAN) -> list[tuple[int, list[int]]]:
    """[(index, small classes present)]: the images (of the first ``scan``) with the most small parts
    present, ties by index. Deterministic for a given validation split."""
    scored = []
    for i in range(min(len(val_ds), scan)):
        _, mask = val_ds[i]
        present = sorted(int(c) for c in torch.unique(mask).tolist() if c in SMALL_CLASSES)
        scored.append((-len(present), i, present))
    scored.sort()
    return sorted((i, present) for _, i, present in scored[:n])


def _tiles(image: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    """One row: 4 tiles side by side, uint8 H x 4W x 3, at the mask's size scaled to TILE."""
    h, w = mask.shape
    s = min(1.0, TILE / max(h, w))
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    img = image.float() * torch.tensor(IMAGE_STD).view(3, 1, 1) + torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    img = F.interpolate(img[None], size=(th, tw), mode="bilinear", align_corners=False)[0]
    img = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    near = lambda m: F.interpolate(m[None, None].float(), size=(th, tw), mode="nearest")[0, 0].long().numpy()  # noqa: E731
    gt, pr = near(mask).astype(np.uint8), near(pred).astype(np.uint8)
    wrong = (gt != pr) & (gt != IGNORE_INDEX)
    small = wrong & (_SMALL[gt] | _SMALL[pr])
    grey = (img.mean(axis=2, keepdims=True) * 0.45).astype(np.uint8).repeat(3, axis=2)
    err = grey.copy()
    err[wrong] = ERR_ANY
    err[small] = ERR_SMALL
    return np.concatenate([img, _PALETTE[gt], _PALETTE[pr], err], axis=1)


def _write_atomic(folder: Path, name: str, data: bytes) -> None:
    tmp = folder / f".{name}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, folder / name)


class Previews:
    """Chosen once per run (the same images on resume: the choice depends only on the split)."""

    def __init__(self, run_dir: Path, val_ds: Any, n: int = IMAGES):
        self.dir = Path(run_dir) / "previews"
        self.val_ds = val_ds
        self.chosen = choose(val_ds, n) if n > 0 else []
        self.failed: str | None = None  # why previews stopped (said once, in a warning)
        self.last_seconds = 0.0

    def _folder(self) -> Path:
        why = describe(self.dir)
        if why and not self.dir.is_dir():
            raise UnsafeFile(0, f"{why}; previews are not written there")
        if os.path.islink(self.dir):
            raise UnsafeFile(0, f"{self.dir} is a symbolic link; previews are not written through it")
        self.dir.mkdir(exist_ok=True)
        return self.dir

    def epochs_on_disk(self) -> list[int]:
        out = []
        for p in self.dir.glob("epoch_*.png"):
            try:
                out.append(int(p.stem.split("_", 1)[1]))
            except ValueError:
                continue
        return sorted(out)

    @torch.no_grad()
    def write(self, epoch: int, model: torch.nn.Module, device: torch.device, amp: bool = False) -> float:
        """Predict the chosen images and write epoch_NNNN.png + index.json. Returns the seconds it took.
        Raises OSError (UnsafeFile included) when the folder cannot be written."""
        if not self.chosen:
            return 0.0
        from PIL import Image

        t0 = time.perf_counter()
        folder = self._folder()
        was_training = model.training
        model.eval()
        rows = []
        try:
            for i, _ in self.chosen:
                image, mask = self.val_ds[i]
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(image[None].to(device))
                logits = F.interpolate(logits.float(), size=tuple(mask.shape), mode="bilinear", align_corners=False)
                rows.append(_tiles(image, mask, logits.argmax(1)[0].cpu()))
        finally:
            model.train(was_training)
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
        buf = io.BytesIO()
        Image.fromarray(np.concatenate(rows, axis=0)).save(buf, format="PNG", optimize=False, compress_level=6)
        name = f"epoch_{epoch:04d}.png"
        _write_atomic(folder, name, buf.getvalue())
        epochs = sorted(set(self.epochs_on_disk()) | {epoch})
        for old in epochs[1:-KEEP]:
            try:
                os.unlink(folder / f"epoch_{old:04d}.png")
            except FileNotFoundError:
                pass
        keep = [e for e in epochs if e == epochs[0] or e in epochs[-KEEP:]]
        index = {"v": 1, "columns": list(COLUMNS), "tile": TILE,
                 "rows": [{"index": i, "small_parts": present, "height": int(r.shape[0])}
                          for (i, present), r in zip(self.chosen, rows)],
                 "epochs": keep, "latest": epoch, "t": time.time()}
        _write_atomic(folder, "index.json", (json.dumps(index) + "\n").encode())
        self.last_seconds = time.perf_counter() - t0
        return self.last_seconds
