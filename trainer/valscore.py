"""Validation scored as the organisers score: at each ground-truth mask's own resolution.

The model sees validation images at the training size (``data.image_size``); its logits are
upsampled bilinearly (``align_corners=False``, float32) to each mask's own size before the loss
and the argmax, exactly what ``segwatch predict`` does before writing a mask, so the trainer's
val F for a checkpoint is the F ``segwatch evaluate`` computes from that checkpoint's masks.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from trainer.metrics import FScoreMeter


def to_mask_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x C x h x w`` logits as float32 at ``size`` (unchanged when already there)."""
    logits = logits.float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


def score_batch(logits: torch.Tensor, masks, loss_fn, meter, device: torch.device) -> torch.Tensor:
    """Add one validation batch to ``meter``; returns the summed loss (a 0-d tensor, no host sync).

    ``masks``: a ``B x H x W`` tensor (one size) or a list of ``H x W`` tensors (own sizes).
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.to(device, non_blocking=True).long()  # the loaders send uint8
        up = to_mask_size(logits, masks.shape[-2:])
        loss, _ = loss_fn(up, masks)
        meter.update(up.max(1).indices, masks)
        return loss.float() * masks.shape[0]
    total = torch.zeros((), device=device)
    for k, m in enumerate(masks):
        m = m.to(device, non_blocking=True).long().unsqueeze(0)
        up = to_mask_size(logits[k:k + 1], m.shape[-2:])
        loss, _ = loss_fn(up, m)
        meter.update(up.max(1).indices, m)
        total = total + loss.float()
    return total


@torch.no_grad()
def validate(c, bn: list[torch.Tensor], control_point: Callable[[], None]) -> dict[str, Any]:
    """Validation of this rank's share of the images, summed over every rank: ``f``, ``pooled_f``,
    ``per_class`` and ``loss``. ``c``: the run's Components; ``bn``: the BatchNorm buffers (rank
    0's are broadcast first under DDP); ``control_point`` runs every 4 batches."""
    model = c.model
    if c.dist.enabled:
        # no DDP in validation: its forward broadcasts buffers, a collective that a rank
        # with fewer (or no) validation batches would never join. Every rank evaluates rank
        # 0's BatchNorm statistics (each rank's last training forward updated its own copy).
        model = c.raw_model
        c.dist.broadcast_tensors([b for b in bn if b.is_floating_point()])
    model.eval()
    meter = FScoreMeter(device=c.device)
    sums = torch.zeros(2, device=c.device)
    # every rank polls control at the same batch indices, over the batch count of the rank
    # with the most (an uneven split must not leave one rank in a broadcast while another
    # waits in the metric all-reduce)
    batches = iter(c.val_loader())
    for i in range(c.val_batches_max()):
        if i % 4 == 0:
            if c.cfg.debug.val_delay:
                time.sleep(c.cfg.debug.val_delay)
            with c.steering.during("validation"):  # answers given now say so (docs/control.md)
                control_point()
        batch = next(batches, None)
        if batch is None:
            continue
        images, masks = batch
        images = images.to(c.device, non_blocking=True)
        if c.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=c.device.type, dtype=torch.bfloat16, enabled=c.amp):
            logits = model(images)
        # loss and F at each mask's own size (the organisers' score), logits upsampled in float32
        sums[0] += score_batch(logits, masks, c.loss_fn, meter, c.device)
        sums[1] += images.shape[0]
    c.dist.all_reduce_sum(sums)
    out = meter.compute(c.dist)
    out["loss"] = (sums[0] / sums[1].clamp(min=1)).item()
    c.model.train()
    return out
