"""Issue 12: the `unstable` preset never moves focal alpha toward the background.

In kornia's convention (trainer/losses.py) a scalar alpha ``a`` weights the face parts ``a`` and the
background ``1 - a``; a list weights each class. "Toward background" = the background's share of
the total weight grows, or the parts' weights fall against it.
"""

from __future__ import annotations

import pytest

from app.health import RulesError, load_rules
from app.health.presets import resolve_preset

RULES = load_rules()
BASE = {"lr": 5e-4, "gamma": 2.0, "use_focal": True, "dropout": 0.15, "weight_decay": 1e-4,
        "warmup_epochs": 10, "epochs": 250, "rotation": 20.0, "scale_range": [0.85, 1.15], "hflip": True}


def vector(alpha):
    return list(alpha) if isinstance(alpha, list) else [1.0 - alpha] + [alpha] * 18


def bg_share(alpha) -> float:
    v = vector(alpha)
    return v[0] / sum(v)


BALANCED = [0.32, 0.34] + [1.0] * 11 + [0.31, 1.0, 1.0, 1.0, 0.84, 0.92]


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 0.1, 0.9, [0.75] + [0.25] * 18, BALANCED, [0.2] * 19])
def test_unstable_never_moves_alpha_toward_background(alpha):
    after = resolve_preset("unstable", {**BASE, "alpha": alpha}, RULES).get("alpha", alpha)
    assert bg_share(after) <= bg_share(alpha) + 1e-12
    before_v, after_v = vector(alpha), vector(after)
    # no part loses weight relative to the background
    assert all(a / max(after_v[0], 1e-12) >= b / max(before_v[0], 1e-12) - 1e-9
               for a, b in zip(after_v[1:], before_v[1:]))


def test_unstable_keeps_a_scalar_alpha_and_scales_a_list():
    assert "alpha" not in resolve_preset("unstable", {**BASE, "alpha": 0.25}, RULES)
    out = resolve_preset("unstable", {**BASE, "alpha": BALANCED}, RULES)["alpha"]
    assert out == pytest.approx([x * 0.8 for x in BALANCED])


def test_scale_is_refused_outside_alpha():
    with pytest.raises(RulesError, match="scale"):
        load_rules(overrides={"presets": {"mine": {"label": "Mine", "ops": {"lr": {"scale": 0.5}}}}})
