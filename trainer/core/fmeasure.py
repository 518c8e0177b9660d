"""The organisers' F-measure in numpy, torch-free (shared/domain.md; definitions in trainer/metrics.py).

``segwatch evaluate`` (the app, which never imports torch) scores PNG masks with
:func:`f_measure_numpy`; the trainer's :class:`trainer.metrics.FScoreMeter` forms its result with
the same :func:`_summarise`, so both give the same numbers for the same label maps.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from trainer.core.classes import IGNORE_INDEX, NUM_CLASSES

__all__ = ["EPS", "BETA", "f_measure_numpy"]

EPS = 1e-7
BETA = 1.0


def _f_from_conf(tp: Any, gt_count: Any, pred_count: Any, eps: float = EPS) -> Any:
    """F-beta from counts; works elementwise on numpy arrays and torch tensors alike."""
    precision = tp / (pred_count + eps)
    recall = tp / (gt_count + eps)
    b2 = BETA * BETA
    return (1.0 + b2) * precision * recall / (b2 * precision + recall + eps)


def _summarise(score_sum: float, images: int, class_f_sum: np.ndarray,
               class_count: np.ndarray, pooled: np.ndarray, eps: float = EPS) -> dict:
    """Turn accumulated statistics into the result dict (pure numpy)."""
    pooled = pooled.astype(np.float64)
    gt_count = pooled.sum(axis=1)
    f_pooled = _f_from_conf(np.diag(pooled), gt_count, pooled.sum(axis=0), eps)
    present = gt_count > 0
    per_class: list[float | None] = [
        float(s / n) if n > 0 else None for s, n in zip(class_f_sum, class_count)
    ]
    return {
        "f": float(score_sum / images) if images > 0 else math.nan,
        "per_class": per_class,
        "pooled_f": float(f_pooled[present].mean()) if present.any() else math.nan,
        "images": int(images),
    }


def f_measure_numpy(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], *,
                    num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                    eps: float = EPS) -> dict:
    """Torch-free F-measure over lists of ``H x W`` integer label maps.

    Returns the same dict as :meth:`FScoreMeter.compute`.  Raises ValueError on a length
    or shape mismatch or on labels outside ``[0, num_classes)`` (GT ``ignore_index``
    excepted).  Images may have different sizes.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    c = num_classes
    score_sum = 0.0
    images = 0
    class_f_sum = np.zeros(c, dtype=np.float64)
    class_count = np.zeros(c, dtype=np.int64)
    pooled = np.zeros((c, c), dtype=np.int64)
    for k, (p, g) in enumerate(zip(preds, gts)):
        p = np.asarray(p)
        g = np.asarray(g)
        if p.shape != g.shape:
            raise ValueError(f"image {k}: pred shape {p.shape} != gt shape {g.shape}")
        g = g.astype(np.int64).ravel()
        p = p.astype(np.int64).ravel()
        valid = g != ignore_index
        g, p = g[valid], p[valid]
        if g.size and (g.min() < 0 or g.max() >= c or p.min() < 0 or p.max() >= c):
            raise ValueError(f"image {k}: labels outside [0, {c})")
        conf = np.bincount(g * c + p, minlength=c * c).reshape(c, c)
        gt_count = conf.sum(axis=1)
        f = _f_from_conf(np.diag(conf).astype(np.float64), gt_count.astype(np.float64),
                         conf.sum(axis=0).astype(np.float64), eps)
        present = gt_count > 0
        pooled += conf
        if present.any():
            score_sum += float(f[present].mean())
            images += 1
            class_f_sum[present] += f[present]
            class_count += present
    return _summarise(score_sum, images, class_f_sum, class_count, pooled, eps)
