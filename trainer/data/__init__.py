"""Data package for the segwatch trainer.

Public API (all importable from ``trainer.data``):

- constants: NUM_CLASSES, CLASS_NAMES, FLIP_PERM, SMALL_CLASSES, IGNORE_INDEX
  (``trainer.core.classes``, pure Python), DataError (``.errors``)
- SegDataset, build_datasets, to_tensor, detect_format, Resized  (``.dataset``, torch)
- class_frequencies, class_weights_from_frequencies  (``.stats``)
- Augment, IMAGE_MEAN, IMAGE_STD  (``.augment``)
- SyntheticFaces, measure_class_shares  (``.synthetic``)
- MiniChallengeDataset, CelebAMaskHQDataset  (``.folders``)

Everything but the pure-Python constants and DataError is imported lazily
(PEP 562), so ``import trainer.core.classes`` from the UI process, which must
never import torch, stays free of torch and numpy.
"""

from __future__ import annotations

import importlib

from trainer.core.classes import CLASS_NAMES, FLIP_PERM, IGNORE_INDEX, NUM_CLASSES, SMALL_CLASSES
from .errors import DataError

_LAZY = {
    "SegDataset": "dataset", "build_datasets": "dataset", "to_tensor": "dataset",
    "detect_format": "dataset", "Resized": "dataset",
    "class_frequencies": "stats", "class_weights_from_frequencies": "stats",
    "Augment": "augment", "IMAGE_MEAN": "augment", "IMAGE_STD": "augment",
    "SyntheticFaces": "synthetic", "measure_class_shares": "synthetic",
    "MiniChallengeDataset": "folders", "CelebAMaskHQDataset": "folders",
}

__all__ = ["NUM_CLASSES", "CLASS_NAMES", "FLIP_PERM", "SMALL_CLASSES", "IGNORE_INDEX",
           "DataError", *_LAZY]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
