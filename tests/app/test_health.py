"""Health rules engine: every signal firing and not firing, phases, NaN, crashes, actions.

All tests use the DEFAULT rules file with literal numbers just either side of its thresholds,
so changing a threshold, window or phase boundary there breaks a test here.
"""

from __future__ import annotations

import math

import pytest

from app.health import evaluate, load_rules

RULES = load_rules()
PLAN_LIVE = {"lr": 5e-4, "gamma": 2.0, "alpha": 0.25, "use_focal": True, "dropout": 0.15,
             "weight_decay": 1e-4, "warmup_epochs": 10, "epochs": 250, "rotation": 20.0,
             "scale_range": [0.85, 1.15], "hflip": True}


def healthy_val_f(e: int) -> float:
    """0.05/epoch to 0.5 at epoch 10, above 0.65 from epoch ~28, still climbing at 150+."""
    if e <= 10:
        return 0.05 * e
    return min(0.5 + 0.2 * (1 - math.exp(-(e - 10) / 15)) + 0.0008 * (e - 10), 0.95)


def ev(e: int, **kw) -> dict:
    d = {"epoch": e, "train_loss": 1.5 * 0.93 ** e + 0.05, "val_loss": 1.6 * 0.95 ** e + 0.1,
         "val_f": healthy_val_f(e), "pooled_f": None, "lr": 5e-4, "gamma": 2.0, "alpha": 0.25,
         "dropout": 0.15, "epochs": 250, "skipped_steps": 0}
    d["train_f"] = d["val_f"] + 0.05
    d.update(kw)
    if "val_f" in kw and "train_f" not in kw and kw["val_f"] is not None:
        d["train_f"] = kw["val_f"] + 0.05
    return d


def hist(n: int, start: int = 1, **series) -> list[dict]:
    """Epochs start..n; each series is a callable of the epoch, a list (aligned to the END), or a constant."""
    out = []
    epochs = list(range(start, n + 1))
    for i, e in enumerate(epochs):
        kw = {}
        for k, s in series.items():
            if callable(s):
                kw[k] = s(e)
            elif isinstance(s, list):
                j = i - (len(epochs) - len(s))
                if j >= 0:
                    kw[k] = s[j]
            else:
                kw[k] = s
        out.append(ev(e, **kw))
    return out


def sig(v, sid):
    s = v.signal(sid)
    assert s is not None, f"{sid} not checked in phase {v.phase}: {[x.id for x in v.signals]}"
    return s


def state(history, sid, **kw):
    return sig(evaluate(history, RULES, **kw), sid).state


def linear_rel(n_last: int, mean: float, rel_per_epoch: float, end: int) -> list:
    """n_last values around ``mean`` changing by ``rel_per_epoch * mean`` per epoch (negative: falling)."""
    c = (n_last - 1) / 2
    return [mean * (1 + rel_per_epoch * (i - c)) for i in range(n_last)]


# --- healthy runs and phases -------------------------------------------------------------------


@pytest.mark.parametrize("n", [15, 60, 200])
def test_healthy_run_is_green_in_every_phase(n):
    v = evaluate(hist(n), RULES, live=PLAN_LIVE)
    assert v.status == "green", v.summary
    assert not v.actions
    assert all(s.state in ("ok", "pending") for s in v.signals)
    assert "\n" not in v.summary and v.summary.startswith("GREEN")


@pytest.mark.parametrize("n, phase, has, lacks", [
    (20, "early", "train_loss_falls", "val_f_growth"),
    (21, "middle", "val_f_growth", "train_loss_falls"),
    (49, "middle", "f_gap_overfit", "late_target"),  # 21-49: not in the plan, middle rules apply
    (149, "middle", "val_f_oscillation", "late_target"),
    (150, "late", "late_target", "val_f_oscillation"),
])
def test_phase_boundaries(n, phase, has, lacks):
    v = evaluate(hist(n), RULES)
    assert v.phase == phase and v.epoch == n
    ids = [s.id for s in v.signals]
    assert has in ids and lacks not in ids
    assert ids[0] == "run_state" and "no_nonfinite" in ids and "underfitting" in ids


def test_no_epoch_yet():
    v = evaluate([], RULES)
    assert v.phase == "none" and v.status == "green" and v.epoch is None
    assert sig(v, "underfitting").state == "pending"
    assert "no epoch yet" in v.summary


