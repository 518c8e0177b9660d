"""Reading a run's mask previews (previews/index.json, previews/epoch_NNNN.png; docs/run-directory.md).

Untrusted like every run-directory file: the folder must be a real directory (not a link), each file
is read through :mod:`app.runlib.safeio` (no link followed, no FIFO waited on, size-capped), and a
PNG is decoded (PIL, imported here only when a preview is asked for) only if its declared size is
small. Anything wrong raises :class:`safeio.Refused` (one line naming the file) or ``FileNotFoundError``.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runlib import safeio

INDEX_CAP = 64 * 1024
PNG_CAP = 4 << 20  # bytes; ours are ~40-400 KB
MAX_SIDE = 4096  # px; a preview is 4 tiles of <= 128 px wide, a few rows high
COLUMNS = ("image", "truth", "prediction", "errors")


@dataclass
class Index:
    epochs: list[int]  # on disk, ascending
    rows: list[int]  # height in px of each image's row
    small_parts: list[list[int]]  # small classes present in each image's truth
    columns: tuple = COLUMNS


def folder(run_dir: str | os.PathLike) -> Path:
    """run_dir/previews, if it is a real directory; Refused if it is a link or not a directory."""
    p = Path(run_dir) / "previews"
    st = os.lstat(p)  # FileNotFoundError when there are none (yet)
    if not stat.S_ISDIR(st.st_mode):
        raise safeio.Refused(p, f"is {safeio.kind_of(st.st_mode)}, not a directory")
    return p


def _ints(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def read_index(run_dir: str | os.PathLike) -> Index:
    path = folder(run_dir) / "index.json"
    d = safeio.load_json(path, max_bytes=INDEX_CAP)
    if not isinstance(d, dict) or d.get("v") != 1:
        raise safeio.Refused(path, "is not a version-1 previews index")
    epochs, rows = d.get("epochs"), d.get("rows")
    if not (isinstance(epochs, list) and all(_ints(e, 0, 10**6) for e in epochs)):
        raise safeio.Refused(path, "has no valid 'epochs' list (integers)")
    if not (isinstance(rows, list) and 0 < len(rows) <= 64 and all(isinstance(r, dict) for r in rows)
            and all(_ints(r.get("height"), 1, MAX_SIDE) for r in rows)):
        raise safeio.Refused(path, "has no valid 'rows' list (objects with a height in px)")
    small = [[c for c in r.get("small_parts", []) if _ints(c, 0, 255)] if isinstance(r.get("small_parts"), list)
             else [] for r in rows]
    return Index(sorted(set(epochs)), [r["height"] for r in rows], small)


def png_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    return folder(run_dir) / f"epoch_{int(epoch):04d}.png"


def read_png(run_dir: str | os.PathLike, epoch: int) -> bytes:
    return safeio.read_bytes(png_path(run_dir, epoch), max_bytes=PNG_CAP)


def decode(data: bytes, path: str | os.PathLike = "preview.png") -> Any:
    """A PIL RGB image from PNG bytes; Refused for anything that is not a small PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data))
        if im.format != "PNG":
            raise safeio.Refused(path, f"is {im.format or 'not an image'}, not a PNG")
        if max(im.size) > MAX_SIDE:
            raise safeio.Refused(path, f"is {im.size[0]}x{im.size[1]} px (at most {MAX_SIDE} on a side)")
        return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        if isinstance(e, safeio.Refused):
            raise
        raise safeio.Refused(path, f"is not a readable PNG ({e})") from None


def row(image: Any, index: Index, i: int) -> Any:
    """Image ``i``'s row (its 4 tiles) cropped from an epoch's picture."""
    top = sum(index.rows[:i])
    h = index.rows[i]
    return image.crop((0, top, image.size[0], min(top + h, image.size[1])))
