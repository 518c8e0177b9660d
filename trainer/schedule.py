"""The learning-rate schedule: a pure function of the step, so the base LR, the warmup and the
length of a run can all change mid-run without the schedule fighting the change."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.01) -> float:
    """LR for optimizer step ``step`` (0-based): linear warmup to ``base_lr``, then cosine decay
    to ``min_ratio * base_lr`` at ``total_steps``; held there if the run goes past the end."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    shape = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * shape