def test_deterministic():
    h = hist(80, val_f=lambda e: 0.6 + (0.06 if e % 2 else 0))
    assert evaluate(h, RULES, live=PLAN_LIVE) == evaluate(h, RULES, live=PLAN_LIVE)


# --- any phase: NaN/Inf, crashes ---------------------------------------------------------------


def test_nan_in_epoch_event_is_red():
    h = hist(8)
    h[5].update(val_loss=None, nonfinite=["val_loss"])
    v = evaluate(h, RULES, live=PLAN_LIVE)
    s = sig(v, "no_nonfinite")
    assert s.state == "failed" and v.status == "red"
    assert "val_loss" in s.detail and "epoch 6" in s.detail
    assert [a.preset for a in v.actions][0] == "unstable"
    assert v.actions[0].values["lr"] == pytest.approx(3e-4)


def test_raw_float_nan_is_red():
    h = hist(8)
    h[-1]["train_loss"] = float("nan")
    assert evaluate(h, RULES).status == "red"


@pytest.mark.parametrize("code, red", [("nonfinite_loss", True), ("nonfinite_grad", True),
                                       ("synthetic_data", False), ("checkpoint_failed", False)])
def test_nonfinite_warning_events(code, red):
    w = [{"type": "warning", "code": code, "message": "x", "epoch": 3, "step": 120}]
    v = evaluate(hist(8), RULES, warnings=w)
    assert (v.status == "red") is red
    assert (sig(v, "no_nonfinite").state == "failed") is red


def test_nonfinite_before_first_epoch_is_red():
    v = evaluate([], RULES, warnings=[{"code": "nonfinite_loss", "epoch": 1}])
    assert v.status == "red" and v.phase == "none"


def test_skipped_steps_count_as_nonfinite():
    h = hist(8)
    h[2]["skipped_steps"] = 2
    s = sig(evaluate(h, RULES), "no_nonfinite")
    assert s.state == "failed" and s.values["skipped_steps"] == 2


def test_crashed_run_is_red_and_other_states_are_not():
    assert evaluate(hist(60), RULES, run_state="crashed").status == "red"
    assert sig(evaluate([], RULES, run_state="crashed"), "run_state").state == "failed"
    for st in ("running", "paused", "finished", "stopped", "starting", "early_stop"):
        assert evaluate(hist(60), RULES, run_state=st).status == "green", st
    with pytest.raises(ValueError, match="run_state"):
        evaluate(hist(3), RULES, run_state="exploded")


# --- early phase -------------------------------------------------------------------------------


def test_train_loss_falls():
    # window 5, needs a fall >= 1% of the level per epoch
    assert state(hist(12, train_loss=linear_rel(5, 1.0, -0.012, 12)), "train_loss_falls") == "ok"
    assert state(hist(12, train_loss=linear_rel(5, 1.0, -0.008, 12)), "train_loss_falls") == "warning"
    # only the last 5 epochs count: a rise before the window does not matter
    tl = [3.0, 0.2] + linear_rel(5, 1.0, -0.012, 12)
    assert state(hist(12, train_loss=tl), "train_loss_falls") == "ok"
    assert state(hist(4), "train_loss_falls") == "pending"
    assert state(hist(5), "train_loss_falls") == "ok"


def test_val_loss_follows():
    # train falls 4%/epoch; val must fall >= 0.25 x that = 1%/epoch
    tl = linear_rel(5, 1.0, -0.04, 12)
    assert state(hist(12, train_loss=tl, val_loss=linear_rel(5, 1.2, -0.011, 12)), "val_loss_follows") == "ok"
    assert state(hist(12, train_loss=tl, val_loss=linear_rel(5, 1.2, -0.009, 12)), "val_loss_follows") == "warning"
    assert state(hist(12, train_loss=tl, val_loss=linear_rel(5, 1.2, 0.02, 12)), "val_loss_follows") == "warning"
    assert state(hist(4), "val_loss_follows") == "pending"


def test_val_loss_rising():
    # window 5, warning when val loss rises >= 1% of its level per epoch
    v = evaluate(hist(12, val_loss=linear_rel(5, 1.0, 0.011, 12)), RULES, live=PLAN_LIVE)
    assert sig(v, "val_loss_rising").state == "warning" and v.status == "yellow"
    assert state(hist(12, val_loss=linear_rel(5, 1.0, 0.009, 12)), "val_loss_rising") == "ok"
    assert state(hist(12), "val_loss_rising") == "ok"
    assert state(hist(4, val_loss=[1.0, 1.2, 1.4, 1.6]), "val_loss_rising") == "pending"


