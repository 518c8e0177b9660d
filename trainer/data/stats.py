"""Class pixel frequencies (cached) and class weights. numpy only."""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings

import numpy as np

from ..runfiles import open_regular
from trainer.core.classes import NUM_CLASSES

def _masks(source):
    get = getattr(source, "get_mask", None)
    for i in range(len(source)):
        yield get(i) if get is not None else source.get_raw(i)[1]


def class_frequencies(train_source, cache_path: str | None = None) -> list[float]:
    """Fraction of labelled pixels per class (19 floats summing to 1) over all
    un-augmented training masks of ``train_source`` (anything with ``__len__``
    and ``get_raw``; a ``get_mask(i)`` method is used when present to skip
    image decoding; a SegDataset is unwrapped to its raw source, so augmentation
    never enters). Ignore (255) pixels are left out.

    With ``cache_path`` the result is stored in a JSON file holding a dict
    ``{source.cache_key: {"frequencies": [...], "samples": n, "pixels": p}}``,
    so several datasets can share one file and a different dataset (other root,
    split, size, seed, changed mask files) never reuses another's entry. A source
    without ``cache_key`` is computed every time. An unreadable cache file is
    replaced (with a warning).
    """
    if not hasattr(train_source, "get_raw") and hasattr(train_source, "source"):
        train_source = train_source.source          # a SegDataset: use its raw source
    key = getattr(train_source, "cache_key", None)
    cache = {}
    if cache_path and key:
        try:
            # in the run directory by default: no link followed, no FIFO waited on (docs/trust.md)
            with os.fdopen(open_regular(cache_path, max_bytes=16 << 20)) as f:
                cache = json.load(f)
            if not isinstance(cache, dict):
                raise ValueError("top level is not an object")
            entry = cache.get(key)
            if entry is not None:
                freqs = [float(x) for x in entry["frequencies"]]
                if len(freqs) == NUM_CLASSES and all(math.isfinite(x) for x in freqs):
                    return freqs
        except FileNotFoundError:
            cache = {}
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            warnings.warn(f"ignoring unreadable class-frequency cache {cache_path}: {e}")
            cache = {}

    counts = np.zeros(256, np.int64)
    n = 0
    for mask in _masks(train_source):
        counts += np.bincount(np.asarray(mask, np.uint8).ravel(), minlength=256)
        n += 1
    total = int(counts[:NUM_CLASSES].sum())
    freqs = (counts[:NUM_CLASSES] / total).tolist() if total else [0.0] * NUM_CLASSES

    if cache_path and key:
        cache[key] = {"frequencies": freqs, "samples": n, "pixels": total}
        folder = os.path.dirname(os.path.abspath(cache_path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".freqs-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, cache_path)
    return freqs


def class_weights_from_frequencies(freqs, *, power: float = 0.5, max_weight: float = 10.0,
                                   min_weight: float = 0.1) -> list[float]:
    """Inverse-power frequency weights ``w_c ~ f_c ** -power`` (default: inverse
    square root), normalised so the pixel-weighted mean ``sum_c f_c * w_c`` is 1
    (a weighted CE has the same scale as plain CE on this data, so switching
    weights on or off mid-run does not make the loss curve jump), then clipped to
    [min_weight, max_weight]. Classes with frequency 0 (absent from training)
    get 1.0: they never occur as targets, and a huge weight would be meaningless.

    On the real mini-challenge shares this gives about 0.6 for hair/background/
    skin, ~7 for eyes and 10 (clipped) for neck_l.
    """
    f = np.asarray(freqs, np.float64)
    if f.ndim != 1 or not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"frequencies must be finite and >= 0, got {freqs!r}")
    w = np.ones_like(f)
    present = f > 0
    if present.any():
        w[present] = f[present] ** -power
        w[present] /= float((f[present] * w[present]).sum()) / float(f[present].sum())
        w[present] = np.clip(w[present], min_weight, max_weight)
    return w.tolist()
