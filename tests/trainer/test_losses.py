"""Tests for trainer.losses: focal loss conventions, Dice, CE, SegLoss."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.losses import SegLoss, alpha_vector, cross_entropy, dice_loss, focal_loss

torch.set_num_threads(1)

C = 19
IGNORE = 255


def logits_with_pt(pt: float, true_class: int = 3, num_classes: int = C) -> torch.Tensor:
    """1 x C x 1 x 1 logits whose softmax gives probability ``pt`` to ``true_class``.

    All other logits are 0, so p_t = e^z / (e^z + C - 1)  =>  z = log(pt (C-1) / (1-pt)).
    """
    z = math.log(pt * (num_classes - 1) / (1.0 - pt))
    logits = torch.zeros(1, num_classes, 1, 1, dtype=torch.float64)
    logits[0, true_class] = z
    return logits


def random_batch(seed: int = 0, b: int = 2, h: int = 5, w: int = 6, ignore_frac: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, C, h, w, generator=g) * 2.0
    target = torch.randint(0, C, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < ignore_frac] = IGNORE
    return logits, target


@pytest.mark.parametrize("pt, weight", [(0.95, 0.0025), (0.5, 0.25), (0.1, 0.81)])
def test_worked_examples_gamma2(pt: float, weight: float) -> None:
    logits = logits_with_pt(pt)
    target = torch.tensor([[[3]]])
    assert F.softmax(logits, 1)[0, 3, 0, 0].item() == pytest.approx(pt, rel=1e-9)
    loss = focal_loss(logits, target, gamma=2.0, alpha=None)
    ce = -math.log(pt)
    assert loss.item() == pytest.approx((1 - pt) ** 2 * ce, rel=1e-5)
    assert (loss / ce).item() == pytest.approx(weight, rel=1e-5)  # modulating factor


def test_gamma0_alpha_none_equals_cross_entropy_with_ignored_pixels() -> None:
    logits, target = random_batch(1)
    assert (target == IGNORE).any() and (target != IGNORE).any()
    ref = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert focal_loss(logits, target, gamma=0.0, alpha=None).item() == pytest.approx(ref.item(), rel=1e-6)
    assert cross_entropy(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)


def test_gamma0_with_class_weights_equals_weighted_cross_entropy() -> None:
    logits, target = random_batch(2)
    w = torch.rand(C) + 0.1
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
    got = focal_loss(logits, target, gamma=0.0, alpha=None, class_weights=w)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert cross_entropy(logits, target, class_weights=w).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.0, 0.75), (1.0, 0.5), (5.0, 0.1)])
def test_two_class_matches_sigmoid_focal_reference(gamma: float, alpha: float) -> None:
    """Softmax over the two logits [0, x] gives p(class 1) = e^x / (1 + e^x) = sigmoid(x).

    So the 2-class softmax focal loss with scalar alpha (class 1 gets alpha, background
    class 0 gets 1 - alpha) must equal torchvision's binary sigmoid_focal_loss on the logit
    x with label y = target, mean-reduced: -alpha_t (1 - p_t)^gamma log(p_t) with
    p_t = p if y == 1 else 1 - p and alpha_t = alpha if y == 1 else 1 - alpha.
    """
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (2, 4, 5), generator=g)
    # reference, written out as in torchvision.ops.sigmoid_focal_loss
    p = torch.sigmoid(x)
    yf = y.double()
    ce = F.binary_cross_entropy_with_logits(x, yf, reduction="none")
    p_t = p * yf + (1 - p) * (1 - yf)
    alpha_t = alpha * yf + (1 - alpha) * (1 - yf)
    ref = (alpha_t * ce * (1 - p_t) ** gamma).mean()
    logits = torch.stack([torch.zeros_like(x), x], dim=1)
    got = focal_loss(logits, y, gamma=gamma, alpha=alpha)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_scalar_alpha_convention() -> None:
    vec = alpha_vector(0.25, C)
    assert vec.shape == (C,)
    assert vec[0].item() == pytest.approx(0.75)
    assert torch.allclose(vec[1:], torch.full((C - 1,), 0.25))
    assert alpha_vector(None, C) is None
    logits, target = random_batch(4)
    a = focal_loss(logits, target, gamma=2.0, alpha=0.25)
    b = focal_loss(logits, target, gamma=2.0, alpha=[0.75] + [0.25] * (C - 1))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_per_class_alpha_applied_per_pixel() -> None:
    logits, target = random_batch(5, ignore_frac=0.0)
    alpha = torch.rand(C)
    per_px = -(1 - F.softmax(logits, 1).gather(1, target[:, None])).pow(2) * F.log_softmax(logits, 1).gather(1, target[:, None])
    ref = (per_px.squeeze(1) * alpha[target]).mean()
    got = focal_loss(logits, target, gamma=2.0, alpha=alpha)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("bad", [[0.25] * 18, [0.25] * 20, torch.ones(2, C)])
def test_per_class_alpha_length_check(bad) -> None:
    logits, target = random_batch(6)
    n = torch.as_tensor(bad).numel()
    with pytest.raises(ValueError, match=str(n)):
        focal_loss(logits, target, gamma=2.0, alpha=bad)


def test_ignored_pixels_do_not_change_loss_or_get_gradient() -> None:
    logits, target = random_batch(7, ignore_frac=0.3)
    ign = target == IGNORE
    base = focal_loss(logits, target, gamma=2.0, alpha=0.25, class_weights=torch.rand(C))
    changed = logits.clone()
    changed[ign.unsqueeze(1).expand_as(changed)] = 1e4 * torch.randn(int(ign.sum()) * C)
    changed.requires_grad_(True)
    again = focal_loss(changed, target, gamma=2.0, alpha=0.25, class_weights=None)
    ref = focal_loss(logits, target, gamma=2.0, alpha=0.25)
    assert again.item() == pytest.approx(ref.item(), rel=1e-6)
    again.backward()
    assert torch.all(changed.grad.permute(0, 2, 3, 1)[ign] == 0)
    # mean over valid pixels: same as the loss on the valid pixels alone (1 x N row)
    valid_logits = logits.permute(0, 2, 3, 1)[~ign].T.reshape(1, C, 1, -1)
    valid_target = target[~ign].reshape(1, 1, -1)
    alone = focal_loss(valid_logits, valid_target, gamma=2.0, alpha=0.25)
    assert alone.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.isfinite(base)


def test_all_ignored_gives_zero_with_gradient() -> None:
    logits = torch.randn(1, C, 3, 3, requires_grad=True)
    target = torch.full((1, 3, 3), IGNORE)
    for loss in (focal_loss(logits, target, gamma=2.0, alpha=0.25), dice_loss(logits, target),
                 cross_entropy(logits, target)):
        assert loss.item() == 0.0
        (g,) = torch.autograd.grad(loss, logits)
        assert torch.all(g == 0)


def test_gamma_below_one_has_finite_gradient_at_certainty() -> None:
    logits = torch.zeros(1, C, 1, 2)
    logits[0, 2] = 200.0  # p_t == 1 exactly in float32
    logits.requires_grad_(True)
    target = torch.tensor([[[2, 2]]])
    loss = focal_loss(logits, target, gamma=0.5, alpha=None)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_bf16_logits_computed_in_float32() -> None:
    logits, target = random_batch(8)
    got = focal_loss(logits.bfloat16(), target, gamma=2.0, alpha=0.25)
    ref = focal_loss(logits.bfloat16().float(), target, gamma=2.0, alpha=0.25)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_segloss_gamma_is_mutable() -> None:
    logits, target = random_batch(9)
    crit = SegLoss(use_focal=True, gamma=2.0, alpha=0.25)
    a, parts_a = crit(logits, target)
    crit.gamma = 0.5
    b, _ = crit(logits, target)
    assert a.item() != pytest.approx(b.item(), rel=1e-3)
    assert b.item() == pytest.approx(focal_loss(logits, target, gamma=0.5, alpha=0.25).item(), rel=1e-6)
    assert set(parts_a) == {"focal", "total"}


def test_segloss_switches_and_combines_terms() -> None:
    logits, target = random_batch(10)
    w = torch.rand(C) + 0.5
    crit = SegLoss(use_focal=False, dice_weight=0.5, class_weights=w, use_class_weights=False)
    total, parts = crit(logits, target)
    assert set(parts) == {"ce", "dice", "total"}
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert total.item() == pytest.approx((ce + 0.5 * dice_loss(logits, target)).item(), rel=1e-6)
    crit.use_class_weights = True
    _, parts_w = crit(logits, target)
    ref_w = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
    assert parts_w["ce"].item() == pytest.approx(ref_w.item(), rel=1e-5)
    crit.use_focal, crit.gamma, crit.alpha, crit.dice_weight = True, 0.0, None, 0.0
    total_f, parts_f = crit(logits, target)
    assert set(parts_f) == {"focal", "total"}
    assert total_f.item() == pytest.approx(ref_w.item(), rel=1e-5)
    assert not parts_f["total"].requires_grad


def test_dice_perfect_prediction_is_about_zero() -> None:
    _, target = random_batch(11, ignore_frac=0.2)
    safe = torch.where(target == IGNORE, torch.zeros_like(target), target)
    logits = 30.0 * F.one_hot(safe, C).permute(0, 3, 1, 2).float()
    # the ignored pixels carry a confident wrong answer: they must not count
    logits[:, 5][target == IGNORE] = 100.0
    for per_image in (True, False):
        assert dice_loss(logits, target, per_image=per_image).item() == pytest.approx(0.0, abs=1e-5)
    wrong = 30.0 * F.one_hot((safe + 1) % C, C).permute(0, 3, 1, 2).float()
    assert dice_loss(wrong, target).item() > 0.5  # eps=1 smoothing on 1-2 px classes


def test_dice_averages_over_present_classes_per_image() -> None:
    # image 0 holds classes {0, 1}; image 1 holds class 2 only. Uniform logits: p = 1/C.
    target = torch.tensor([[[0, 1], [1, 1]], [[2, 2], [2, 2]]])
    logits = torch.zeros(2, C, 2, 2)
    p = 1.0 / C

    def d(n_gt: int, n_px: int = 4) -> float:
        return (2 * n_gt * p + 1) / (n_px * p + n_gt + 1)

    ref = 1 - (d(1) + d(3) + d(4)) / 3
    assert dice_loss(logits, target).item() == pytest.approx(ref, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6))
def test_hypothesis_gamma0_is_ce(seed: int, b: int, h: int, w: int) -> None:
    logits, target = random_batch(seed, b, h, w, ignore_frac=0.3)
    ref = F.cross_entropy(logits, target, ignore_index=IGNORE)
    got = focal_loss(logits, target, gamma=0.0, alpha=None)
    if torch.isnan(ref):  # every pixel ignored
        assert got.item() == 0.0
    else:
        assert got.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


def test_nan_logits_on_valid_pixels_stay_visible() -> None:
    logits, target = random_batch(12, ignore_frac=0.0)
    logits[0, :, 0, 0] = float("nan")
    assert torch.isnan(cross_entropy(logits, target))
    assert torch.isnan(focal_loss(logits, target, gamma=2.0, alpha=0.25))
    assert torch.isnan(dice_loss(logits, target))