def test_loss_gap():
    # mean |val - train| over the last 3 epochs must stay <= 2.0
    assert state(hist(12, train_loss=0.5, val_loss=[2.6, 2.6, 2.6]), "loss_gap") == "warning"  # 2.1
    assert state(hist(12, train_loss=0.5, val_loss=[2.4, 2.4, 2.4]), "loss_gap") == "ok"  # 1.9
    assert state(hist(12, train_loss=2.6, val_loss=0.5), "loss_gap") == "warning"  # either direction
    # the window is 3: a huge gap 4 epochs ago does not count, 2 epochs of history are pending
    assert state(hist(12, train_loss=0.5, val_loss=[9.0, 2.4, 2.4, 2.4]), "loss_gap") == "ok"
    assert state(hist(2, train_loss=0.5, val_loss=9.0), "loss_gap") == "pending"


def test_early_val_f_target():
    # healthy: val F > 0.30 by epoch 10
    below = lambda e: 0.295 * e / 10  # noqa: E731
    assert state(hist(10, val_f=below), "early_val_f_target") == "warning"
    assert state(hist(9, val_f=below), "early_val_f_target") == "pending"
    assert state(hist(10, val_f=lambda e: 0.305 * e / 10), "early_val_f_target") == "ok"
    assert state(hist(7, val_f=lambda e: 0.31 if e == 7 else 0.1), "early_val_f_target") == "ok"  # early
    late = hist(12, val_f=lambda e: 0.29 if e <= 10 else (0.3 if e == 11 else 0.5))  # reached only at 12
    s = sig(evaluate(late, RULES), "early_val_f_target")
    assert s.state == "ok" and s.detail == "val F 0.500 > 0.30 at epoch 12, late: best 0.290 by epoch 10"
    assert s.values["recovered_epoch"] == 12 and s.values["best_val_f"] == 0.29
    assert state(late[:11], "early_val_f_target") == "warning"  # 0.30 at epoch 11 is not above the line


def test_a_missed_early_milestone_that_a_fix_made_good_is_green_and_suggests_nothing():
    """Issue 12's sick run: yellow at epoch 10 (0.22), the one-key fix, 0.59 by epoch 13. Staying yellow
    would keep offering the fix that has worked, and its relative LR step would compound if pressed again."""
    curve = {10: 0.22, 11: 0.27, 12: 0.33, 13: 0.59}
    h = hist(13, val_f=lambda e: curve.get(e, 0.022 * e))
    v = evaluate(h[:10], RULES, live=PLAN_LIVE)
    assert v.status == "yellow" and [a.preset for a in v.actions] == ["early_catch_up"]
    v = evaluate(h[:11], RULES, live=PLAN_LIVE)  # 0.27: not yet
    assert v.status == "yellow" and [a.preset for a in v.actions] == ["early_catch_up"]
    v = evaluate(h[:12], RULES, live=PLAN_LIVE)
    assert v.status == "green" and v.actions == () and "late" in sig(v, "early_val_f_target").detail
    # below the plan's warning line at 10: the floor recovers at 0.20, the target only above 0.30
    low = hist(12, val_f=lambda e: {10: 0.15, 11: 0.21, 12: 0.25}.get(e, 0.01 * e))
    assert state(low[:10], "early_val_f_floor") == "warning"
    s = sig(evaluate(low[:11], RULES), "early_val_f_floor")
    assert s.state == "ok" and s.detail == "val F 0.210 >= 0.20 at epoch 11, late: 0.150 at epoch 10"
    assert state(low, "early_val_f_target") == "warning"


def test_early_val_f_floor():
    # warning: val F < 0.20 at epoch 10
    v = evaluate(hist(10, val_f=lambda e: 0.018 * e), RULES, live=PLAN_LIVE)
    s = sig(v, "early_val_f_floor")
    assert s.state == "warning" and s.detail == "val F 0.180 < 0.20 at epoch 10"
    assert v.status == "yellow"
    assert state(hist(10, val_f=lambda e: 0.021 * e), "early_val_f_floor") == "ok"
    assert state(hist(9, val_f=0.0), "early_val_f_floor") == "pending"
    # between the floor and the healthy line: only the healthy target warns
    v = evaluate(hist(10, val_f=lambda e: 0.025 * e), RULES)
    assert sig(v, "early_val_f_floor").state == "ok" and sig(v, "early_val_f_target").state == "warning"


