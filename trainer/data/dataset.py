"""torch side of the data package: SegDataset and build_datasets."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .augment import IMAGE_MEAN, IMAGE_STD, Augment
from .errors import DataError, data_error
from .folders import CelebAMaskHQDataset, MiniChallengeDataset
from .synthetic import GENERATOR_VERSION, SyntheticFaces

_MEAN = torch.tensor(IMAGE_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGE_STD, dtype=torch.float32).view(3, 1, 1)
_AUG_STREAM = 0xA06  # separates augmentation seeds from synthetic-sample seeds


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW, scaled to [0, 1] then normalised with the
    fixed IMAGE_MEAN / IMAGE_STD."""
    if not image.flags.writeable or not image.flags.c_contiguous:
        image = np.array(image)           # torch.from_numpy wants a writable array
    x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
    return x.sub_(_MEAN).div_(_STD).contiguous()


class SegDataset(Dataset):
    """Wrap a raw source (``__len__`` + ``get_raw(i) -> (uint8 HxWx3, uint8 HxW)``)
    into ``(float32 3xHxW normalised image, uint8 HxW mask)`` samples. Masks stay uint8
    (class ids and the ignore index all fit) until the trainer has moved them to the device,
    where it makes them int64: 8x less to copy and pin per batch.

    Augmentation randomness is a ``np.random.Generator`` seeded from
    (seed, epoch, index), so epoch e of a run is reproducible whatever the number
    of workers.

    Two ways to say which epoch and which augmentation settings a sample gets:

    - ``ds[i]`` uses ``self.epoch`` (``set_epoch(e)``) and ``self.augment`` as they are in
      the process that reads it: a DataLoader worker has its own copy, taken when it forks.
    - ``ds[(i, epoch, params)]`` carries them in the index (``params``: ``Augment.params()``
      as a tuple of items, or None for none): what the trainer's batch sampler yields, so
      persistent workers see every epoch and every live augmentation change made in the main
      process (the sampler runs there) without being forked again.
    """

    def __init__(self, source, augment: Augment | None = None, seed: int = 0):
        self.source = source
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            i, epoch, params = int(key[0]), int(key[1]), key[2]
            augment = None if params is None else self._augment_for(params)
        else:
            i, epoch, augment = int(key), self.epoch, self.augment
        image, mask = self.source.get_raw(i)
        if augment is not None:
            rng = np.random.default_rng([self.seed, epoch, i, _AUG_STREAM])
            image, mask = augment(image, mask, rng)
        return to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))

    def _augment_for(self, params: tuple) -> Augment:
        cached = getattr(self, "_aug_cache", None)
        if cached is None or cached[0] != params:
            cached = (params, Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in params}))
            self._aug_cache = cached
        return cached[1]


class Resized:
    """A raw source resized to ``size`` x ``size``: image BILINEAR (Pillow's
    resize antialiases when shrinking), mask NEAREST. Non-square inputs are
    stretched (CelebA-HQ images are square).

    ``native_masks=True`` (the validation split) keeps each mask at its own
    size: validation is scored as the organisers score, against the
    full-resolution masks, whatever the training size (the logits are upsampled
    to each mask's size; trainer/valscore.py)."""

    def __init__(self, source, size: int, native_masks: bool = False):
        self.source, self.size, self.native_masks = source, int(size), bool(native_masks)

    def __len__(self) -> int:
        return len(self.source)

    def _mask(self, mask):
        if not self.native_masks and mask.shape != (self.size, self.size):
            mask = np.array(Image.fromarray(mask).resize((self.size, self.size), Image.NEAREST))
        return mask

    def get_raw(self, i: int):
        image, mask = self.source.get_raw(i)
        if image.shape[:2] != (self.size, self.size):
            image = np.array(Image.fromarray(image).resize((self.size, self.size),
                                                             Image.BILINEAR))
        return image, self._mask(mask)

    def get_mask(self, i: int):
        get = getattr(self.source, "get_mask", None)
        return self._mask(get(i) if get is not None else self.source.get_raw(i)[1])

    @property
    def cache_key(self) -> str:
        return f"{self.source.cache_key}:resized={self.size}" + (":native-masks" if self.native_masks else "")

    def describe(self) -> dict:
        return {**self.source.describe(), "image_size": self.size}


def collate_native(batch):
    """DataLoader collate for validation: images stacked; masks stacked when they share one size,
    else a list of HxW tensors (masks at their own sizes)."""
    images = torch.stack([b[0] for b in batch])
    masks = [b[1] for b in batch]
    if all(m.shape == masks[0].shape for m in masks):
        return images, torch.stack(masks)
    return images, masks


def detect_format(root: str) -> str:
    """'mini' if ``root/train/images`` exists, 'celebamask' if ``root/CelebA-HQ-img``
    and ``root/CelebAMask-HQ-mask-anno`` exist; DataError otherwise."""
    root = os.path.abspath(str(root))
    where = f"data root {root!r}"
    if not os.path.isdir(root):
        raise data_error(where, [f"root folder does not exist: {root}"])
    mini = os.path.isdir(os.path.join(root, "train", "images"))
    celeb = all(os.path.isdir(os.path.join(root, d)) for d in
                (CelebAMaskHQDataset.IMG_DIR, CelebAMaskHQDataset.ANNO_DIR))
    if mini and celeb:
        raise data_error(where, ["both layouts found (train/images/ and CelebA-HQ-img/); "
                                 "set format to 'mini' or 'celebamask'"])
    if mini:
        return "mini"
    if celeb:
        return "celebamask"
    with os.scandir(root) as it:
        found = sorted(e.name + ("/" if e.is_dir() else "") for e in it)[:10]
    raise data_error(where, [
        "unknown layout: expected train/images/ + train/masks/ + val/... (mini challenge) "
        "or CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/ (original CelebAMask-HQ)",
        f"root holds: {', '.join(found) or 'nothing'}"])


