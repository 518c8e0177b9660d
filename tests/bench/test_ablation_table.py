"""bench/ablation_table.py: the RESULTS.md tables from stored curves. The runs here are made up so
every figure can be worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import ablation_table as at  # noqa: E402
from trainer.core.classes import CLASS_NAMES, SMALL_CLASSES  # noqa: E402

N = len(CLASS_NAMES)


def run(tag: str, seed: int, val_f: list[float], small: float, big: float = 0.9, zero=None, health=None) -> dict:
    """A run whose small parts all have F ``small`` and every other class ``big`` at every epoch."""
    row = [small if i in SMALL_CLASSES else big for i in range(N)]
    return {"tag": tag, "seed": seed, "val_f_curve": val_f, "per_class_f_curve": [row] * len(val_f),
            "classes_f_zero_curve": zero or [0] * len(val_f), "health_curve": health or ["green"] * len(val_f),
            "epoch_s_median": 16.7, "cpu_s_per_epoch_median": 12.9}


def test_variant_strips_only_the_seed_suffix():
    assert at.variant({"tag": "lmsa_focal_balanced_s2"}) == "lmsa_focal_balanced"
    assert at.variant({"tag": "lmsa_focal"}) == "lmsa_focal"
    assert at.variant({"tag": "lmsa_lr5e-4"}) == "lmsa_lr5e-4"


def test_all_classes_from_is_for_good():
    assert at.all_classes_from([3, 0, 1, 0, 0]) == 4  # one class fell back to 0 at epoch 3
    assert at.all_classes_from([2, 1]) is None
    assert at.all_classes_from([0, 0]) == 1


def test_curve_table_reads_epochs_best_and_colours():
    r = run("lmsa_focal", 42, [0.1, 0.3, 0.2], 0.5, zero=[2, 0, 0], health=["green", "yellow", "green"])
    line = at.curve_table([r], [1, 2, 5])[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["lmsa_focal", "42", "0.100", "0.300", "-"]  # epoch 5 is past the end
    assert cells[5:8] == ["0.200 (3)", "0.300 (2)", "2"]
    assert cells[8] == "green 1-3 (2), yellow 2-2 (1)"


def test_per_class_table_puts_small_parts_first_and_reads_end():
    r = run("x", 42, [0.1, 0.2], 0.25, big=0.75)
    head, _, e1, end = at.per_class_table([r], ["1", "end", "2", "7"])  # "end" is epoch 2: one row
    assert head.split("|")[4].strip() == CLASS_NAMES[SMALL_CLASSES[0]]
    assert end.split("|")[2].strip() == "2" and end.split("|")[3].strip() == "0.250"
    assert e1.split("|")[-2].strip() == "0.75"  # the last column is a large class


def test_seed_table_mean_and_range_over_seeds():
    runs = [run("lmsa_focal", 42, [0.5, 0.6], 0.4), run("lmsa_focal_s1", 1, [0.5, 0.8], 0.6),
            run("lmsa_focal_balanced_s1", 1, [0.5, 0.7], 0.5), run("short_s1", 1, [0.1], 0.1)]
    lines = at.seed_table(runs, 2)
    focal = next(x for x in lines if x.startswith("| lmsa_focal |"))
    assert "| 1, 42 |" in focal and "0.700 (0.600-0.800)" in focal and "0.500 (0.400-0.600)" in focal
    assert not any("short" in x for x in lines)  # a run that did not reach the epoch is left out


def test_pair_table_is_b_minus_a_per_common_seed():
    runs = [run("a", 1, [0.5], 0.4), run("b_s1", 1, [0.6], 0.5),
            run("a_s2", 2, [0.7], 0.6), run("b_s2", 2, [0.6], 0.7), run("b_s3", 3, [0.9], 0.9)]
    lines = at.pair_table(runs, "a", "b", 1)
    assert [x.split("|")[1].strip() for x in lines[2:]] == ["1", "2", "mean"]  # seed 3 has no partner
    assert lines[2].split("|")[2].strip() == "+0.100" and lines[3].split("|")[2].strip() == "-0.100"
    assert lines[4].split("|")[2].strip() == "+0.000" and lines[4].split("|")[3].strip() == "+0.100"


def test_command_line_prints_every_table(tmp_path):
    f = tmp_path / "curves.json"
    f.write_text(json.dumps({"runs": [run("lmsa_focal", 42, [0.2] * 3, 0.3), run("lmsa_focal_balanced", 42, [0.3] * 3, 0.5)]}))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "ablation_table.py"), str(f), "--at", "3",
                          "--pair", "lmsa_focal,lmsa_focal_balanced"], capture_output=True, text=True, check=True).stdout
    assert "| lmsa_focal_balanced - lmsa_focal @1-3 mean, seed |" in out
    assert "| 42 | +0.100 | +0.200 |" in out


def test_window_mean_over_the_epochs_that_end_at_the_epoch():
    assert at.window_mean([0.1, 0.2, 0.3, 0.6], 4, 2) == pytest.approx(0.45)
    assert at.window_mean([0.1, 0.2], 2, 5) == pytest.approx(0.15)  # a window longer than the run
    assert at.window_mean([0.1], 2, 1) is None
    rows = at.window_mean([[0.0, 1.0], [0.5, None]], 2, 2)
    assert rows == [pytest.approx(0.25), pytest.approx(1.0)]
    runs = [run("a_s1", 1, [0.2, 0.4], 0.1), run("b_s1", 1, [0.5, 0.9], 0.3)]
    assert at.pair_table(runs, "a", "b", 2, 2)[2].split("|")[2].strip() == "+0.400"  # 0.7 - 0.3
    assert at.pair_table(runs, "a", "b", 2, 2)[0].startswith("| b - a @1-2 mean, seed |")


def test_small_mean_skips_undefined_parts():
    row = [None] * N
    assert at.small_mean(row) is None
    row[SMALL_CLASSES[0]], row[SMALL_CLASSES[1]] = 0.2, 0.4
    assert at.small_mean(row) == pytest.approx(0.3)