def test_early_action_lowers_gamma_to_2_or_else_lr():
    h = hist(10, val_f=lambda e: 0.018 * e)
    v = evaluate(h, RULES, live={**PLAN_LIVE, "gamma": 2.5})
    # below the plan's 0.20 warning line its action comes first; the catch-up for the missed healthy line after it
    assert [(a.preset, a.values) for a in v.actions][0] == ("early_fix", {"gamma": 2.0})
    assert [a.preset for a in v.actions] == ["early_fix", "early_catch_up"]
    v = evaluate(h, RULES, live=PLAN_LIVE)
    assert v.actions[0].preset == "early_fix" and v.actions[0].values == {"lr": pytest.approx(3e-4)}
    assert "2.0" in v.actions[0].text and "LR" in v.actions[0].text
    # several early warnings, one action
    h = hist(10, val_f=lambda e: 0.018 * e, train_loss=0.5, val_loss=3.0)
    v = evaluate(h, RULES, live=PLAN_LIVE)
    assert sum(1 for s in v.signals if s.state == "warning") >= 3
    assert [a.preset for a in v.actions] == ["early_fix", "early_catch_up"]
    # without live values the action names the preset but carries nothing to send
    assert evaluate(h, RULES).actions[0].values == {}


def test_behind_the_milestone_but_above_the_warning_line_catches_up():
    """Issue 12: val F 0.25 at epoch 10 (no plan warning, the healthy line missed) suggests raising the LR,
    not the plan's 'lower gamma or the LR' (which is for its warnings, and comes first below 0.20)."""
    v = evaluate(hist(10, val_f=lambda e: 0.025 * e), RULES, live=PLAN_LIVE)
    assert v.status == "yellow" and [a.preset for a in v.actions] == ["early_catch_up"]
    assert v.actions[0].values == {"lr": pytest.approx(8e-4)}
    v = evaluate(hist(10, val_f=lambda e: 0.018 * e), RULES, live=PLAN_LIVE)
    assert [a.preset for a in v.actions] == ["early_fix", "early_catch_up"]


# --- middle phase ------------------------------------------------------------------------------


def test_val_f_growth():
    # least-squares slope over the last 20 epochs must be > 0
    up = lambda e: 0.6 + 0.0003 * e  # noqa: E731
    assert state(hist(60, val_f=up), "val_f_growth") == "ok"
    assert state(hist(60, val_f=lambda e: 0.7 - 0.0003 * e), "val_f_growth") == "warning"
    assert state(hist(60, val_f=0.66), "val_f_growth") == "warning"
    # the window is 20 epochs: a high point just before it does not count, in it it drags the trend
    assert state(hist(60, val_f=lambda e: 0.9 if e == 40 else up(e)), "val_f_growth") == "ok"
    assert state(hist(60, val_f=lambda e: 0.9 if e == 41 else up(e)), "val_f_growth") == "warning"
    # windows count epochs that have a val F: 19 of them is not enough
    assert state(hist(25, val_f=lambda e: None if e <= 6 else up(e)), "val_f_growth") == "pending"
    assert state(hist(25, val_f=lambda e: None if e <= 5 else up(e)), "val_f_growth") == "ok"


def test_mid_val_f_target():
    # healthy: val F > 0.65 by epoch 100
    assert state(hist(100, val_f=lambda e: min(0.64, 0.01 * e)), "mid_val_f_target") == "warning"
    assert state(hist(99, val_f=lambda e: min(0.64, 0.01 * e)), "mid_val_f_target") == "pending"
    assert state(hist(100, val_f=lambda e: min(0.66, 0.01 * e)), "mid_val_f_target") == "ok"
    assert state(hist(70, val_f=lambda e: min(0.66, 0.01 * e)), "mid_val_f_target") == "ok"  # reached at 66
    late = hist(104, val_f=lambda e: min(0.64, 0.01 * e) if e <= 100 else 0.7)  # missed at 100, 0.70 from 101
    assert state(late[:100], "mid_val_f_target") == "warning" and state(late, "mid_val_f_target") == "ok"
    s = sig(evaluate(hist(60, val_f=0.5, total_epochs=80), RULES, total_epochs=80), "mid_val_f_target")
    assert s.state == "pending" and "ends at epoch 80" in s.detail


