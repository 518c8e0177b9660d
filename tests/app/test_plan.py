"""Plans: the gate language, `segwatch run --serial` (Plan B) and `--sweep` on real tiny trainers.

The real runs are started once per module (both serial plans at once) and shared by the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.plan.gate import DEFAULT_GATE, Gate, GateError
from app.plan.model import list_plans, load_plan, read_run_record
from app.runlib import Run, list_runs

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic_train=32", "data.synthetic_val=8", "data.image_size=64", "training.batch_size=8",
        "training.epochs=2", "training.warmup_epochs=0"]


def segwatch(*args: str) -> list[str]:
    cmd = [sys.executable, "-m", "app", *args]
    for s in TINY:
        cmd += ["--set", s]
    return cmd


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


# --- the gate language ---------------------------------------------------------------------

def test_default_gate_is_the_plans_plan_b():
    g = Gate(DEFAULT_GATE)
    r = g.evaluate({"best_val_f": 0.70, "success_threshold": 0.73})
    assert r.holds and r.why == "best_val_f 0.7 < success_threshold 0.73: holds"
    assert r.values == {"best_val_f": 0.70, "success_threshold": 0.73}
    assert not g.evaluate({"best_val_f": 0.75, "success_threshold": 0.73}).holds


def test_gate_expressions():
    v = {"best_val_f": 0.6, "final_val_f": 0.55, "status": "finished", "epochs": 250, "success_threshold": 0.73,
         "acceptable_threshold": 0.70}
    assert Gate('status == "finished" and final_val_f < success_threshold - 0.02').evaluate(v).holds
    assert Gate("not (best_val_f >= acceptable_threshold) or epochs < 10").evaluate(v).holds
    assert Gate("0.5 < best_val_f <= 0.6").evaluate(v).holds
    assert not Gate("status == 'crashed'").evaluate(v).holds
    assert Gate("best_val_f * 2 > 1 and -epochs < 0").evaluate(v).holds


def test_unknown_values_never_hold_and_say_which():
    r = Gate("best_val_f < success_threshold").evaluate({"best_val_f": None, "success_threshold": 0.73})
    assert not r.holds and "best_val_f is not known" in r.why
    r = Gate("not best_val_f > 0.5").evaluate({"best_val_f": float("nan")})
    assert not r.holds  # not(unknown) is not "true"


@pytest.mark.parametrize("text, expect", [
    ('__import__("os").system("true")', "is not allowed"),
    ("best_val_f.real > 0", "is not allowed"),
    ("[best_val_f][0] > 0", "is not allowed"),
    ("best_val_f ** 2 > 0", "is not allowed"),
    ("best_val_f in (1, 2)", "is not allowed"),
    ("lambda: 1", "is not allowed"),
    ("best_vall_f < 0.7", "did you mean 'best_val_f'"),
    ("best_val_f <", "invalid syntax"),
    ("", "empty expression"),
    ("x" * 600, "at most 500"),
])
def test_bad_gates_are_refused_with_one_line(text, expect):
    with pytest.raises(GateError) as e:
        Gate(text)
    assert expect in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("args, expect", [
    (["--serial", "configs/baseline.yaml"], "at least two CONFIGs"),
    (["configs/baseline.yaml", "configs/lmsa.yaml", "--gate", "best_val_f < 0.7"], "--gate needs --serial"),
    (["--serial", "configs/baseline.yaml", "configs/lmsa.yaml", "--gate", "best_val_f <"], "invalid syntax"),
    (["configs/lmsa_focal.yaml", "--sweep", "loss.focal_gama=1,2"], "did you mean 'loss.focal_gamma'"),
    (["configs/lmsa_focal.yaml", "--sweep", "loss.focal_gamma=1,99"], "focal_gamma"),
    (["configs/lmsa_focal.yaml", "--sweep", "loss.focal_gamma=1,1"], "repeated"),
    (["configs/lmsa_focal.yaml", "--max-parallel", "2"], "--max-parallel needs --sweep"),
    (["--serial", "configs/baseline.yaml", "configs/lmsa.yaml", "--sweep", "loss.focal_gamma=1,2"], "one of them"),
])
def test_plan_input_is_checked_before_anything_starts(tmp_path, args, expect):
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "app", "run", *args, "--runs-dir", str(runs), "--headless"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=env())
    assert p.returncode == 2 and expect in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


# --- real serial plans ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def serial_plans(tmp_path_factory):
    """Two Plan B runs side by side: one whose gate holds (the default gate: a tiny run is far below
    0.73), one whose gate does not (the rules' success threshold lowered to 0.01 for that plan)."""
    base = tmp_path_factory.mktemp("plans")
    holds, skips = base / "holds", base / "skips"
    procs = {
        "holds": subprocess.Popen(segwatch("run", "--serial", "configs/baseline.yaml", "configs/lmsa.yaml",
                                           "--runs-dir", str(holds), "--headless", "--interval", "0.3"),
                                  cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "skips": subprocess.Popen(segwatch("run", "--serial", "configs/baseline.yaml", "configs/lmsa.yaml",
                                           "--runs-dir", str(skips), "--headless", "--interval", "0.3",
                                           "--set", "health.thresholds.late_success=0.01",
                                           "--set", "health.thresholds.late_acceptable=0.005"),
                                  cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    out = {}
    for k, p in procs.items():
        try:
            o, e = p.communicate(timeout=400)
        finally:
            if p.poll() is None:
                p.kill()
        out[k] = (p.returncode, o, e)
    return {"holds": (holds, *out["holds"]), "skips": (skips, *out["skips"])}


def test_serial_gate_holds_runs_both(serial_plans):
    runs_dir, rc, out, err = serial_plans["holds"]
    assert rc == 0, err + out
    assert [d.name for d in list_runs(runs_dir)] == ["baseline", "lmsa"]
    a, b = Run(runs_dir / "baseline"), Run(runs_dir / "lmsa")
    a.refresh(), b.refresh()
    assert a.state.status == "finished" and b.state.status == "finished"
    assert b.state.start["t"] > a.state.end["t"]  # B started after A ended
    # the decision, in B's record and in A's
    rec_b = read_run_record(runs_dir / "lmsa")
    d = rec_b["decision"]
    assert rec_b["after"] == "baseline" and rec_b["gate"] == DEFAULT_GATE and rec_b["state"] == "ended"
    assert d["holds"] is True and d["action"] == "start" and d["after"] == "baseline"
    assert d["values"] == {"best_val_f": a.state.best_val_f, "success_threshold": 0.73}
    assert "holds" in d["why"] and "best_val_f" in d["why"]
    rec_a = read_run_record(runs_dir / "baseline")
    assert rec_a["next"][0]["run"] == "lmsa" and rec_a["next"][0]["holds"] is True
    (pf,) = list_plans(runs_dir)
    plan = load_plan(pf)
    assert plan.status == "done" and [it.state for it in plan.items] == ["ended", "ended"]
    assert plan.items[0].result["best_val_f"] == a.state.best_val_f
    # the headless mode said it
    assert "started lmsa (gate: after baseline (finished): best_val_f" in out
    assert f"plan {plan.name} done" in out


def test_serial_gate_does_not_hold_skips_b(serial_plans):
    runs_dir, rc, out, err = serial_plans["skips"]
    assert rc == 0, err + out
    assert [d.name for d in list_runs(runs_dir)] == ["baseline"]  # lmsa never ran
    b_dir = runs_dir / "lmsa"
    assert sorted(p.name for p in b_dir.iterdir()) == ["plan.json"]  # only the decision
    rec = read_run_record(b_dir)
    assert rec["state"] == "skipped" and rec["decision"]["holds"] is False and rec["decision"]["action"] == "skip"
    assert rec["decision"]["values"]["success_threshold"] == 0.01
    assert "does not hold" in rec["decision"]["why"]
    b = Run(b_dir)
    b.refresh()
    assert b.state.status == "skipped" and "does not hold" in b.state.status_detail()
    assert "lmsa skipped" in out and "does not hold" in out
    assert read_run_record(runs_dir / "baseline")["next"][0]["holds"] is False


async def test_cockpit_shows_the_queue_gate_and_outcome(serial_plans):
    from tui_helpers import wait_for

    from app.plan.watch import PlanWatch
    from app.tui.app import SegwatchApp
    from app.health import load_rules

    runs_dir = serial_plans["skips"][0]
    (pf,) = list_plans(runs_dir)
    runs = [Run(runs_dir / "baseline"), Run(runs_dir / "lmsa")]
    app = SegwatchApp(runs, [load_rules(), load_rules()], interval=0.1, gpu=False, plan=PlanWatch(pf))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: "does not hold" in app.plan_bar.text, 20, "the gate's outcome in the plan bar")
        text = app.plan_bar.text
        assert "Plan B" in text and "baseline" in text and "lmsa" in text and "skipped" in text
        assert "best_val_f" in text and "success_threshold 0.01" in text
        await wait_for(pilot, lambda: 1 in app.views and app.views[1].status == "skipped", 20, "lmsa pane skipped")


# --- sweeps -----------------------------------------------------------------------------------

def test_sweep_one_run_per_value_named_after_it(tmp_path):
    runs_dir = tmp_path / "runs"
    p = subprocess.run(segwatch("run", "configs/lmsa_focal.yaml", "--sweep", "loss.focal_gamma=1,2.5",
                                "--max-parallel", "2", "--runs-dir", str(runs_dir), "--headless", "--interval", "0.3"),
                       capture_output=True, text=True, timeout=400, cwd=ROOT, env=env())
    assert p.returncode == 0, p.stderr + p.stdout
    names = sorted(d.name for d in list_runs(runs_dir))
    assert names == ["lmsa_focal-gamma1", "lmsa_focal-gamma2.5"]
    for name, gamma in (("lmsa_focal-gamma1", 1), ("lmsa_focal-gamma2.5", 2.5)):
        r = Run(runs_dir / name)
        r.refresh()
        assert r.state.status == "finished" and r.state.config["loss"]["focal_gamma"] == gamma
        assert read_run_record(runs_dir / name)["values"] == {"loss.focal_gamma": gamma}
    (pf,) = list_plans(runs_dir)
    plan = load_plan(pf)
    assert plan.kind == "sweep" and plan.max_parallel == 2 and plan.status == "done"


def test_cancelled_sweep_never_starts_its_queue(tmp_path):
    runs_dir = tmp_path / "runs"
    p = subprocess.Popen(segwatch("run", "configs/lmsa_focal.yaml", "--sweep", "loss.focal_alpha=0.25,0.5",
                                  "--max-parallel", "1", "--runs-dir", str(runs_dir), "--headless", "--interval", "0.3"),
                         cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        plan = None
        while time.monotonic() < deadline and p.poll() is None:  # another process's files: poll them
            pf = list_plans(runs_dir)
            plan = load_plan(pf[0]) if pf else None
            if plan and plan.items[0].state == "started":
                break
            time.sleep(0.1)
        if p.poll() is not None:
            raise AssertionError(f"segwatch run exited {p.returncode} first: {p.communicate()[1][-2000:]}")
        assert plan and plan.items[0].state == "started", plan
        c = subprocess.run([sys.executable, "-m", "app", "plan", plan.name, "--cancel", "--runs-dir", str(runs_dir)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, env=env())
        assert c.returncode == 0, c.stderr
        assert "cancelled" in c.stdout and "lmsa_focal-alpha0.5" in c.stdout
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    plan = load_plan(list_plans(runs_dir)[0])
    # the scheduler left at once: the plan records the first run as started; its own record says how it ended
    assert plan.status == "cancelled" and [it.state for it in plan.items] == ["started", "cancelled"]
    first = Run(runs_dir / "lmsa_focal-alpha0.25")
    first.refresh()
    assert first.state.status == "finished"  # the run already training went on
    assert [d.name for d in list_runs(runs_dir)] == ["lmsa_focal-alpha0.25"]
    assert "lmsa_focal-alpha0.5 cancelled: the plan was cancelled (SIGTERM)" in out
    assert json.loads((runs_dir / "lmsa_focal-alpha0.5" / "plan.json").read_text())["state"] == "cancelled"
