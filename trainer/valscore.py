"""Validation scored as the organisers score: at each ground-truth mask's own resolution.

The model sees validation images at the training size (``data.image_size``); its logits are
upsampled bilinearly (``align_corners=False``, float32) to each mask's own size before the loss
and the argmax, exactly what ``segwatch predict`` does before writing a mask, so the trainer's
val F for a checkpoint is the F ``segwatch evaluate`` computes from that checkpoint's masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