def test_mid_target_miss_suggests_underfitting_preset():
    v = evaluate(hist(100, val_f=lambda e: min(0.64, 0.01 * e) + 0.0001 * e), RULES, live=PLAN_LIVE)
    acts = {a.preset: a.values for a in v.actions}
    assert acts["underfitting"] == {"lr": pytest.approx(8e-4), "dropout": pytest.approx(0.1), "epochs": 350}


def test_f_gap_healthy():
    # healthy: mean train F - val F over the last 5 epochs < 0.10
    assert state(hist(60, train_f=lambda e: healthy_val_f(e) + 0.095), "f_gap") == "ok"
    assert state(hist(60, train_f=lambda e: healthy_val_f(e) + 0.105), "f_gap") == "warning"
    assert state(hist(60, train_f=None), "f_gap") == "pending"


def test_f_gap_overfit():
    # warning: mean train F - val F over the last 5 epochs > 0.15
    v = evaluate(hist(60, train_f=lambda e: healthy_val_f(e) + 0.16), RULES, live=PLAN_LIVE)
    assert sig(v, "f_gap_overfit").state == "warning" and v.status == "yellow"
    assert [a.preset for a in v.actions] == ["overfitting", "stop"]
    assert v.actions[0].values == {"dropout": pytest.approx(0.25), "weight_decay": pytest.approx(2e-4),
                                   "rotation": pytest.approx(30.0), "scale_range": pytest.approx([0.8, 1.2])}
    assert v.actions[1].values == {}
    v = evaluate(hist(60, train_f=lambda e: healthy_val_f(e) + 0.14), RULES)
    assert sig(v, "f_gap_overfit").state == "ok" and sig(v, "f_gap").state == "warning"
    # the window is 5: a big gap 6 epochs ago does not count
    gaps = [0.5] + [0.14] * 5
    h = hist(60)
    for e, g in zip(h[-6:], gaps):
        e["train_f"] = e["val_f"] + g
    assert state(h, "f_gap_overfit") == "ok"
    h[-6]["train_f"], h[-5]["train_f"] = h[-6]["val_f"] + 0.14, h[-5]["val_f"] + 0.5
    assert state(h, "f_gap_overfit") == "warning"


def osc(amp: float, base: float = 0.68):
    return lambda e: base + (amp if e % 2 else -amp) / 2 + 0.0005 * e


def test_val_f_oscillation():
    # >= 2 reversals of epoch-to-epoch jumps >= 0.05 within the last 10 epochs
    v = evaluate(hist(60, val_f=osc(0.06)), RULES, live=PLAN_LIVE)
    assert sig(v, "val_f_oscillation").state == "warning"
    assert [a.preset for a in v.actions][:3] == ["unstable", "lr_down", "gamma_down"]
    assert v.actions[0].values == {"gamma": 1.5, "lr": pytest.approx(3e-4), "warmup_epochs": 20}
    assert v.actions[1].values == {"lr": pytest.approx(3e-4)}
    assert v.actions[2].values == {"gamma": 1.5}
    assert state(hist(60, val_f=osc(0.045)), "val_f_oscillation") == "ok"
    base = lambda e: 0.66 + 0.001 * e  # noqa: E731
    one_dip = lambda e: base(e) - (0.1 if e == 55 else 0)  # noqa: E731
    assert state(hist(60, val_f=one_dip), "val_f_oscillation") == "ok"  # 1 reversal
    two = lambda e: base(e) + (0.1 if e in (53, 57) else 0)  # noqa: E731
    assert state(hist(60, val_f=two), "val_f_oscillation") == "warning"  # 4 reversals
    two_close = lambda e: base(e) + (0.1 if e == 56 else 0) - (0.1 if e == 57 else 0)  # noqa: E731
    assert state(hist(60, val_f=two_close), "val_f_oscillation") == "warning"  # up, down, up: 2
    # the window is epochs 51-60: a spike at 52 is a reversal inside it, one at 51 is not
    edge = lambda spike: lambda e: base(e) + (0.1 if e == spike else 0) - (0.1 if e == 56 else 0)  # noqa: E731
    assert state(hist(60, val_f=edge(52)), "val_f_oscillation") == "warning"
    assert state(hist(60, val_f=edge(51)), "val_f_oscillation") == "ok"
    assert state(hist(30, val_f=lambda e: None if e < 22 else osc(0.06)(e)), "val_f_oscillation") == "pending"