#: data.image_size unset on the built-in synthetic data (real data: its native size)
SYNTHETIC_IMAGE_SIZE = 64
LAYOUTS = {"mini": "mini-challenge (train/ val/ images + masks)",
           "celebamask": "original CelebAMask-HQ (CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/ part masks)"}


def _open_splits(kind: str, root: str, check: bool):
    """Both splits' folder datasets; the problems of EVERY split in one DataError."""
    cls = MiniChallengeDataset if kind == "mini" else CelebAMaskHQDataset
    out, errors = [], []
    for split in ("train", "val"):
        try:
            out.append(cls(root, split, full_check=check))
        except DataError as e:
            errors.append((split, e))
    if errors:
        if len(errors) == 2 and errors[0][1].problems == errors[1][1].problems:
            errors = [("train and val", errors[0][1])]  # one layout problem seen from both splits
        where = f"{LAYOUTS[kind].split(' (')[0]} dataset at {os.path.abspath(root)!r}"
        lines = [f"{where}: {sum(len(e.problems) or 1 for _, e in errors)} problem(s)"]
        problems = []
        for split, e in errors:
            body = str(e).splitlines()[1:] or [f"  - {e}"]
            lines.append(f"  {split}: {len(e.problems) or 1} problem(s)")
            lines += ["  " + ln for ln in body]
            problems += [f"{split}: {p}" for p in (e.problems or [str(e)])]
        raise DataError("\n".join(lines), problems)
    return out


def native_size(root: str, kind: str, splits) -> int:
    """The one square mask size of the data (every split), if it is a valid training size."""
    sizes: dict = {}
    for ds in splits:
        for (w, h), n in ds.mask_sizes.items():
            sizes[(w, h)] = sizes.get((w, h), 0) + n
    if len(sizes) == 1:
        (w, h), = sizes
        if w == h and 32 <= w <= 2048 and w % 32 == 0:
            return w
    seen = ", ".join(f"{w}x{h} ({n} masks)" for (w, h), n in sorted(sizes.items(), key=lambda x: -x[1])[:5])
    raise DataError(f"data.image_size is unset, so segwatch trains at the masks' own size, but the masks at "
                    f"{os.path.abspath(root)!r} are {seen or 'of no size'}: set data.image_size "
                    "(allowed: a multiple of 32 in 32..2048)", [f"mask sizes: {seen}"])


def build_datasets(*, root: str | None, format: str = "auto", image_size: int | None = None,
                   synthetic_train: int = 1000, synthetic_val: int = 100, seed: int = 0,
                   augment: Augment | None = None, full_check: bool | None = None):
    """Return ``(train_ds, val_ds, description)``. Validation is never augmented.

    ``root`` None (or "") -> procedural synthetic faces, and
    ``description["synthetic"]`` is True: the trainer must say so loudly.
    Otherwise the layout is ``format`` ('mini' | 'celebamask' | 'auto' = detect),
    training images/masks resized to ``image_size`` (None: the masks' own
    size, which must be one square size). Validation images are resized the
    same way but its masks stay at their own size (validation is scored
    against the full-resolution masks). ``full_check`` (decode every file of
    every split up front; the problems of all splits are reported together)
    defaults to True for both layouts.
    """
    if root is None or str(root) == "":
        size = SYNTHETIC_IMAGE_SIZE if image_size is None else image_size
        # deterministic samples: generated once, kept in memory (1,124 x 64 px is ~18 MB)
        train = SyntheticFaces(synthetic_train, size, seed, "train", cache=True)
        val = SyntheticFaces(synthetic_val, size, seed, "val", cache=True)
        desc = {"synthetic": True, "kind": "synthetic", "root": None, "format": "synthetic",
                "layout": "built-in synthetic faces", "image_size": size,
                "image_size_source": "synthetic default" if image_size is None else "data.image_size",
                "native_size": size, "train_count": len(train), "val_count": len(val),
                "seed": seed, "generator_version": GENERATOR_VERSION,
                "warning": "NO DATA ROOT CONFIGURED: training on procedural synthetic faces; "
                           "scores say nothing about the real challenge"}
        return SegDataset(train, augment, seed), SegDataset(val, None, seed), desc
    kind = detect_format(root) if format == "auto" else format
    if kind not in LAYOUTS:
        raise DataError(f"unknown data format {format!r}: use 'auto', 'mini' or 'celebamask'")
    check = True if full_check is None else bool(full_check)
    train, val = _open_splits(kind, str(root), check)
    native = native_size(str(root), kind, (train, val)) if image_size is None else None
    size = native if image_size is None else image_size
    sizes: dict[str, int] = {}
    for ds in (train, val):
        for (w, h), n in ds.mask_sizes.items():
            sizes[f"{w}x{h}"] = sizes.get(f"{w}x{h}", 0) + n
    if native is None and len(sizes) == 1:
        w, h = map(int, next(iter(sizes)).split("x"))
        native = w if w == h else None
    desc = {"synthetic": False, "kind": kind, "layout": LAYOUTS[kind], "root": os.path.abspath(str(root)),
            "format": format, "image_size": size,
            "image_size_source": "native: data.image_size unset" if image_size is None else "data.image_size",
            "native_size": native,  # None: the masks are not all one square size
            "mask_sizes": sizes, "val_scored_at": "each mask's own size", "train_count": len(train),
            "val_count": len(val), "seed": seed, "full_check": check}
    if kind == "celebamask":
        desc["val_fraction"] = val.val_fraction
    train, val = Resized(train, size), Resized(val, size, native_masks=True)
    return SegDataset(train, augment, seed), SegDataset(val, None, seed), desc
