"""Issue 12: `focal_alpha: balanced`, and a run whose alpha weights background above the face parts
says so (log line, `start` event field `alpha`, a `warning` event the cockpit shows)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.alpha import balanced_alpha, describe
from trainer.core.config import ConfigError, load_config
from trainer.core.classes import REAL_SHARES, SMALL_CLASSES
from trainer.core.live import validate

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=16", "data.synthetic_val=4", "data.image_size=64", "training.batch_size=8",
        "training.epochs=1", "training.warmup_epochs=0", "debug.max_steps_per_epoch=1", "training.num_workers=0"]


def test_balanced_formula_on_the_real_shares():
    a = balanced_alpha(REAL_SHARES)
    assert len(a) == 19 and all(0 < x <= 1 for x in a)
    k = 0.5 / sum(math.sqrt(f) for f in REAL_SHARES)
    assert sum(f * k / math.sqrt(f) for f in REAL_SHARES) == pytest.approx(0.5)   # the neutral scalar's mean
    assert a == pytest.approx([min(1.0, k / math.sqrt(f)) for f in REAL_SHARES], abs=1e-6)
    assert a[0] == pytest.approx(0.32, abs=0.01) and a[13] == pytest.approx(0.31, abs=0.01)
    assert all(a[c] == 1.0 for c in SMALL_CLASSES)             # every small part at full weight
    assert balanced_alpha([0.5, 0.5] + [0.0] * 17)[2:] == [1.0] * 17   # absent classes: 1
    with pytest.raises(ValueError):
        balanced_alpha([float("nan")] * 19)


def test_describe_flags_background_heavy_alphas_only():
    plan = describe(0.25, use_focal=True, source="scalar", num_classes=19)
    assert plan["background_heavy"] and plan["background"] == 0.75 and plan["parts_mean"] == 0.25
    assert "focal_alpha 0.25 weights background 0.75" in plan["note"] and "\n" not in plan["note"]
    assert not describe(0.5, use_focal=True, source="scalar", num_classes=19)["background_heavy"]
    assert not describe(0.25, use_focal=False, source="scalar", num_classes=19)["background_heavy"]  # unused
    bal = describe(balanced_alpha(REAL_SHARES), use_focal=True, source="balanced", num_classes=19)
    assert not bal["background_heavy"] and bal["note"] is None and bal["source"] == "balanced"
    heavy_list = describe([0.9] + [0.1] * 18, use_focal=True, source="list", num_classes=19)
    assert heavy_list["background_heavy"] and "focal_alpha (list)" in heavy_list["note"]


def test_config_takes_balanced_but_a_live_set_does_not(tmp_path):
    cfg = load_config(ROOT / "configs" / "lmsa_focal.yaml", ["loss.focal_alpha=balanced"])
    assert cfg.loss.focal_alpha == "balanced"
    with pytest.raises(ConfigError, match="'balanced'"):
        load_config(ROOT / "configs" / "lmsa_focal.yaml", ["loss.focal_alpha=balance"])
    _, reason = validate({"alpha": "balanced"}, {"alpha": 0.25})
    assert reason and "alpha" in reason


def _run(tmp_path: Path, name: str, *sets: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa_focal.yaml"),
           "--run-dir", str(tmp_path / name), "--device", "cpu"]
    for s in (*TINY, *sets):
        cmd += ["--set", s]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]


def test_trainer_resolves_balanced_and_reports_a_background_heavy_alpha(tmp_path):
    procs = {"plan": _run(tmp_path, "plan"), "balanced": _run(tmp_path, "balanced", "loss.focal_alpha=balanced")}
    outs = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outs[name] = out
    # the plan's scalar 0.25: background 0.75 against 0.25 for every part, said in the log, start and a warning
    evs = _events(tmp_path / "plan")
    start = next(e for e in evs if e["type"] == "start")
    assert start["alpha_info"]["source"] == "scalar" and start["alpha_info"]["background_heavy"] is True
    warn = [e for e in evs if e["type"] == "warning" and e["code"] == "alpha_background"]
    assert len(warn) == 1 and warn[0]["message"] == start["alpha_info"]["note"]
    assert [ln for ln in outs["plan"].splitlines() if "weights background 0.75" in ln]
    # balanced: per-class weights from this run's training frequencies, in force from the first step
    evs = _events(tmp_path / "balanced")
    start = next(e for e in evs if e["type"] == "start")
    freqs = next(iter(json.loads((tmp_path / "balanced" / "class_frequencies.json").read_text()).values()))
    expected = balanced_alpha(freqs["frequencies"])
    assert start["alpha_info"]["source"] == "balanced" and start["alpha_info"]["background_heavy"] is False
    assert start["live"]["alpha"] == pytest.approx(expected)
    assert next(e for e in evs if e["type"] == "epoch")["alpha"] == pytest.approx(expected)
    assert not [e for e in evs if e["type"] == "warning" and e["code"] == "alpha_background"]
    assert "weights background" not in outs["balanced"]