def test_val_f_stagnation():
    # warning when no new best by more than 0.003 for 20 epochs
    def flat_after(best_epoch: int, tail: float = 0.0, tail_epoch: int = 0):
        def f(e):
            if e <= best_epoch:
                return 0.3 + 0.3 * e / best_epoch
            return 0.6 + (tail if tail_epoch and e >= tail_epoch else 0.0) - 0.01
        return f

    v = evaluate(hist(60, val_f=flat_after(40)), RULES, live=PLAN_LIVE)
    s = sig(v, "val_f_stagnation")
    assert s.state == "warning" and s.values["epochs_since_best"] == 20
    assert {a.preset for a in v.actions} >= {"lr_up", "augment_up"}
    assert {a.preset: a.values for a in v.actions}["lr_up"] == {"lr": pytest.approx(8e-4)}
    assert state(hist(60, val_f=flat_after(41)), "val_f_stagnation") == "ok"
    # min_delta 0.003: +0.0025 over the best is not a new best, +0.0035 is
    assert state(hist(60, val_f=flat_after(40, 0.0125, 55)), "val_f_stagnation") == "warning"
    assert state(hist(60, val_f=flat_after(40, 0.0135, 55)), "val_f_stagnation") == "ok"
    # slow steady creep keeps setting new bests
    assert state(hist(80, val_f=lambda e: 0.5 + 0.003 * e), "val_f_stagnation") == "ok"
    assert state(hist(40, val_f=lambda e: None if e < 21 else 0.6), "val_f_stagnation") == "pending"


#: lmsa_focal as shipped on the built-in data (seed 42), val F of epochs 100-149: +0.004 in 20 epochs
CREEP = [0.8472, 0.8453, 0.8489, 0.8511, 0.8489, 0.8458, 0.8473, 0.8523, 0.8523, 0.8459, 0.8534, 0.8498, 0.8504, 0.8508, 0.8509, 0.8498, 0.8522, 0.852, 0.8535, 0.8547, 0.8551, 0.8567, 0.8544, 0.8571, 0.8552, 0.8544, 0.8573, 0.8558, 0.8548, 0.856, 0.857, 0.8595, 0.858, 0.8562, 0.8595, 0.8588, 0.8575, 0.8584, 0.8565, 0.8589, 0.8588, 0.8606, 0.8592, 0.8596, 0.86, 0.8617, 0.8593, 0.8624, 0.8631, 0.861]


def test_a_steady_creep_is_growth_not_stagnation():
    """With min_delta 0.005 this run was yellow at epochs 139-140 while val_f_growth said it grew
    (bench/RESULTS.md, issue 12): the two signals contradicted each other. 0.003 is 1.5x the
    epoch-to-epoch noise of its val F (sd 0.0021); a real plateau is still flagged (next test)."""
    for n in range(120, 150):
        h = hist(n, val_f=lambda e: CREEP[e - 100] if e >= 100 else 0.7 + 0.0015 * e)
        assert state(h, "val_f_stagnation") == "ok", n
        assert state(h, "val_f_growth") == "ok", n


def test_a_noisy_plateau_is_still_stagnation():
    """A plateau from epoch 100 with the same noise (a fixed pseudo-random sequence, sd 0.002)."""
    import random

    rnd = random.Random(0)
    noise = [rnd.gauss(0, 0.002) for _ in range(60)]
    flagged = [n for n in range(101, 150)  # the middle phase ends at 149
               if state(hist(n, val_f=lambda e: 0.85 + noise[e - 100] if e >= 100 else 0.7 + 0.0015 * e),
                        "val_f_stagnation") == "warning"]
    assert flagged and flagged[0] <= 130


# --- late phase --------------------------------------------------------------------------------


