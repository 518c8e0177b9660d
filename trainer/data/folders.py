"""Real data on disk: the mini-challenge layout and the original CelebAMask-HQ
layout.

Both validate the layout up front (in ``__init__``) and raise ``DataError``
listing the first problems; file contents (decodable, mask mode, sizes, label
values) are checked when a sample is read, and up front as well with
``full_check=True`` (the trainer's default for both layouts). A duplicate stem
names both files. A bad sample is never skipped and there is never a
fallback to synthetic data.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction

import numpy as np
from PIL import Image

from trainer.core.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from .errors import DataError, data_error

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _rel(path: str, root: str) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path


def _listdir(folder: str):
    """Visible regular files in ``folder`` as (name, path), sorted."""
    with os.scandir(folder) as it:
        return sorted((e.name, e.path) for e in it
                      if not e.name.startswith(".") and e.is_file())


def read_image(path: str) -> np.ndarray:
    """Decode an image fully as uint8 RGB; DataError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("RGB"))
    except _READ_ERRORS as e:
        raise DataError(f"unreadable image file {path}: {e}", [f"unreadable: {path}"]) from e


def read_label_mask(path: str) -> np.ndarray:
    """Read a class-id mask (mode P or L, pixel value = class id) without any
    colour conversion, and check its values are < 19 or 255."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise DataError(
                    f"mask {path} has mode {im.mode}; expected a single-channel 'P' or 'L' "
                    "PNG whose pixel value is the class id (an RGB colour mask is not usable)",
                    [f"bad mode {im.mode}: {path}"])
            mask = np.array(im)
    except _READ_ERRORS as e:
        raise DataError(f"unreadable mask file {path}: {e}", [f"unreadable: {path}"]) from e
    check_mask_values(mask, path)
    return mask


def check_mask_values(mask: np.ndarray, path: str) -> None:
    bad = (mask >= NUM_CLASSES) & (mask != IGNORE_INDEX)
    if bad.any():
        vals = np.unique(mask[bad])[:10].tolist()
        raise DataError(
            f"mask {path} has label values {vals} (valid: 0..{NUM_CLASSES - 1}, "
            f"{IGNORE_INDEX} = ignore) in {int(bad.sum())} pixels",
            [f"bad mask values {vals}: {path}"])


def _header(path: str):
    """(size, mode) from the file header only; raises DataError if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except _READ_ERRORS as e:
        raise DataError(f"unreadable file {path}: {e}", [f"unreadable: {path}"]) from e


def sizes_text(sizes: Counter) -> dict:
    """``{"512x512": 998, "500x500": 2}``: mask sizes and how many masks have each."""
    return {f"{w}x{h}": n for (w, h), n in sizes.most_common()}


def _fingerprint(items) -> str:
    h = hashlib.sha1()
    for it in items:
        h.update(repr(it).encode())
    return h.hexdigest()[:16]


