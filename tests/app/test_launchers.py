"""The launcher interface without a cluster: SLURM options and their errors, the job-state
mapping onto a run's status, and the import rule (no submitit, no torch in the app's path).

The same against a real SLURM: tests/slurm/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _runrecord import Record

from app.launchers import JobInfo
from app.launchers.slurm import time_seconds
from app.runlib.state import RunState

ROOT = Path(__file__).resolve().parents[2]


def segwatch_run(tmp_path: Path, *args: str, slurm_yaml: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)}
    env.pop("SEGWATCH_SLURM_CONFIG", None)
    if slurm_yaml is not None:
        (tmp_path / "xdg" / "segwatch").mkdir(parents=True, exist_ok=True)
        (tmp_path / "xdg" / "segwatch" / "slurm.yaml").write_text(slurm_yaml)
    return subprocess.run([sys.executable, "-m", "app", "run", str(ROOT / "configs" / "baseline.yaml"),
                           "--runs-dir", str(tmp_path / "runs"), "--headless", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


@pytest.mark.parametrize("args, yaml_text, expect", [
    (["--launcher", "slurm"], "partition: [a, b]\n", "slurm.yaml: partition: ['a', 'b'] is not allowed"),
    (["--launcher", "slurm"], "qos: high\n", "slurm.yaml: unknown key 'qos' (allowed: partition, time"),
    (["--launcher", "slurm"], "time: soon\n", "slurm.yaml: time: 'soon' is not allowed (minutes, or [D-]HH:MM[:SS]"),
    (["--launcher", "slurm"], "- a\n", "slurm.yaml: expected a mapping"),
    (["--launcher", "slurm", "--sbatch-arg=-C gpu"], None, "sbatch_args: '-C gpu' is not allowed (write each option as --key=value"),
    (["--launcher", "slurm", "--sbatch-arg=--output=/tmp/x"], None, "segwatch sets --output itself"),
    (["--launcher", "slurm", "--time", "1:2:3:4"], None, "--time: time: '1:2:3:4' is not allowed"),
    (["--launcher", "slurm", "--nodes", "0"], None, "--nodes: nodes: 0 is not allowed (an integer >= 1)"),
])
def test_bad_slurm_options_are_one_line_errors_before_anything_is_created(tmp_path, args, yaml_text, expect):
    p = segwatch_run(tmp_path, *args, slurm_yaml=yaml_text)
    assert p.returncode == 2, p.stdout + p.stderr
    assert expect in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "runs").exists()


def test_time_limits_in_slurms_formats():
    assert [time_seconds(t) for t in ("1", "90", "1:30", "12:00:00", "2-3", "2-03:04", "1-0:0:5")] == \
        [60, 5400, 90, 43200, 2 * 86400 + 3 * 3600, 2 * 86400 + 3 * 3600 + 240, 86405]


def state_of(rec: Record) -> RunState:
    st = RunState(rec.dir)
    for line in (rec.dir / "events.jsonl").read_text().splitlines() if (rec.dir / "events.jsonl").exists() else []:
        st.apply(json.loads(line))
    return st


def test_job_states_decide_the_runs_status_where_the_record_cannot(tmp_path):
    queued = RunState(Record(tmp_path / "q").dir)
    queued.job = JobInfo("slurm", "7", state="PENDING", reason="Priority")
    assert queued.status == "queued" and queued.status_detail() == "queued in SLURM (job 7: Priority)"

    rec = Record(tmp_path / "t")
    rec.start()
    rec.epochs_run(1, 2)
    rec.end("stopped", epoch=2)  # the trainer's answer to SLURM's SIGTERM at the time limit
    st = state_of(rec)
    assert st.status == "stopped"
    st.job = JobInfo("slurm", "8", state="TIMEOUT")
    assert st.status == "crashed" and st.crash_reason == "SLURM ended job 8: TIMEOUT"
    st.job = JobInfo("slurm", "8", state="CANCELLED", cancelled={"job_id": "8", "by": "segwatch stop"})
    assert st.status == "stopped" and "cancelled by segwatch stop" in st.status_detail()
    st.job = JobInfo("slurm", "8", state="COMPLETED")
    assert st.status == "stopped"  # the record decides
    st.job = JobInfo("slurm", "9", state="RUNNING", submitted_t=st.start["t"] + 60)  # resubmitted (resume)
    assert st.status == "starting"

    done = Record(tmp_path / "d")
    done.start()
    done.epochs_run(1, 2)
    done.end("completed", epoch=2)
    st = state_of(done)
    st.job = JobInfo("slurm", "10", state="TIMEOUT")  # ended by SLURM after the trainer had finished
    assert st.status == "finished"

    never = RunState(Record(tmp_path / "n").dir)
    never.job = JobInfo("slurm", "11", state="FAILED", exit_code="1:0", log="slurm/11_0_log.err")
    assert never.status == "crashed" and never.crash_reason == "SLURM ended job 11: FAILED, exit 1:0; see slurm/11_0_log.err"


def test_a_local_run_has_no_job_and_costs_one_stat(tmp_path):
    from app.launchers.jobinfo import job_info
    from app.runlib import Run

    rec = Record(tmp_path / "r")
    rec.start()
    run = Run(rec.dir)
    run.refresh()
    assert job_info(rec.dir) is None and run.state.job is None
