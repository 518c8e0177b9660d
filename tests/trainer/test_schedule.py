"""The LR is a pure function of the step: warmup then cosine, rescaled by a new base LR."""

import pytest

from trainer.schedule import lr_at


def test_warmup_then_cosine_to_the_floor():
    base, warm, total = 1e-3, 10, 110
    assert lr_at(0, base, warm, total) == pytest.approx(base / 10)
    assert lr_at(9, base, warm, total) == pytest.approx(base)
    assert lr_at(10, base, warm, total) == pytest.approx(base)
    assert lr_at(60, base, warm, total) == pytest.approx(base * (0.01 + 0.99 * 0.5))
    assert lr_at(110, base, warm, total) == pytest.approx(base * 0.01)
    assert lr_at(500, base, warm, total) == pytest.approx(base * 0.01)
    xs = [lr_at(s, base, warm, total) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(xs, xs[1:]))


@pytest.mark.parametrize("step", [3, 10, 57, 109])
def test_a_new_base_rescales_the_whole_schedule(step):
    assert lr_at(step, 3e-4, 10, 110) == pytest.approx(lr_at(step, 5e-4, 10, 110) * 0.6)


def test_extending_the_run_stretches_the_cosine():
    assert lr_at(60, 1e-3, 10, 210) > lr_at(60, 1e-3, 10, 110)


def test_no_warmup():
    assert lr_at(0, 1e-3, 0, 100) == pytest.approx(1e-3)
