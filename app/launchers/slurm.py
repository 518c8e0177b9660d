"""The SLURM launcher: each run is one batch job, submitted with submitit (docs/slurm.md).

The job runs :class:`app.launchers.slurm_job.TrainerJob`: the same supervised
``python -m trainer ... --run-dir RUN_DIR`` as a local run, so the run directory (on the
cluster's shared filesystem) is written, watched and steered exactly as locally. submitit writes
the submission script and SLURM's logs into ``RUN_DIR/slurm/`` (``<job>_submission.sh``,
``<job>_0_log.out``, ``<job>_0_log.err``); ``RUN_DIR/slurm.json`` records the job id(s) and the
options (docs/run-directory.md). submitit is imported here only, inside functions: the app's
import path never loads it (nor torch).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app import launch
from app.launchers import LauncherError
from app.launchers.jobinfo import job_info, read_record
from app.launchers.slurm_job import TrainerJob
from app.launchers.slurm_options import SlurmOptionError, SlurmOptions, from_args

STOP_GRACE_S = 60.0  # a running job gets this long to answer `stop` before scancel (segwatch stop --timeout)


class SlurmLauncher:
    name = "slurm"

    def __init__(self, options: SlurmOptions):
        self.options = options

    @classmethod
    def from_args(cls, args: argparse.Namespace | None) -> "SlurmLauncher":
        try:
            opts = from_args(args)
        except SlurmOptionError as e:
            raise LauncherError(str(e)) from None
        return cls(opts)

    # -- submitting --------------------------------------------------------------------
    def _executor(self, folder: Path, name: str, nproc: int, **more: Any) -> Any:
        try:
            import submitit  # lazily: only `--launcher slurm` pays for it
        except ImportError:
            raise LauncherError("--launcher slurm needs submitit: pip install -e '.[slurm]'") from None
        o = self.options
        try:
            ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=0)
        except RuntimeError as e:  # no srun on PATH
            raise LauncherError(f"--launcher slurm: {e}") from None
        root = str(launch.PROJECT_ROOT)
        params: dict[str, Any] = {
            "job_name": f"segwatch-{name}", "time": None, "nodes": o.nodes, "ntasks_per_node": 1,
            "stderr_to_stdout": False,
            # the job must import app/ and trainer/ like a local child does (app.launch.child_env)
            "setup": [f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}", "export PYTHONUNBUFFERED=1"],
        }
        if o.partition:
            params["partition"] = o.partition
        if o.account:
            params["account"] = o.account
        if o.gpus_per_run:
            params["gpus_per_node"] = o.gpus_per_run
        cpus = o.cpus_per_task or nproc
        if cpus > 1:
            params["cpus_per_task"] = cpus
        extra: dict[str, Any] = {"requeue": True}  # preemption / node failure: requeued, resumes from last.pt
        if o.time:
            extra["time"] = o.time
            # the early warning (a checkpoint request, slurm_job.py) must come after the job started
            params["signal_delay_s"] = min(90, max(10, time_seconds(o.time) // 4))
        extra.update(o.sbatch_parameters())
        params["additional_parameters"] = extra
        params.update(more)  # dependency, array_parallelism (plans: slurm_plan.py)
        ex.update_parameters(**params)
        return ex

    def trainer_job(self, spec: launch.LaunchSpec, fresh_args: list[str]) -> TrainerJob:
        run_dir = spec.run_dir.resolve()
        resume_args = ["--resume", str(run_dir), "--device", _device_of(fresh_args)]
        return TrainerJob(str(run_dir), fresh_args, resume_args, nproc_per_node=self.options.nproc_per_node or 1)

    def fresh_args(self, spec: launch.LaunchSpec) -> list[str]:
        args = list(spec.trainer_args)
        if self.options.nproc_per_node:
            args += ["--set", f"training.nproc_per_node={self.options.nproc_per_node}"]
            spec.nproc = self.options.nproc_per_node
        return args

    def submit_callables(self, folder: Path, name: str, nproc: int, fns: list[Any], **more: Any) -> list[str]:
        """Submit ``fns`` (one job, or a job array when several) into submitit's ``folder``; the job ids."""
        folder.mkdir(parents=True, exist_ok=True)
        ex = self._executor(folder, name, nproc, **more)
        said = io.StringIO()  # submitit prints sbatch's stderr on a refusal: one line of ours instead
        try:
            with contextlib.redirect_stderr(said):
                if len(fns) == 1:
                    jobs = [ex.submit(fns[0])]
                else:
                    with ex.batch():
                        jobs = [ex.submit(fn) for fn in fns]
        except Exception as e:  # noqa: BLE001 - submitit wraps sbatch's refusal in its own error types
            lines = [ln.strip() for ln in (str(e) + "\n" + said.getvalue()).splitlines() if "error" in ln.lower()]
            lines = lines or [ln for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
            raise LauncherError(f"sbatch refused {name}: {lines[-1]}") from None
        return [str(j.job_id) for j in jobs]

    def record_job(self, run_dir: Path, job_id: str, kind: str, folder: Path, job_fn: TrainerJob) -> None:
        """slurm.json (docs/run-directory.md): this run's current job and where its files are."""
        run_dir = run_dir.resolve()
        base = job_id.split("_")[0]
        rel = os.path.relpath(folder.resolve(), run_dir)
        rec = read_record(run_dir) or {}
        jobs = list(rec.get("jobs") or [])
        jobs.append({"job_id": job_id, "kind": kind, "t": time.time()})
        rec.update({
            "v": 1, "launcher": "slurm", "job_id": job_id, "jobs": jobs,
            "submission_script": f"{rel}/{base}_submission.sh",
            "stdout": f"{rel}/{job_id}_0_log.out", "stderr": f"{rel}/{job_id}_0_log.err",
            "options": {k: v for k, v in vars(self.options).items() if v not in (None, [])},
            "argv": job_fn.argv({"SLURM_NTASKS": "1"}),  # with --nodes N each node's task runs torchrun (docs/slurm.md)
        })
        write_record(run_dir, rec)

    def _submit(self, spec: launch.LaunchSpec, fresh_args: list[str], kind: str) -> launch.LaunchSpec:
        run_dir = spec.run_dir.resolve()
        job_fn = self.trainer_job(spec, fresh_args)
        fresh = kind == "run" and not (run_dir / "slurm").exists()
        try:
            [job_id] = self.submit_callables(run_dir / "slurm", spec.name, spec.nproc, [job_fn])
        except LauncherError:
            if fresh:  # nothing was submitted: leave no run directory behind (only submitit's temp files in it)
                shutil.rmtree(run_dir / "slurm", ignore_errors=True)
                with contextlib.suppress(OSError):
                    run_dir.rmdir()
            raise
        self.record_job(run_dir, job_id, kind, run_dir / "slurm", job_fn)
        spec.pid = None
        spec.job_id = job_id  # type: ignore[attr-defined]
        return spec

    def start(self, spec: launch.LaunchSpec) -> launch.LaunchSpec:
        return self._submit(spec, self.fresh_args(spec), "run")

    def resume(self, run_dir: Path, device: str = "auto") -> launch.LaunchSpec:
        spec = launch.resume_spec(run_dir, device=device)
        return self._submit(spec, list(spec.trainer_args), "resume")

    def describe(self, spec: launch.LaunchSpec) -> str:
        jid = getattr(spec, "job_id", "?")
        return f"submitted {spec.name} as SLURM job {jid} (run directory {spec.run_dir}; logs in {spec.run_dir / 'slurm'})"

    # -- stopping --------------------------------------------------------------------------
    def stop(self, run: Any, timeout: float) -> int | None:
        """Queued: scancel now. Running: `stop` through control.jsonl, scancel if no end within ``timeout``."""
        info = job_info(run.path, fresh=True)
        if info is None or not info.job_id:
            return None
        if info.pending:
            _scancel(run.path, info.job_id, "segwatch stop (queued)")
            print(f"{run.name}: cancelled SLURM job {info.job_id} (it was queued: {info.reason or info.state})")
            return 0
        if info.state in (None, "RUNNING", "COMPLETING"):
            cmd_id = run.send("stop", reason="segwatch stop", source="cli")
            print(f"{run.name}: stop  (id {cmd_id[:8]}); waiting up to {timeout:g} s for the trainer, then scancel")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                run.refresh()
                if run.state.end is not None and run.state.restart_pending is None:
                    print(f"{run.name}: {run.state.status_detail()}")
                    return 0
                time.sleep(0.5)
            _scancel(run.path, info.job_id, f"segwatch stop (no end within {timeout:g} s)")
            print(f"{run.name}: no end within {timeout:g} s: cancelled SLURM job {info.job_id}")
            return 0
        return None


def time_seconds(limit: str) -> int:
    """SLURM's time formats (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds."""
    days, _, rest = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    parts = [int(x) for x in rest.split(":")]
    if "-" in limit:
        h, m, sec = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = parts[:3]
    return int(days or 0) * 86400 + h * 3600 + m * 60 + sec


def _device_of(args: list[str]) -> str:
    for i, a in enumerate(args[:-1]):
        if a == "--device":
            return args[i + 1]
    return "auto"


def write_record(run_dir: Path, rec: dict) -> None:
    tmp = run_dir / f".slurm.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / "slurm.json")


def _scancel(run_dir: Path, job_id: str, by: str) -> None:
    rec = read_record(run_dir) or {}
    rec["cancelled"] = {"job_id": job_id, "by": by, "t": time.time()}
    write_record(run_dir, rec)  # first: the CANCELLED that sacct will report is ours
    p = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        print(f"segwatch: scancel {job_id}: {p.stderr.strip()}", file=sys.stderr)
