"""Tests for trainer.model: parameter cap, shapes, dropout control, channels_last, bf16."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from trainer.model import (DEFAULT_WIDTH, MSCA, build_model, count_params, get_dropout,
                           set_dropout)

torch.set_num_threads(1)

PARAM_CAP = 1_821_085


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {a: build_model(attention=a, width=DEFAULT_WIDTH, dropout=0.1) for a in ("none", "lmsa")}


def test_param_counts_under_cap(models) -> None:
    n_lmsa = count_params(models["lmsa"])
    n_none = count_params(models["none"])
    assert 1_000_000 <= n_lmsa < PARAM_CAP
    assert n_none < n_lmsa < PARAM_CAP
    assert n_lmsa == sum(p.numel() for p in models["lmsa"].parameters())


def test_attention_none_has_no_attention_blocks(models) -> None:
    assert any(isinstance(m, MSCA) for m in models["lmsa"].modules())
    assert not any(isinstance(m, MSCA) for m in models["none"].modules())
    # same backbone otherwise: same number of stage blocks and decoder
    names = lambda m: {n for n, _ in m.named_modules() if "stages" not in n}  # noqa: E731
    assert names(models["none"]) == names(models["lmsa"])


@pytest.mark.parametrize("attention", ["none", "lmsa"])
@pytest.mark.parametrize("hw", [(64, 64), (72, 40)])
def test_output_shape_matches_input(models, attention: str, hw) -> None:
    model = models[attention].eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 19, *hw)
    assert torch.isfinite(out).all()


def test_num_classes_and_bad_arguments() -> None:
    m = build_model(attention="lmsa", width=16, dropout=0.0, num_classes=5).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5, 32, 32)
    with pytest.raises(ValueError, match="attention"):
        build_model(attention="se", width=16, dropout=0.0)
    with pytest.raises(ValueError):
        build_model(attention="none", width=16, dropout=1.5)


def test_set_dropout_changes_every_dropout_layer() -> None:
    model = build_model(attention="lmsa", width=16, dropout=0.1)
    layers = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert len(layers) >= 2
    assert get_dropout(model) == pytest.approx(0.1)
    assert set_dropout(model, 0.35) == len(layers)
    assert all(m.p == pytest.approx(0.35) for m in layers)
    assert get_dropout(model) == pytest.approx(0.35)
    assert set_dropout(model, 0.0) == len(layers)
    assert get_dropout(model) == 0.0
    with pytest.raises(ValueError):
        set_dropout(model, -0.1)
    assert get_dropout(nn.Linear(2, 2)) == 0.0 and set_dropout(nn.Linear(2, 2), 0.5) == 0


def test_dropout_takes_effect_at_run_time() -> None:
    torch.manual_seed(1)
    model = build_model(attention="none", width=16, dropout=0.0).train()
    x = torch.randn(2, 3, 32, 32)
    set_dropout(model, 0.0)
    torch.manual_seed(2)
    a = model(x)
    torch.manual_seed(2)
    assert torch.allclose(a, model(x))  # no dropout: deterministic in train mode (BN batch stats)
    set_dropout(model, 0.9)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(x))


@pytest.mark.parametrize("attention", ["none", "lmsa"])
def test_channels_last_matches_contiguous(attention: str) -> None:
    torch.manual_seed(0)
    model = build_model(attention=attention, width=16, dropout=0.1).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attention", ["none", "lmsa"])
def test_bf16_autocast_forward_and_backward(attention: str) -> None:
    torch.manual_seed(0)
    model = build_model(attention=attention, width=16, dropout=0.1).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 19, (2, 64, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 19, 64, 64)
    loss = nn.functional.cross_entropy(out.float(), target)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_initial_logits_are_near_uniform(models) -> None:
    model = models["lmsa"].eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.abs().max() < 2.0  # small classifier init: softmax starts close to uniform


def test_width_none_means_default() -> None:
    a = build_model(attention="lmsa", width=None, dropout=0.0)
    b = build_model(attention="lmsa", width=DEFAULT_WIDTH, dropout=0.0)
    assert count_params(a) == count_params(b)


def test_output_stride_2_adds_a_half_resolution_decoder_level():
    """Issue 12: at 128 px an eye is ~2.5x1 logits at stride 4; stride 2 (auto below 256 px) decodes at 1/2."""
    from trainer.core.config import PARAM_CAP
    from trainer.model import output_stride_for

    s4 = build_model(attention="lmsa", width=None, dropout=0.0)
    s2 = build_model(attention="lmsa", width=None, dropout=0.0, output_stride=2).eval()
    assert count_params(s2) - count_params(s4) == 3520 and count_params(s2) < PARAM_CAP
    seen = []
    s2.classifier.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    x = torch.randn(2, 3, 96, 96)
    assert s2(x).shape == (2, 19, 96, 96) and seen == [(48, 48)]  # classified at 1/2, then upsampled
    seen.clear()
    s4.eval().classifier.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    s4(x)
    assert seen == [(24, 24)]
    assert output_stride_for("auto", 128) == 2 and output_stride_for("auto", 512) == 4
    assert output_stride_for("auto", None) == 4 and output_stride_for(4, 128) == 4 and output_stride_for(2, 512) == 2
    with pytest.raises(ValueError, match="output_stride"):
        build_model(attention="lmsa", width=16, dropout=0.0, output_stride=8)


def test_logit_scale_auto_is_for_small_inputs_and_travels_in_the_checkpoint():
    """Issue 12: the small-input head's logit gain (8 below 256 px, 1 at the real 512 px) is a buffer,
    so a checkpoint carries it; a checkpoint from before it existed loads as 1."""
    from trainer.model import SMALL_INPUT_LOGIT_SCALE, logit_scale_for
    assert logit_scale_for("auto", 64) == SMALL_INPUT_LOGIT_SCALE == 8.0
    assert logit_scale_for("auto", 512) == 1.0 and logit_scale_for("auto", None) == 1.0 and logit_scale_for(2.5, 64) == 2.5
    torch.manual_seed(0)
    a = build_model(attention="none", width=8, dropout=0.0, output_stride=2, logit_scale=8.0).eval()
    x = torch.rand(1, 3, 64, 64)
    b = build_model(attention="none", width=8, dropout=0.0, output_stride=2).eval()
    b.load_state_dict(a.state_dict())
    assert float(b.logit_scale) == 8.0 and torch.equal(a(x), b(x))
    old = {k: v for k, v in a.state_dict().items() if k != "logit_scale"}
    b.load_state_dict(old)
    assert float(b.logit_scale) == 1.0
    assert torch.allclose(b(x) * 8.0, a(x), atol=1e-5)
    with pytest.raises(ValueError, match="logit_scale"):
        build_model(attention="none", width=8, dropout=0.0, logit_scale=0)
