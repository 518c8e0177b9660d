"""Focal alpha: ``focal_alpha: balanced`` and what a run's alpha does to background vs face parts.

Pure Python (no torch, no numpy): the trainer resolves and reports alpha with it, and the app
could read the same definitions.

Conventions (``/work/shared/domain.md``): a scalar alpha ``a`` is kornia's: ``a`` for every
face-part class and ``1 - a`` for background (class 0), so the plan's ``0.25`` weights the
background 0.75 and every part 0.25. A list gives one weight per class (19, each in [0, 1]).

``balanced`` (docs/control.md, "focal_alpha: balanced"): per-class weights from the training
set's pixel frequencies ``f_c`` (background included), inverse square root, capped at 1::

    alpha_c = min(1, k / sqrt(f_c)),   k = 0.5 / sum_c sqrt(f_c)

``k`` makes the pixel-weighted mean of the uncapped weights ``sum_c f_c * k / sqrt(f_c)``
equal to 0.5, the scalar alpha that weights every class the same, so the focal term keeps the
scale of a neutral alpha against Dice. The cap keeps every weight in [0, 1] (the range a live
``alpha`` accepts), so every class rarer than ``k**2`` (about 3 % of the pixels on the
CelebAMask-HQ shares) gets the full weight 1. A class absent from the training masks gets 1
(it is never a target, so its weight has no effect). On the real mini-challenge shares:
hair 0.31, background 0.32, skin 0.34, neck 0.84, cloth 0.92, every other class 1.0.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

BALANCED = "balanced"
_NEUTRAL = 0.5


def balanced_alpha(freqs: Sequence[float]) -> list[float]:
    """Per-class focal alpha from pixel frequencies (see the module docstring)."""
    f = [float(x) for x in freqs]
    if not f or any(not math.isfinite(x) or x < 0 for x in f):
        raise ValueError(f"frequencies must be finite and >= 0, got {list(freqs)!r}")
    root_sum = sum(math.sqrt(x) for x in f if x > 0)
    if root_sum <= 0:
        return [1.0] * len(f)
    k = _NEUTRAL / root_sum
    return [round(min(1.0, k / math.sqrt(x)), 6) if x > 0 else 1.0 for x in f]


def alpha_list(alpha: Any, num_classes: int) -> list[float] | None:
    """The per-class vector of a scalar or list alpha (kornia's convention for a scalar)."""
    if alpha is None:
        return None
    if isinstance(alpha, (list, tuple)):
        return [float(x) for x in alpha]
    a = float(alpha)
    return [1.0 - a] + [a] * (num_classes - 1)


def describe(alpha: Any, *, use_focal: bool, source: str | None, num_classes: int) -> dict:
    """What the alpha in force does, for the ``start`` event's ``alpha_info`` field.

    ``source``: ``"scalar"``, ``"list"`` or ``"balanced"`` (how the config gave it).
    ``background_heavy`` is true when focal loss is on and the background's weight is above the
    mean weight of the face-part classes (1..18); ``note`` then says so in one line.
    """
    vec = alpha_list(alpha, num_classes)
    out: dict[str, Any] = {"source": source if vec is not None else "none", "background": None,
                           "parts_mean": None, "background_heavy": False, "note": None}
    if vec is None:
        return out
    bg, parts = vec[0], sum(vec[1:]) / max(len(vec) - 1, 1)
    out["background"], out["parts_mean"] = round(bg, 6), round(parts, 6)
    if use_focal and bg > parts:
        ratio = f"{bg / parts:.1f}x" if parts > 0 else "all"
        given = f"focal_alpha {_fmt(alpha)}" if source == "scalar" else f"focal_alpha ({source})"
        out["background_heavy"] = True
        out["note"] = (f"{given} weights background {bg:.2f} against {parts:.2f} for the face parts on average "
                       f"({ratio} more on background; a scalar alpha is kornia's: alpha for the parts, 1 - alpha "
                       f"for background); 'focal_alpha: balanced' weights the rare parts up")
    return out


def _fmt(alpha: Any) -> str:
    return f"{float(alpha):g}" if not isinstance(alpha, (list, tuple)) else "[...]"
