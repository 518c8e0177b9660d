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
    into ``(float32 3xHxW normalised image, int64 HxW mask)`` samples.

    Augmentation randomness is a ``np.random.Generator`` seeded from
    (seed, epoch, index), so epoch e of a run is reproducible whatever the number
    of workers. Call ``set_epoch(e)`` before iterating an epoch.

    DataLoader workers get a pickled copy of this object when an iteration
    starts. With ``persistent_workers=False`` (required for live changes) the
    copy is taken anew every epoch, so ``set_epoch`` and changes to
    ``self.augment``'s attributes made in the main process between epochs take
    effect at the next epoch. With persistent workers they would be ignored.
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

    def __getitem__(self, i: int):
        i = int(i)
        image, mask = self.source.get_raw(i)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i, _AUG_STREAM])
            image, mask = self.augment(image, mask, rng)
        return to_tensor(image), torch.from_numpy(np.asarray(mask, dtype=np.int64))


class Resized:
    """A raw source resized to ``size`` x ``size``: image BILINEAR (Pillow's
    resize antialiases when shrinking), mask NEAREST. Non-square inputs are
    stretched (CelebA-HQ images are square)."""

    def __init__(self, source, size: int):
        self.source, self.size = source, int(size)

    def __len__(self) -> int:
        return len(self.source)

    def _mask(self, mask):
        if mask.shape != (self.size, self.size):
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
        return f"{self.source.cache_key}:resized={self.size}"

    def describe(self) -> dict:
        return {**self.source.describe(), "image_size": self.size}


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


def build_datasets(*, root: str | None, format: str = "auto", image_size: int = 128,
                   synthetic_train: int = 1000, synthetic_val: int = 100, seed: int = 0,
                   augment: Augment | None = None, full_check: bool | None = None):
    """Return ``(train_ds, val_ds, description)``. Validation is never augmented.

    ``root`` None (or "") -> procedural synthetic faces, and
    ``description["synthetic"]`` is True: the trainer must say so loudly.
    Otherwise the layout is ``format`` ('mini' | 'celebamask' | 'auto' = detect),
    images/masks resized to ``image_size``. ``full_check`` (decode every file up
    front) defaults to True for the mini layout (about 1100 files, a few
    seconds) and False for the full CelebAMask-HQ (30k samples; read errors
    then surface as DataError when the bad sample is loaded).
    """
    if root is None or str(root) == "":
        # deterministic samples: generated once, kept in memory (480 x 128 px is ~31 MB)
        train = SyntheticFaces(synthetic_train, image_size, seed, "train", cache=True)
        val = SyntheticFaces(synthetic_val, image_size, seed, "val", cache=True)
        desc = {"synthetic": True, "kind": "synthetic", "root": None, "format": "synthetic",
                "image_size": image_size, "train_count": len(train), "val_count": len(val),
                "seed": seed, "generator_version": GENERATOR_VERSION,
                "warning": "NO DATA ROOT CONFIGURED: training on procedural synthetic faces; "
                           "scores say nothing about the real challenge"}
    else:
        kind = detect_format(root) if format == "auto" else format
        if kind == "mini":
            check = True if full_check is None else full_check
            train, val = (MiniChallengeDataset(root, s, full_check=check) for s in ("train", "val"))
        elif kind == "celebamask":
            check = bool(full_check)
            train, val = (CelebAMaskHQDataset(root, s, full_check=check) for s in ("train", "val"))
        else:
            raise DataError(f"unknown data format {format!r}: use 'auto', 'mini' or 'celebamask'")
        train, val = Resized(train, image_size), Resized(val, image_size)
        desc = {"synthetic": False, "kind": kind, "root": os.path.abspath(str(root)),
                "format": format, "image_size": image_size, "train_count": len(train),
                "val_count": len(val), "seed": seed, "full_check": check}
    return SegDataset(train, augment, seed), SegDataset(val, None, seed), desc
