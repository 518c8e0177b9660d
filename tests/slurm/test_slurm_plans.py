"""Plans under SLURM (app/launchers/slurm_plan.py): no process on the login node decides anything.

--serial: each run its own job, depending on the one before (afterany); the gate is evaluated
inside the dependent job when it starts. --sweep --max-parallel K: one job array throttled to K.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slurmkit import ROOT, TINY, background, sacct_state, segwatch, wait_for

from app.plan.model import load_plan
from app.runlib import Run

pytestmark = pytest.mark.slurm


def start_plan(env: dict, runs: Path, *args: str) -> Path:
    sets = [x for s in TINY + ["training.epochs=1"] for x in ("--set", s)]
    background(env, "run", *args, "--launcher", "slurm", "--headless", "--device", "cpu", "--runs-dir", str(runs),
               *sets, expect="submitted to SLURM")
    [plan] = list((runs / "plans").glob("*.json"))
    return plan


def plan_done(path: Path):
    p = load_plan(path)
    return p if p.status == "done" else None


@pytest.mark.parametrize("gate, second", [("best_val_f < 0.99", "ended"), ("best_val_f > 0.99", "skipped")])
def test_a_serial_plan_is_a_chain_of_dependent_jobs_whose_gate_runs_in_the_job(slurm_cluster, slurm_env, tmp_path,
                                                                            gate, second):
    runs = tmp_path / "runs"
    path = start_plan(slurm_env, runs, "--serial", str(ROOT / "configs" / "baseline.yaml"),
                      str(ROOT / "configs" / "lmsa.yaml"), "--gate", gate)
    assert (path.with_suffix(".slurm")).exists()
    jobs = [json.loads((runs / n / "slurm.json").read_text())["job_id"] for n in ("baseline", "lmsa")]
    script = (runs / "lmsa" / json.loads((runs / "lmsa" / "slurm.json").read_text())["submission_script"]).read_text()
    assert f"--dependency=afterany:{jobs[0]}" in script
    ls = wait_for("the second job queued on its dependency",
                  lambda: (lambda p: p.stdout if "Dependency" in p.stdout else None)(segwatch(slurm_env, "ls", str(runs))), 60)
    assert f"queued in SLURM (job {jobs[1]}: Dependency)" in ls

    plan = wait_for("the plan to be done", lambda: plan_done(path), 240, poll=0.5)
    first, nxt = plan.items
    assert first.state == "ended" and first.result["status"] == "finished"
    assert nxt.state == second and nxt.decision["action"] == ("start" if second == "ended" else "skip")
    assert nxt.decision["why"].startswith("after baseline (finished): best_val_f")
    # the plan file is rewritten first, then each run's plan.json (each atomically)
    rec = wait_for("lmsa/plan.json to follow", lambda: (lambda r: r if r["state"] == second else None)(
        json.loads((runs / "lmsa" / "plan.json").read_text())), 30)
    assert rec["decision"]["gate"] == gate
    lmsa = Run(runs / "lmsa")
    lmsa.refresh()
    if second == "skipped":
        assert lmsa.state.status == "skipped" and not (runs / "lmsa" / "events.jsonl").exists()
        assert wait_for("sacct COMPLETED", lambda: sacct_state(slurm_cluster, jobs[1]) == "COMPLETED", 60)
    else:
        assert lmsa.state.status == "finished"
    shown = segwatch(slurm_env, "plan", path.stem, "--runs-dir", str(runs))
    assert shown.returncode == 0 and "scheduler gone" not in shown.stdout and "lmsa" in shown.stdout


def test_a_sweep_is_one_job_array_throttled_to_max_parallel(slurm_cluster, slurm_env, tmp_path):
    runs = tmp_path / "runs"
    path = start_plan(slurm_env, runs, str(ROOT / "configs" / "lmsa_focal.yaml"), "--sweep", "loss.focal_gamma=1,2",
                      "--max-parallel", "1")
    plan = load_plan(path)
    recs = [json.loads((Path(it.run_dir) / "slurm.json").read_text()) for it in plan.items]
    array = recs[0]["job_id"].split("_")[0]
    assert [r["job_id"] for r in recs] == [f"{array}_0", f"{array}_1"]
    script = (Path(plan.items[0].run_dir) / recs[0]["submission_script"]).read_text()
    assert "--array=0-1%1" in script
    plan = wait_for("the sweep to be done", lambda: plan_done(path), 240, poll=0.5)
    assert [it.state for it in plan.items] == ["ended", "ended"]
    spans = []
    for it in plan.items:
        events = [json.loads(x) for x in (Path(it.run_dir) / "events.jsonl").read_text().splitlines()]
        assert events[-1]["type"] == "end" and events[-1]["reason"] == "completed"
        spans.append((events[0]["t"], events[-1]["t"]))
    spans.sort()
    assert spans[0][1] <= spans[1][0]  # at most one at a time


def test_cancelling_a_slurm_plan_scancels_its_queued_jobs(slurm_cluster, slurm_env, tmp_path):
    runs = tmp_path / "runs"
    path = start_plan(slurm_env, runs, "--serial", str(ROOT / "configs" / "baseline.yaml"),
                      str(ROOT / "configs" / "lmsa.yaml"), "--sbatch-arg=--begin=now+3600")
    jobs = [json.loads((runs / n / "slurm.json").read_text())["job_id"] for n in ("baseline", "lmsa")]
    p = segwatch(slurm_env, "plan", path.stem, "--cancel", "--runs-dir", str(runs))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cancelled: baseline" in p.stderr and "lmsa" in p.stderr
    plan = load_plan(path)
    assert plan.status == "cancelled" and [it.state for it in plan.items] == ["cancelled", "cancelled"]
    for j in jobs:
        assert wait_for(f"sacct CANCELLED for {j}", lambda: sacct_state(slurm_cluster, j) == "CANCELLED", 60)
    run = Run(runs / "lmsa")
    wait_for("the run to show skipped", lambda: (run.refresh(), run.state.status)[1] == "skipped", 30)
    assert "the plan was cancelled" in run.state.status_detail()
