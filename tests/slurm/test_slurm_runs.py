"""`--launcher slurm` against a real one-machine SLURM (conftest.py): each run one batch job.

The app is driven through its command line (`segwatch run/set/stop/ls/resume`), the run
directory is read with app.runlib.Run, SLURM's side with squeue/sacct.
"""

from __future__ import annotations

import json

import pytest
from slurmkit import ROOT, background, sacct_state, segwatch, submit, wait_for

from app.runlib import Run
from trainer.schedule import lr_at

pytestmark = pytest.mark.slurm


def refreshed(run: Run) -> Run:
    run.refresh()
    return run


def test_a_run_is_one_job_watched_and_steered_live_then_stopped_through_control(slurm_cluster, slurm_env, tmp_path):
    run_dir, job = submit(slurm_env, tmp_path / "runs")
    rec = json.loads((run_dir / "slurm.json").read_text())
    script = (run_dir / rec["submission_script"]).read_text()
    assert "--job-name=segwatch-lmsa_focal" in script and "--requeue" in script
    assert rec["argv"][1:3] == ["-m", "app.supervise"] and "--run-dir" in rec["argv"]
    run = Run(run_dir)
    wait_for("the job's first step event", lambda: refreshed(run).state.last_step, 120)
    assert run.state.status == "running" and run.state.job.state == "RUNNING"
    step_at_send = run.state.last_step["step"]

    p = segwatch(slurm_env, "set", str(run_dir), "lr=2e-4", "--wait", "--timeout", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "applied at" in p.stdout
    adj = refreshed(run).state.adjustments[-1]
    assert adj.status == "applied" and adj.changes["lr"][1] == pytest.approx(2e-4)
    assert adj.answer_step is not None and adj.answer_step >= step_at_send

    # stop of a running job: through control.jsonl (checkpoint, end event); no scancel needed
    p = segwatch(slurm_env, "stop", str(run_dir), "--timeout", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert refreshed(run).state.end["reason"] == "stopped"
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert wait_for("sacct COMPLETED", lambda: sacct_state(slurm_cluster, job) == "COMPLETED", 60)
    assert "cancelled" not in json.loads((run_dir / "slurm.json").read_text())
    assert refreshed(run).state.status == "stopped"
    assert (run_dir / rec["stdout"]).exists() and (run_dir / "stdout.log").exists()


def test_a_queued_job_shows_slurms_reason_and_stop_cancels_it(slurm_cluster, slurm_env, tmp_path):
    runs = tmp_path / "runs"
    run_dir, job = submit(slurm_env, runs, "--sbatch-arg=--begin=now+3600", epochs=2)
    ls = wait_for("ls showing the queue reason",
                  lambda: (lambda p: p.stdout if "BeginTime" in p.stdout else None)(segwatch(slurm_env, "ls", str(runs))), 60)
    assert f"queued in SLURM (job {job}: BeginTime)" in ls
    assert Run(run_dir).state.status == "starting"  # before a refresh: nothing read yet
    assert refreshed(Run(run_dir)).state.status == "queued"

    p = segwatch(slurm_env, "stop", str(run_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"cancelled SLURM job {job}" in p.stdout
    assert wait_for("sacct CANCELLED", lambda: sacct_state(slurm_cluster, job) == "CANCELLED", 60)
    run = Run(run_dir)
    wait_for("the run to show stopped", lambda: refreshed(run).state.status == "stopped", 30)  # squeue polled every 3 s
    assert "cancelled by segwatch stop" in run.state.status_detail()
    assert not (run_dir / "events.jsonl").exists()  # it never trained


def test_a_job_killed_by_its_time_limit_shows_timeout(slurm_cluster, slurm_env, tmp_path):
    cfg = tmp_path / "xdg" / "segwatch" / "slurm.yaml"  # the user's defaults file gives the limit
    cfg.parent.mkdir(parents=True)
    cfg.write_text("time: 1\npartition: debug\n")
    run_dir, job = submit(slurm_env, tmp_path / "runs", epochs=100000)
    rec = json.loads((run_dir / "slurm.json").read_text())
    script = (run_dir / rec["submission_script"]).read_text()
    assert "--time=1\n" in script and "--partition=debug" in script
    run = Run(run_dir)
    wait_for("the job to start training", lambda: refreshed(run).state.last_step, 120)
    wait_for("the run to show SLURM's TIMEOUT", lambda: refreshed(run).state.status == "crashed", 240, poll=1)
    assert run.state.crash_reason.startswith(f"SLURM ended job {job}: TIMEOUT"), run.state.crash_reason
    assert sacct_state(slurm_cluster, job) == "TIMEOUT"
    ls = segwatch(slurm_env, "ls", str(tmp_path / "runs")).stdout
    assert "TIMEOUT" in ls
    # the early warning asked for a checkpoint through control.jsonl, and the trainer answered it
    cmds = [json.loads(x) for x in (run_dir / "control.jsonl").read_text().splitlines()]
    assert any(c["cmd"] == "checkpoint" and c.get("source") == "slurm" for c in cmds)


def test_scancel_mid_run_then_resume_from_the_checkpoint(slurm_cluster, slurm_env, tmp_path):
    runs = tmp_path / "runs"
    run_dir, job = submit(slurm_env, runs)
    run = Run(run_dir)
    wait_for("a checkpoint", lambda: "last" in refreshed(run).state.checkpoints, 180)
    slurm_cluster.run("scancel", job)  # the user, or an admin, outside segwatch
    wait_for("the run to show CANCELLED", lambda: refreshed(run).state.status == "crashed", 60)
    assert f"SLURM ended job {job}: CANCELLED" in run.state.crash_reason
    done_epochs = run.state.last_epoch

    background(slurm_env, "resume", str(run_dir), "--headless", "--device", "cpu", expect="resuming")
    rec = json.loads((run_dir / "slurm.json").read_text())
    assert [j["kind"] for j in rec["jobs"]] == ["run", "resume"] and rec["job_id"] != job
    new = Run(run_dir)
    wait_for("the resumed trainer's start", lambda: (refreshed(new).state.start or {}).get("t", 0) > rec["jobs"][-1]["t"]
             and new.state.status == "running", 180)
    assert new.state.start["resume_epoch"] >= done_epochs >= 1
    attempts = [json.loads(x) for x in (run_dir / "slurm" / "attempts.jsonl").read_text().splitlines()]
    assert [a["resumed"] for a in attempts] == [False, True]

    # requeued by SLURM (as on preemption): the same job starts again and resumes by itself
    wait_for("a checkpoint of the resumed trainer",
             lambda: (refreshed(new).state.checkpoints.get("last") or {}).get("t", 0) > new.state.start["t"], 120)
    first_resume_t = new.state.start["t"]
    slurm_cluster.run("scontrol", "requeue", rec["job_id"])
    seen = set()
    wait_for("the requeued job's own resumed start", lambda: seen.add(refreshed(new).state.status) or (
        (new.state.start or {}).get("t", 0) > first_resume_t and new.state.status == "running"), 180, poll=0.5)
    assert "queued" in seen and not seen & {"crashed", "finished"}, seen  # waiting to start again, never "ended"
    assert new.state.start["resumed"] and new.state.start["resume_epoch"] >= 1
    attempts = [json.loads(x) for x in (run_dir / "slurm" / "attempts.jsonl").read_text().splitlines()]
    assert [(a["job_id"], a["restart_count"], a["resumed"]) for a in attempts[1:]] == \
        [(rec["job_id"], 0, True), (rec["job_id"], 1, True)]
    assert len({a["attempt"] for a in attempts}) == 3

    p = segwatch(slurm_env, "stop", str(run_dir), "--timeout", "60")
    assert p.returncode == 0 and refreshed(new).state.status == "stopped", p.stdout + p.stderr


def test_stop_of_a_running_job_that_does_not_answer_falls_back_to_scancel(slurm_cluster, slurm_env, tmp_path):
    run_dir, job = submit(slurm_env, tmp_path / "runs", "--set", "debug.step_delay=60")  # one step a minute
    run = Run(run_dir)
    wait_for("the first step", lambda: refreshed(run).state.last_step, 120)
    p = segwatch(slurm_env, "stop", str(run_dir), "--timeout", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no end within 2 s: cancelled SLURM job" in p.stdout
    cmds = [json.loads(x) for x in (run_dir / "control.jsonl").read_text().splitlines()]
    assert [c["cmd"] for c in cmds] == ["stop"]  # control.jsonl first
    wait_for("the run to show stopped", lambda: refreshed(run).state.status == "stopped", 60)
    assert "cancelled by segwatch stop (no end within 2 s)" in run.state.status_detail()
    assert wait_for("sacct CANCELLED", lambda: sacct_state(slurm_cluster, job) == "CANCELLED", 60)


def test_two_gloo_ranks_in_one_job_apply_a_live_command_at_the_same_step(slurm_cluster, slurm_env, tmp_path):
    run_dir, job = submit(slurm_env, tmp_path / "runs", "--nproc-per-node", "2", "--set", "debug.rank_log=true",
                          "--set", "debug.step_delay=0.05", "--set", "data.synthetic_train=64", epochs=3)
    rec = json.loads((run_dir / "slurm.json").read_text())
    assert "--cpus-per-task=2" in (run_dir / rec["submission_script"]).read_text()
    run = Run(run_dir)
    wait_for("the first step", lambda: refreshed(run).state.last_step, 120)
    assert run.state.start["world_size"] == 2
    p = segwatch(slurm_env, "set", str(run_dir), "lr=2e-4", "--wait", "--timeout", "60")
    assert p.returncode == 0 and "applied at" in p.stdout, p.stdout + p.stderr
    wait_for("the run to finish", lambda: refreshed(run).state.status == "finished", 180, poll=0.5)
    ack_step = run.state.adjustments[-1].answer_step
    logs = [[json.loads(x) for x in (run_dir / "ranks" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    logs = [[e for e in log if "step" in e] for log in logs]  # (each log starts with its rank's seed line)
    assert logs[0] == logs[1]  # the same LR at the same step on both ranks
    spe = run.state.start["steps_per_epoch"]
    changed = [e for e in logs[0] if e["step"] >= ack_step]
    assert changed and all(e["lr"] == pytest.approx(lr_at(e["step"] - 1, 2e-4, 0, 3 * spe)) for e in changed)


def test_a_submission_sbatch_refuses_is_one_line_and_exit_2(slurm_cluster, slurm_env, tmp_path):
    p = segwatch(slurm_env, "run", str(ROOT / "configs" / "baseline.yaml"), "--launcher", "slurm", "--headless",
                 "--partition", "nosuch", "--runs-dir", str(tmp_path / "runs"))
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "sbatch refused baseline" in p.stderr, p.stderr
    assert "invalid partition" in p.stderr.lower(), p.stderr
    assert not any((tmp_path / "runs").iterdir())  # nothing submitted, nothing left behind


def test_two_srun_tasks_join_one_ddp_run_by_c10d_rendezvous(slurm_cluster, slurm_env, tmp_path):
    # the multi-node recipe (one torchrun per task, rendezvous on the job's first node) with two
    # tasks on the one test node standing in for two nodes
    run_dir, job = submit(slurm_env, tmp_path / "runs", "--sbatch-arg=--ntasks-per-node=2", "--set",
                          "debug.rank_log=true", "--set", "debug.step_delay=0.05", "--set", "data.synthetic_train=64",
                          epochs=3)
    run = Run(run_dir)
    wait_for("the first step", lambda: refreshed(run).state.last_step, 180)
    assert run.state.start["world_size"] == 2
    p = segwatch(slurm_env, "set", str(run_dir), "lr=2e-4", "--wait", "--timeout", "60")
    assert p.returncode == 0 and "applied at" in p.stdout, p.stdout + p.stderr
    wait_for("the run to finish", lambda: refreshed(run).state.status == "finished", 180, poll=0.5)
    ack_step = run.state.adjustments[-1].answer_step
    logs = [[json.loads(x) for x in (run_dir / "ranks" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    logs = [[e for e in log if "step" in e] for log in logs]  # (each log starts with its rank's seed line)
    assert logs[0] == logs[1]
    spe = run.state.start["steps_per_epoch"]
    changed = [e for e in logs[0] if e["step"] >= ack_step]
    assert changed and all(e["lr"] == pytest.approx(lr_at(e["step"] - 1, 2e-4, 0, 3 * spe)) for e in changed)
    task1 = run_dir / "slurm" / f"{job}_task1.log"
    assert task1.exists()  # the second task's torchrun logs beside SLURM's, not into the run's stderr.log
    assert wait_for("sacct COMPLETED", lambda: sacct_state(slurm_cluster, job) == "COMPLETED", 60)