class MiniChallengeDataset:
    """``root/<split>/images/<stem>.jpg`` + ``root/<split>/masks/<stem>.png``.

    ``__init__`` checks the layout and every file header (readable, mask mode
    P/L, mask size == image size); ``full_check=True`` also decodes every file
    and checks mask values (about 4 ms per 512 px pair).
    """

    kind = "mini"

    def __init__(self, root: str, split: str, *, full_check: bool = False):
        self.root, self.split = os.path.abspath(str(root)), split
        where = f"mini-challenge dataset at {self.root!r} (split {split!r})"
        if not os.path.isdir(self.root):
            raise data_error(where, [f"root folder does not exist: {self.root}"])
        sdir = os.path.join(self.root, split)
        idir, mdir = os.path.join(sdir, "images"), os.path.join(sdir, "masks")
        problems = [f"folder missing: {_rel(d, self.root)}/"
                    for d in (sdir, idir, mdir) if not os.path.isdir(d)]
        if not os.path.isdir(sdir):
            with os.scandir(self.root) as it:
                found = sorted(e.name for e in it if e.is_dir())[:10]
            raise data_error(where, [f"split folder missing: {sdir} (root has folders: "
                                     f"{', '.join(found) or 'none'})"])
        if problems:
            raise data_error(where, problems)

        images, masks = {}, {}
        for name, path in _listdir(idir):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTS:
                if stem in images:
                    problems.append(f"two images with stem {stem!r}: {_rel(images[stem], self.root)} and "
                                    f"{_rel(path, self.root)} (keep one)")
                images[stem] = path
        for name, path in _listdir(mdir):
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".png":
                if stem in masks:
                    problems.append(f"two masks with stem {stem!r}: {_rel(masks[stem], self.root)} and "
                                    f"{_rel(path, self.root)} (keep one)")
                masks[stem] = path
        for stem in sorted(set(images) - set(masks)):
            problems.append(f"image without mask: {_rel(images[stem], self.root)} "
                            f"(expected {split}/masks/{stem}.png)")
        for stem in sorted(set(masks) - set(images)):
            problems.append(f"mask without image: {_rel(masks[stem], self.root)}")
        stems = sorted(set(images) & set(masks))
        if not images and not masks:
            problems.append(f"no samples: {split}/images/ and {split}/masks/ hold no "
                            f"{'/'.join(IMAGE_EXTS)} images or .png masks")
        self.samples = [(s, images[s], masks[s]) for s in stems]

        self.mask_sizes: Counter = Counter()  # (width, height) -> masks of that size
        for stem, ipath, mpath in self.samples:
            try:
                self.mask_sizes[self._check(ipath, mpath, full=full_check)] += 1
            except DataError as e:
                problems.append(str(e))
        if problems:
            raise data_error(where, problems)
        self._fp = _fingerprint((s, os.path.getsize(m), os.path.getmtime(m))
                                for s, _, m in self.samples)

    def _check(self, ipath, mpath, full):
        (isz, _), (msz, mmode) = _header(ipath), _header(mpath)
        if mmode not in ("P", "L"):
            raise DataError(f"mask {mpath} has mode {mmode}; expected single-channel "
                            "'P' or 'L' with class ids")
        if isz != msz:
            raise DataError(f"size mismatch: {ipath} is {isz[0]}x{isz[1]} but "
                            f"{mpath} is {msz[0]}x{msz[1]}")
        if full:
            read_image(ipath)
            read_label_mask(mpath)
        return msz

    def __len__(self) -> int:
        return len(self.samples)

    def get_raw(self, i: int):
        stem, ipath, mpath = self.samples[i]
        image, mask = read_image(ipath), read_label_mask(mpath)
        if image.shape[:2] != mask.shape:
            raise DataError(f"size mismatch: {ipath} is {image.shape[1]}x{image.shape[0]} "
                            f"but {mpath} is {mask.shape[1]}x{mask.shape[0]}")
        return image, mask

    def get_mask(self, i: int) -> np.ndarray:
        return read_label_mask(self.samples[i][2])

    @property
    def cache_key(self) -> str:
        return f"mini:{self.root}:{self.split}:n={len(self)}:fp={self._fp}"

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.root, "split": self.split, "count": len(self),
                "mask_sizes": sizes_text(self.mask_sizes)}


_PART_RE = re.compile(r"^(\d+)_([a-z_]+)\.png$")
_PART_ID = {name: i for i, name in enumerate(CLASS_NAMES) if i > 0}


