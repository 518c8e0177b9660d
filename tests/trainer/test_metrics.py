"""Tests for trainer.metrics against a brute-force reference of the organisers' F-measure."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trainer.metrics import FScoreMeter, f_measure_numpy

torch.set_num_threads(1)

C = 19
IGNORE = 255
EPS = 1e-7


def reference(preds, gts, num_classes=C, ignore=IGNORE):
    """Explicit loops over images and classes, straight from the definition."""
    scores = []
    per_class_lists = [[] for _ in range(num_classes)]
    tp_all = np.zeros(num_classes)
    fp_all = np.zeros(num_classes)
    fn_all = np.zeros(num_classes)
    for pred, gt in zip(preds, gts):
        valid = gt != ignore
        p, g = pred[valid], gt[valid]
        present = [int(c) for c in np.unique(g)]
        for c in range(num_classes):
            tp_all[c] += np.sum((p == c) & (g == c))
            fp_all[c] += np.sum((p == c) & (g != c))
            fn_all[c] += np.sum((p != c) & (g == c))
        if not present:
            continue
        fs = []
        for c in present:
            tp = np.sum((p == c) & (g == c))
            fp = np.sum((p == c) & (g != c))
            fn = np.sum((p != c) & (g == c))
            prec = tp / (tp + fp + EPS)
            rec = tp / (tp + fn + EPS)
            f = 2 * prec * rec / (prec + rec + EPS)
            fs.append(f)
            per_class_lists[c].append(f)
        scores.append(np.mean(fs))
    pooled = []
    for c in range(num_classes):
        if tp_all[c] + fn_all[c] > 0:
            prec = tp_all[c] / (tp_all[c] + fp_all[c] + EPS)
            rec = tp_all[c] / (tp_all[c] + fn_all[c] + EPS)
            pooled.append(2 * prec * rec / (prec + rec + EPS))
    return {
        "f": float(np.mean(scores)) if scores else math.nan,
        "per_class": [float(np.mean(v)) if v else None for v in per_class_lists],
        "pooled_f": float(np.mean(pooled)) if pooled else math.nan,
        "images": len(scores),
    }


def assert_same(got: dict, ref: dict, tol: float = 1e-9) -> None:
    assert got["images"] == ref["images"]
    for key in ("f", "pooled_f"):
        if math.isnan(ref[key]):
            assert math.isnan(got[key])
        else:
            assert got[key] == pytest.approx(ref[key], abs=tol)
    assert len(got["per_class"]) == len(ref["per_class"])
    for a, b in zip(got["per_class"], ref["per_class"]):
        assert (a is None) == (b is None)
        if b is not None:
            assert a == pytest.approx(b, abs=tol)


def meter_result(preds, gts, batch: int = 2, num_classes: int = C) -> dict:
    meter = FScoreMeter(num_classes=num_classes)
    for i in range(0, len(preds), batch):
        p = torch.from_numpy(np.stack(preds[i:i + batch]))
        g = torch.from_numpy(np.stack(gts[i:i + batch]))
        meter.update(p, g)
    return meter.compute()


def random_maps(seed: int, n: int = 5, h: int = 12, w: int = 10):
    """GT drawn from classes 0..7, predictions from 0..11, some ignored pixels.

    So some classes are predicted but absent from GT (8..11), some absent from both
    (12..18), and most images miss some GT classes too.
    """
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for k in range(n):
        gt = rng.integers(0, 8, size=(h, w))
        gt[rng.random((h, w)) < 0.1] = IGNORE
        pred = np.where(rng.random((h, w)) < 0.6, np.where(gt == IGNORE, 0, gt),
                        rng.integers(0, 12, size=(h, w)))
        if k == 1:
            gt[:] = np.where(gt == IGNORE, IGNORE, 3)  # a single-class image
        gts.append(gt.astype(np.int64))
        preds.append(pred.astype(np.int64))
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed: int) -> None:
    preds, gts = random_maps(seed)
    ref = reference(preds, gts)
    assert_same(f_measure_numpy(preds, gts), ref)
    assert_same(meter_result(preds, gts, batch=2), ref)
    assert_same(meter_result(preds, gts, batch=5), ref)
    assert ref["per_class"][12] is None and ref["per_class"][9] is None  # absent / only predicted


def test_perfect_prediction_scores_one() -> None:
    _, gts = random_maps(4)
    preds = [np.where(g == IGNORE, 7, g) for g in gts]  # whatever is under ignored pixels
    for res in (f_measure_numpy(preds, gts), meter_result(preds, gts)):
        assert res["f"] == pytest.approx(1.0, abs=1e-6)
        assert res["pooled_f"] == pytest.approx(1.0, abs=1e-6)
        assert all(v is None or v == pytest.approx(1.0, abs=1e-6) for v in res["per_class"])


def test_pooled_differs_from_per_image_on_crafted_case() -> None:
    # image A: all background, predicted right -> 1.0
    # image B: gt [0, 1], pred [0, 0] -> class 0: P=1/2, R=1, F=2/3; class 1: F=0 -> 1/3
    # per-image mean = (1 + 1/3) / 2 = 2/3
    # pooled: class 0 tp=5 fp=1 fn=0 -> F = 10/11; class 1 F = 0 -> 5/11
    gts = [np.zeros((2, 2), np.int64), np.array([[0, 1]], np.int64)]
    preds = [np.zeros((2, 2), np.int64), np.array([[0, 0]], np.int64)]
    res = f_measure_numpy(preds, gts)
    assert res["f"] == pytest.approx(2 / 3, abs=1e-6)
    assert res["pooled_f"] == pytest.approx(5 / 11, abs=1e-6)
    assert res["per_class"][0] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert res["per_class"][1] == pytest.approx(0.0, abs=1e-12)
    assert res["images"] == 2


def test_present_class_never_predicted_scores_zero() -> None:
    gt = torch.tensor([[[0, 0, 2, 2]]])
    pred = torch.tensor([[[0, 0, 0, 0]]])
    meter = FScoreMeter()
    meter.update(pred, gt)
    res = meter.compute()
    assert res["per_class"][2] == 0.0
    # class 0: P = 2/4, R = 1 -> F = 2/3; image = (2/3 + 0) / 2
    assert res["f"] == pytest.approx(1 / 3, abs=1e-6)


def test_ignored_pixels_are_excluded_and_all_ignored_image_skipped() -> None:
    gt = torch.tensor([[[1, 1, IGNORE, IGNORE]], [[IGNORE] * 4]])
    pred_a = torch.tensor([[[1, 1, 5, 6]], [[0, 1, 2, 3]]])
    pred_b = torch.tensor([[[1, 1, 1, 1]], [[9, 9, 9, 9]]])
    results = []
    for pred in (pred_a, pred_b):
        meter = FScoreMeter()
        meter.update(pred, gt)
        results.append(meter.compute())
    for res in results:
        assert res["images"] == 1
        assert res["f"] == pytest.approx(1.0, abs=1e-6)
        assert res["per_class"][5] is None


def test_meter_accepts_uint8_and_2d_and_resets() -> None:
    meter = FScoreMeter()
    meter.update(torch.tensor([[3, 3]], dtype=torch.uint8), torch.tensor([[3, 4]], dtype=torch.uint8))
    res = meter.compute()
    assert res["images"] == 1
    meter.reset()
    empty = meter.compute()
    assert empty["images"] == 0 and math.isnan(empty["f"]) and math.isnan(empty["pooled_f"])
    assert empty["per_class"] == [None] * C


def test_out_of_range_labels_raise() -> None:
    meter = FScoreMeter()
    meter.update(torch.tensor([[[0, 19]]]), torch.tensor([[[0, 1]]]))  # no sync here
    with pytest.raises(ValueError, match="outside"):
        meter.compute()
    with pytest.raises(ValueError, match="outside"):
        f_measure_numpy([np.array([[0, 1]])], [np.array([[0, 20]])])
    with pytest.raises(ValueError):
        FScoreMeter().update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))


def _maps(num_classes: int):
    label = st.one_of(st.integers(0, num_classes - 1), st.just(IGNORE))
    return st.integers(1, 4).flatmap(lambda n: st.tuples(st.integers(1, 5), st.integers(1, 5)).flatmap(
        lambda hw: st.tuples(
            st.lists(hnp.arrays(np.int64, hw, elements=st.integers(0, num_classes - 1)), min_size=n, max_size=n),
            st.lists(hnp.arrays(np.int64, hw, elements=label), min_size=n, max_size=n),
        )))


@settings(max_examples=60, deadline=None)
@given(data=_maps(4))
def test_hypothesis_against_reference(data) -> None:
    preds, gts = data
    ref = reference(preds, gts, num_classes=4)
    assert_same(f_measure_numpy(preds, gts, num_classes=4), ref)
    assert_same(meter_result(preds, gts, batch=3, num_classes=4), ref)


def test_sync_free_count_path_matches_bincount() -> None:
    from trainer.metrics import _bincount

    idx = torch.randint(0, 50, (1000,))
    assert torch.equal(_bincount(idx, 51, sync_free=True), _bincount(idx, 51, sync_free=False))


class _TwoIdenticalRanks:
    """Stands in for trainer.dist.DistContext: all_reduce_sum over two equal ranks."""

    def __init__(self) -> None:
        self.calls = 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        t.mul_(2)
        return t


def test_compute_with_dist_reduces_once_and_keeps_state() -> None:
    preds, gts = random_maps(5)
    meter = FScoreMeter(device="cpu")
    for p, g in zip(preds, gts):
        meter.update(torch.from_numpy(p), torch.from_numpy(g))
    local = meter.compute()
    dist = _TwoIdenticalRanks()
    both = meter.compute(dist)
    assert dist.calls == 1
    assert both["images"] == 2 * local["images"]
    assert_same({**both, "images": local["images"]}, local, tol=1e-8)  # eps vs doubled counts
    assert meter.compute() == local  # state untouched by the reduction


def test_meter_with_device_and_no_updates_joins_the_reduction() -> None:
    meter = FScoreMeter(device=torch.device("cpu"))
    dist = _TwoIdenticalRanks()
    res = meter.compute(dist)
    assert dist.calls == 1 and res["images"] == 0 and math.isnan(res["f"])