@pytest.mark.parametrize("best, st, status", [
    (0.74, "ok", "green"), (0.731, "ok", "green"), (0.73, "warning", "yellow"), (0.72, "warning", "yellow"),
    (0.70, "warning", "yellow"), (0.699, "failed", "red"), (0.60, "failed", "red"),
])
def test_late_target_bands(best, st, status):
    h = hist(160, val_f=lambda e: best if e == 155 else min(best - 0.02, healthy_val_f(e)))
    # keep the rest quiet: no stagnation etc. are checked in the late phase
    v = evaluate(h, RULES, live=PLAN_LIVE)
    assert v.phase == "late"
    assert sig(v, "late_target").state == st
    assert v.status == status, v.summary
    acts = [a.preset for a in v.actions]
    assert ("redesign" in acts) is (st == "failed")
    if st == "failed":
        assert "needs a redesign" in sig(v, "late_target").detail


def test_late_target_uses_the_best_val_f():
    h = hist(170, val_f=lambda e: 0.74 if e == 151 else 0.69)
    assert state(h, "late_target") == "ok"


# --- underfitting ------------------------------------------------------------------------------


def test_underfitting():
    # warning: val F < 0.65 for 50 epochs in a row
    v = evaluate(hist(80, val_f=lambda e: 0.655 if e == 30 else 0.645), RULES, live=PLAN_LIVE)
    s = sig(v, "underfitting")
    assert s.state == "warning" and s.values["streak"] == 50
    assert {a.preset: a.values for a in v.actions}["underfitting"] == {
        "lr": pytest.approx(8e-4), "dropout": pytest.approx(0.1), "epochs": 350}
    assert state(hist(80, val_f=lambda e: 0.655 if e == 31 else 0.645), "underfitting") == "pending"  # 49
    assert state(hist(80, val_f=lambda e: 0.655 if e == 80 else 0.645), "underfitting") == "ok"
    assert state(hist(80, val_f=lambda e: 0.649 if e == 30 else 0.64), "underfitting") == "warning"
    # any phase, from the first epoch on (the literal plan rule)
    assert state(hist(50, val_f=0.6), "underfitting") == "warning"
    assert state(hist(49, val_f=0.6), "underfitting") == "pending"
    assert state(hist(200, val_f=0.6), "underfitting") == "warning"
    assert state(hist(15, val_f=0.1), "underfitting") == "pending"


def test_underfitting_count_start_can_be_moved():
    rules = load_rules(overrides={"milestones": {"underfit_from_epoch": 51}})
    assert sig(evaluate(hist(99, val_f=0.6), rules), "underfitting").state == "pending"
    assert sig(evaluate(hist(100, val_f=0.6), rules), "underfitting").state == "warning"


# --- overrides change the judgement ------------------------------------------------------------


def test_run_config_overrides_thresholds():
    h = hist(10, val_f=lambda e: 0.012 * e)  # 0.12 at epoch 10: red flags on the real task
    assert state(h, "early_val_f_floor") == "warning"
    synthetic = load_rules(overrides={"thresholds": {"early_val_f_healthy": 0.1, "early_val_f_warning": 0.05}},
                           source="runs/synth/config.yaml")
    v = evaluate(h, synthetic)
    assert sig(v, "early_val_f_floor").state == "ok" and sig(v, "early_val_f_target").state == "ok"


def test_phase_lists_can_be_changed():
    rules = load_rules(overrides={"phases": {"late": ["late_target", "f_gap_overfit"]}})
    v = evaluate(hist(160, train_f=lambda e: healthy_val_f(e) + 0.2), rules)
    assert sig(v, "f_gap_overfit").state == "warning"
    assert evaluate(hist(160, train_f=lambda e: healthy_val_f(e) + 0.2), RULES).signal("f_gap_overfit") is None


# --- the action table: every signal's suggestions ----------------------------------------------

EARLY = ["early_fix"]


@pytest.mark.parametrize("sid, presets", [
    ("train_loss_falls", EARLY), ("val_loss_follows", EARLY), ("early_val_f_target", ["early_catch_up"]),
    ("val_loss_rising", EARLY), ("loss_gap", EARLY), ("early_val_f_floor", EARLY),
    ("no_nonfinite", ["unstable"]),
    ("val_f_growth", ["lr_up", "augment_up"]), ("mid_val_f_target", ["underfitting"]), ("f_gap", ["overfitting"]),
    ("val_f_oscillation", ["unstable", "lr_down", "gamma_down"]), ("f_gap_overfit", ["overfitting", "stop"]),
    ("val_f_stagnation", ["lr_up", "augment_up"]), ("late_target", ["redesign"]),
    ("underfitting", ["underfitting"]), ("run_state", []),
])
def test_action_table(sid, presets):
    acts = RULES.actions_for(sid)
    assert [a.preset for a in acts] == presets
    assert all(a.text for a in acts)
    if sid == "late_target":
        assert acts[0].state == "failed"  # "acceptable" suggests nothing