class CelebAMaskHQDataset:
    """Original layout: ``root/CelebA-HQ-img/<k>.jpg`` and
    ``root/CelebAMask-HQ-mask-anno/<k // 2000>/<%05d>_<part>.png``.

    Part masks (binary, any non-zero pixel counts, as in the official
    ``g_mask.py``) are merged by painting parts in class-id order, later ids
    over earlier ones. Images (1024 px) are resized to the mask size (512).
    Split by index: the images are sorted by k and every position where
    ``floor((p + 1) * val_fraction)`` steps up goes to ``val`` (evenly spread,
    stable). Note this is not the official CelebA train/val/test partition.
    ``__init__`` checks the layout by name; ``full_check=True`` (the trainer's
    default) also decodes every image and part mask of the split up front, in
    worker processes when there are many (30k samples x ~12 files).
    """

    kind = "celebamask"
    IMG_DIR, ANNO_DIR = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno"

    def __init__(self, root: str, split: str, val_fraction: float = 0.1, *,
                 full_check: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"CelebAMask-HQ split must be 'train' or 'val', not {split!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.root, self.split, self.val_fraction = os.path.abspath(str(root)), split, val_fraction
        where = f"CelebAMask-HQ dataset at {self.root!r} (split {split!r})"
        if not os.path.isdir(self.root):
            raise data_error(where, [f"root folder does not exist: {self.root}"])
        idir, adir = (os.path.join(self.root, d) for d in (self.IMG_DIR, self.ANNO_DIR))
        problems = [f"folder missing: {d}/" for d in (self.IMG_DIR, self.ANNO_DIR)
                    if not os.path.isdir(os.path.join(self.root, d))]
        if problems:
            raise data_error(where, problems)

        images = {}
        for name, path in _listdir(idir):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTS:
                if not stem.isdigit():
                    problems.append(f"image name is not an index: {self.IMG_DIR}/{name}")
                elif int(stem) in images:
                    problems.append(f"two images for index {int(stem)}: {_rel(images[int(stem)], self.root)} and "
                                    f"{_rel(path, self.root)} (keep one)")
                else:
                    images[int(stem)] = path
        parts: dict[int, dict[int, str]] = {}
        with os.scandir(adir) as it:
            sub = sorted(e.name for e in it if e.is_dir() and e.name.isdigit())
        for folder in sub:
            for name, path in _listdir(os.path.join(adir, folder)):
                m = _PART_RE.match(name)
                if not m:
                    if name.lower().endswith(".png"):
                        problems.append(f"unexpected mask file name: {_rel(path, self.root)}")
                    continue
                k, part = int(m.group(1)), m.group(2)
                if part not in _PART_ID:
                    problems.append(f"unknown part {part!r}: {_rel(path, self.root)}")
                elif k // 2000 != int(folder):
                    problems.append(f"mask in wrong folder (expected {k // 2000}/): "
                                    f"{_rel(path, self.root)}")
                elif _PART_ID[part] in parts.get(k, {}):
                    problems.append(f"two {part} masks for index {k}: "
                                    f"{_rel(parts[k][_PART_ID[part]], self.root)} and {_rel(path, self.root)} (keep one)")
                else:
                    parts.setdefault(k, {})[_PART_ID[part]] = path
        for k in sorted(set(images) - set(parts)):
            problems.append(f"image without part masks: {_rel(images[k], self.root)} "
                            f"(expected {self.ANNO_DIR}/{k // 2000}/{k:05d}_<part>.png)")
        for k in sorted(set(parts) - set(images)):
            problems.append(f"part masks without image: {self.ANNO_DIR}/{k // 2000}/"
                            f"{k:05d}_*.png (no {self.IMG_DIR}/{k}.jpg)")
        keys = sorted(set(images) & set(parts))
        if not images and not parts:
            problems.append("no samples: no images and no part masks found")
        f = Fraction(val_fraction).limit_denominator(10000)
        is_val = [(p + 1) * f // 1 > p * f // 1 for p in range(len(keys))]
        self.samples = [(k, images[k], parts[k]) for k, v in zip(keys, is_val)
                        if v == (split == "val")]
        if not problems and not self.samples:
            problems.append(f"no samples in split {split!r} ({len(keys)} images in all, "
                            f"val_fraction={val_fraction})")
        self.mask_sizes = Counter()
        if full_check:
            # every file of this split decoded up front (as the mini layout does), so a truncated
            # part mask is named here (exit 2) rather than crashing the run mid-epoch
            for size, errs in _check_all(self.samples):
                problems += errs
                if size is not None:
                    self.mask_sizes[size] += 1
        elif self.samples:
            first = self.samples[0][2]
            try:
                self.mask_sizes[_header(first[min(first)])[0]] += 1
            except DataError as e:
                problems.append(str(e))
        if problems:
            raise data_error(where, problems)
        self._fp = _fingerprint((k, sorted(p)) for k, _, p in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def _merged(self, i: int) -> np.ndarray:
        k, _, parts = self.samples[i]
        mask = None
        for cls in sorted(parts):
            path = parts[cls]
            try:
                with Image.open(path) as im:
                    im.load()
                    part = np.asarray(im.convert("L")) != 0
            except _READ_ERRORS as e:
                raise DataError(f"unreadable part mask {path}: {e}") from e
            if mask is None:
                mask, first = np.zeros(part.shape, np.uint8), path
            elif part.shape != mask.shape:
                raise DataError(f"size mismatch: part mask {path} is {part.shape[1]}x"
                                f"{part.shape[0]} but {first} is {mask.shape[1]}x{mask.shape[0]}")
            mask[part] = cls
        return mask

    def get_raw(self, i: int):
        _, ipath, _ = self.samples[i]
        mask = self._merged(i)
        image = read_image(ipath)
        h, w = mask.shape
        if image.shape[:2] != (h, w):
            image = np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        return image, mask

    def get_mask(self, i: int) -> np.ndarray:
        return self._merged(i)

    @property
    def cache_key(self) -> str:
        return (f"celebamask:{self.root}:{self.split}:vf={self.val_fraction}:"
                f"n={len(self)}:fp={self._fp}")

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.root, "split": self.split, "count": len(self),
                "val_fraction": self.val_fraction, "mask_sizes": sizes_text(self.mask_sizes)}


#: above this many samples the up-front check of the original layout decodes in worker processes
PARALLEL_CHECK_FROM = 256


def _check_sample(sample) -> tuple[tuple[int, int] | None, list[str]]:
    """Decode one original-layout sample fully: its image and every part mask; ``(mask size,
    problems)``. Part masks must share one size (the merged mask's)."""
    _, ipath, parts = sample
    errs, size, first = [], None, None
    try:
        read_image(ipath)
    except DataError as e:
        errs.append(str(e))
    for cls in sorted(parts):
        path = parts[cls]
        try:
            with Image.open(path) as im:
                im.load()
                psize = im.size
        except _READ_ERRORS as e:
            errs.append(f"unreadable part mask {path}: {e}")
            continue
        if size is None:
            size, first = psize, path
        elif psize != size:
            errs.append(f"size mismatch: part mask {path} is {psize[0]}x{psize[1]} but {first} is {size[0]}x{size[1]}")
    return size, errs


def _check_all(samples):
    if len(samples) < PARALLEL_CHECK_FROM:
        return [_check_sample(s) for s in samples]
    workers = max(1, min(16, os.cpu_count() or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_check_sample, samples, chunksize=64))
