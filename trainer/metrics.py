"""The organisers' F-measure for CelebAMask-HQ face parsing (see ``docs/domain.md``).

Definitions (``C`` classes, ``eps = 1e-7``, ``beta = 1``):

* Per image, for each class ``c`` PRESENT in that image's ground truth (``unique(gt)``
  without ``ignore_index``):  ``P = tp / (tp + fp + eps)``, ``R = tp / (tp + fn + eps)``,
  ``F = (1 + beta^2) P R / (beta^2 P + R + eps)``.  A present class that is never
  predicted has ``tp = 0`` and so ``F = 0``; classes absent from the GT are skipped even
  if predicted (their false positives only count as other classes' false negatives).
* image score = mean of ``F`` over the present classes; ``f`` = mean over images.
  Pixels whose GT is ``ignore_index`` count nowhere; an image without any valid GT pixel
  is skipped (it has no present class) and not counted in ``images``.
* ``per_class[c]`` = mean of class ``c``'s per-image ``F`` over the images where it is
  present; ``None`` where it was never present.
* ``pooled_f``: one confusion matrix over the whole split, ``F`` per class from it, mean
  over the classes present in the split's GT.  It runs below ``f`` in practice.
* With no image counted, ``f`` and ``pooled_f`` are NaN.

:class:`FScoreMeter` accumulates on the device of its inputs (CPU or CUDA) without host
syncs in :meth:`FScoreMeter.update`; :func:`f_measure_numpy` is the torch-free version
for an evaluate command.  Both share :func:`_summarise`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainer.core.classes import IGNORE_INDEX, NUM_CLASSES
from trainer.core.fmeasure import BETA, EPS, _f_from_conf, _summarise, f_measure_numpy  # noqa: F401 - torch-free home

__all__ = ["EPS", "FScoreMeter", "f_measure_numpy"]


def _bincount(idx: torch.Tensor, size: int, sync_free: bool) -> torch.Tensor:
    """Counts of each value in ``idx`` (all in ``[0, size)``) as an int64 tensor of ``size``.

    ``torch.bincount`` is fastest on CPU but reads ``max()`` back to the host on CUDA;
    ``index_add_`` into a preallocated tensor stays on the device (``sync_free``).
    """
    if not sync_free:
        return torch.bincount(idx, minlength=size)
    counts = torch.zeros(size, dtype=torch.int64, device=idx.device)
    return counts.index_add_(0, idx, torch.ones_like(idx))


class FScoreMeter:
    """Accumulates the per-image F-measure, per-class F and pooled F over batches.

    ``update(pred, gt)`` takes integer label maps ``B x H x W`` (or ``H x W``) on any one
    device; pixels with ``gt == ignore_index`` are excluded.  Per-image confusion
    matrices come from one scatter-add over ``image * C * C + gt * C + pred`` (no
    Python loop over pixels or images, no ``.item()``).  Label values outside
    ``[0, num_classes)`` (other than an ignored GT) are not counted and make
    :meth:`compute` raise ValueError -- checking them eagerly would need a host sync.

    ``device``: where the statistics live (inputs are moved there).  Without it, the
    device of the first ``update`` is used.  Give it in distributed runs so that a rank
    without any batch still takes part in :meth:`compute`'s all-reduce.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX, *,
                 device: torch.device | str | None = None, eps: float = EPS) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.eps = float(eps)
        self.device = None if device is None else torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._device: torch.device | None = None
        self._score_sum: torch.Tensor | None = None  # sum of image scores (float64)
        self._images: torch.Tensor | None = None  # images counted (int64)
        self._class_f_sum: torch.Tensor | None = None  # C, float64
        self._class_count: torch.Tensor | None = None  # C, int64
        self._pooled: torch.Tensor | None = None  # C x C (gt row, pred column), int64
        self._bad: torch.Tensor | None = None  # out-of-range labels seen (int64)
        if self.device is not None:
            self._init(self.device)

    def _init(self, device: torch.device) -> None:
        c = self.num_classes
        self._device = device
        self._score_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._images = torch.zeros((), dtype=torch.int64, device=device)
        self._class_f_sum = torch.zeros(c, dtype=torch.float64, device=device)
        self._class_count = torch.zeros(c, dtype=torch.int64, device=device)
        self._pooled = torch.zeros(c, c, dtype=torch.int64, device=device)
        self._bad = torch.zeros((), dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add a batch of predicted and ground-truth label maps (same shape)."""
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != gt shape {tuple(gt.shape)}")
        if gt.dim() == 2:
            pred, gt = pred.unsqueeze(0), gt.unsqueeze(0)
        if gt.dim() != 3:
            raise ValueError(f"expected B x H x W label maps, got shape {tuple(gt.shape)}")
        if pred.is_floating_point() or gt.is_floating_point():
            raise TypeError("pred and gt must be integer label maps (use logits.argmax(1))")
        if self._device is None:
            self._init(gt.device)
        dev = self._device
        c = self.num_classes
        b = gt.shape[0]
        gt = gt.to(dev, torch.int64, non_blocking=True)
        pred = pred.to(dev, torch.int64, non_blocking=True)

        valid = gt != self.ignore_index
        in_range = (gt >= 0) & (gt < c) & (pred >= 0) & (pred < c)
        ok = valid & in_range
        self._bad += (valid & ~in_range).sum()
        img = torch.arange(b, device=dev, dtype=torch.int64).view(b, 1, 1)
        idx = torch.where(ok, img * (c * c) + gt * c + pred, torch.full_like(gt, b * c * c))
        idx = idx.flatten()
        counts = _bincount(idx, b * c * c + 1, sync_free=dev.type != "cpu")
        conf = counts[: b * c * c].view(b, c, c)

        gt_count = conf.sum(dim=2)
        pred_count = conf.sum(dim=1)
        tp = conf.diagonal(dim1=1, dim2=2)
        f = _f_from_conf(tp.double(), gt_count.double(), pred_count.double(), self.eps)
        present = gt_count > 0
        n_present = present.sum(dim=1)
        f = torch.where(present, f, torch.zeros_like(f))
        img_score = f.sum(dim=1) / n_present.clamp(min=1).double()
        self._score_sum += img_score.sum()  # images without a present class add 0
        self._images += (n_present > 0).sum()
        self._class_f_sum += f.sum(dim=0)
        self._class_count += present.sum(dim=0)
        self._pooled += conf.sum(dim=0)

    def state(self) -> dict[str, torch.Tensor]:
        """Copies of the accumulated statistics (on the meter's device), to carry an epoch
        across a resume."""
        if self._device is None:
            self._init(self.device or torch.device("cpu"))
        return {k: getattr(self, f"_{k}").detach().clone()
                for k in ("score_sum", "images", "class_f_sum", "class_count", "pooled", "bad")}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Add statistics saved by :meth:`state` (shapes checked) to this meter's."""
        if self._device is None:
            self._init(self.device or torch.device("cpu"))
        for k in ("score_sum", "images", "class_f_sum", "class_count", "pooled", "bad"):
            mine, v = getattr(self, f"_{k}"), state.get(k)
            if not isinstance(v, torch.Tensor) or v.shape != mine.shape:
                raise ValueError(f"meter state {k!r}: expected shape {tuple(mine.shape)}")
            mine += v.to(mine.device, mine.dtype)

    def compute(self, dist: Any = None) -> dict:
        """``dict(f=float, per_class=list[float | None], pooled_f=float, images=int)``.

        ``dist``: optional object with ``all_reduce_sum(tensor) -> tensor`` (e.g.
        ``trainer.dist.DistContext``); the statistics of all ranks are then summed with
        ONE collective before the scores are formed, so every rank gets the global
        result.  Every rank must call it.  The meter's own state is not modified.
        """
        c = self.num_classes
        if self._device is None:
            if dist is None:
                return _summarise(0.0, 0, np.zeros(c), np.zeros(c, dtype=np.int64),
                                  np.zeros((c, c), dtype=np.int64), self.eps)
            self._init(torch.device("cpu"))
        assert self._bad is not None and self._pooled is not None
        stats = torch.cat([
            torch.stack([self._score_sum, self._images.double(), self._bad.double()]),
            self._class_f_sum, self._class_count.double(), self._pooled.double().flatten(),
        ])  # counts are exact in float64 up to 2**53
        if dist is not None:
            stats = dist.all_reduce_sum(stats)
        v = stats.cpu().numpy()
        bad = int(round(v[2]))
        if bad:
            raise ValueError(f"{bad} pixel(s) had labels outside [0, {c}) "
                             f"(and not ignore_index={self.ignore_index}); they were skipped")
        return _summarise(float(v[0]), int(round(v[1])), v[3:3 + c],
                          np.rint(v[3 + c:3 + 2 * c]).astype(np.int64),
                          np.rint(v[3 + 2 * c:]).astype(np.int64).reshape(c, c), self.eps)