def test_action_cites_the_signal_and_resolves_against_live():
    h = hist(60, val_f=lambda e: 0.6, train_f=lambda e: 0.6)  # flat: growth and stagnation both warn
    v = evaluate(h, RULES, live={**PLAN_LIVE, "lr": 1e-3})
    first = {a.preset: a for a in v.actions}
    assert first["lr_up"].signal_id == "val_f_growth"
    assert first["lr_up"].values == {"lr": pytest.approx(1.6e-3)}
    assert "停滞" in first["lr_up"].text


# --- a preset already applied is held back while its effect shows ----------------------------------


def test_a_preset_applied_is_held_back_for_the_settle_epochs():
    h = hist(10, val_f=lambda e: 0.025 * e)  # 0.25 at the milestone: early_catch_up
    v = evaluate(h, RULES, live=PLAN_LIVE, applied=[("early_catch_up", 10)])
    act = v.actions[0]
    assert act.preset == "early_catch_up" and act.settling and (act.applied_epoch, act.settled_after) == (10, 13)
    assert act.values == {"lr": pytest.approx(8e-4)}  # still resolved: a confirmed resend sends these
    assert act.settling_words() == "early_catch_up applied in epoch 10; suggested again after epoch 13 if still needed"
    assert "early_catch_up (applied in epoch 10, settling)" in v.summary
    assert v.status == "yellow"  # the colour is the signals': holding the suggestion back changes no colour
    flat = hist(13, val_f=lambda e: 0.025 * min(e, 10))  # still 0.25: the fix did not work
    assert evaluate(flat[:12], RULES, live=PLAN_LIVE, applied=[("early_catch_up", 10)]).actions[0].settling
    assert not evaluate(flat, RULES, live=PLAN_LIVE, applied=[("early_catch_up", 10)]).actions[0].settling
    # another preset, or none applied: nothing held back; the latest application counts
    assert not evaluate(h, RULES, live=PLAN_LIVE, applied=[("lr_down", 10)]).actions[0].settling
    assert evaluate(flat, RULES, live=PLAN_LIVE, applied=[("early_catch_up", 2), ("early_catch_up", 11)]).actions[0].settling


def test_settle_zero_never_holds_back():
    rules = load_rules(overrides={"windows": {"settle": 0}})
    v = evaluate(hist(10, val_f=lambda e: 0.025 * e), rules, live=PLAN_LIVE, applied=[("early_catch_up", 10)])
    assert not v.actions[0].settling
    with pytest.raises(ValueError, match="windows.settle"):
        load_rules(overrides={"windows": {"settle": -1}})


def test_applied_presets_reads_the_reasons_the_keys_write():
    from types import SimpleNamespace as A

    from app.health import applied_presets

    adj = [A(id="a1", cmd="set", status="applied", reason="suggested: early_catch_up", answer_epoch=11),
           A(id="a2", cmd="set", status="applied", reason="preset: lr_down", answer_epoch=12),
           A(id="a3", cmd="set", status="applied", reason="preset: unstable (bench/sick_runs.py)", answer_epoch=3),
           A(id="a4", cmd="set", status="refused", reason="preset: lr_up", answer_epoch=12),
           A(id="a5", cmd="set", status="pending", reason="preset: gamma_up", answer_epoch=None),
           A(id="a6", cmd="set", status="applied", reason="preset: gamma_down", answer_epoch=13),
           A(id="a7", cmd="set", status="applied", reason="undo a6 (gamma 2.5→2)", answer_epoch=13),
           A(id="a8", cmd="set", status="refused", reason="undo a2 (lr 5e-4→3e-4)", answer_epoch=13),
           A(id="a9", cmd="set", status="applied", reason="", answer_epoch=13),
           A(id="b1", cmd="pause", status="applied", reason="preset: x", answer_epoch=13)]
    # an undone preset is not held back; a refused undo takes nothing back
    assert applied_presets(adj) == [("early_catch_up", 11), ("lr_down", 12), ("unstable", 3)]
