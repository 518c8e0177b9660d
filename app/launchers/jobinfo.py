"""What the scheduler says about a run's job: the state provider behind QUEUED and SLURM's words.

``job_info(run_dir)`` is called by app/runlib/run.py on every refresh. For a local run (no
``slurm.json``) it is one failed ``stat`` and returns None. For a SLURM run it reads
``slurm.json`` (the current job id) and asks ``squeue`` (while the job is known to the
controller: state and pending reason) or else ``sacct`` (the final state: TIMEOUT, PREEMPTED,
NODE_FAIL, CANCELLED, OUT_OF_MEMORY, FAILED, COMPLETED...), at most once per ``POLL_S`` per job;
a final state is asked once. The commands run with argument lists and a timeout; when they are
missing or fail, the job's state is unknown and the run's own record decides alone.

Why not submitit's job.state here: it reads only sacct's State (not the pending reason that
squeue gives), needs submitit imported in every process that watches runs (the cockpit, ``ls``),
and polls sacct for all the jobs it knows. Submission stays with submitit (slurm.py).

RunState uses :meth:`JobInfo.status_for` / :meth:`JobInfo.detail_for`; None means "no opinion".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLL_S = float(os.environ.get("SEGWATCH_SLURM_POLL_S", "3"))
#: SLURM states of a job that has not started its trainer (yet, or again after a requeue)
PENDING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING", "SUSPENDED")
#: final states in which SLURM, not the trainer, ended the job
KILLED = ("TIMEOUT", "PREEMPTED", "NODE_FAIL", "CANCELLED", "OUT_OF_MEMORY", "DEADLINE", "BOOT_FAIL")
FINAL = KILLED + ("COMPLETED", "FAILED", "REVOKED", "SPECIAL_EXIT")
_cache: dict[str, tuple[float, dict]] = {}


@dataclass
class JobInfo:
    launcher: str
    job_id: str
    state: str | None = None  # SLURM's word, e.g. PENDING, RUNNING, TIMEOUT; None: unknown
    reason: str = ""  # squeue's pending reason (Priority, Resources, BeginTime...) or sacct's
    exit_code: str = ""
    cancelled: dict | None = None  # slurm.json "cancelled": segwatch stop cancelled this job
    log: str = ""  # the job's stderr log, relative to the run directory
    submitted_t: float | None = None  # when this job was submitted (slurm.json)

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    @property
    def killed(self) -> bool:
        return self.state in KILLED

    def status_for(self, st: Any) -> str | None:
        """The run's status as the job decides it, or None to leave it to the record."""
        if self.pending:
            return "queued"
        if st.events_seen == 0 and (st.plan or {}).get("state") in ("skipped", "cancelled"):
            return None  # a plan's job that decided not to train (its gate): plan.json says why
        if self.state in ("RUNNING", "COMPLETING") and self.submitted_t is not None and _older(st.start, self.submitted_t):
            return "starting"  # a resubmitted job: the record's last start (and end) are the previous job's
        if self.state == "CANCELLED" and self.cancelled:
            return "stopped"
        if self.killed:
            end = st.end or {}
            if end.get("reason") in ("completed", "early_stop") and st.restart_pending is None:
                return None  # the trainer had finished; the job was ended after that
            return "crashed"
        if self.state in ("FAILED", "SPECIAL_EXIT", "REVOKED") and st.events_seen == 0:
            return "crashed"  # the job never started the trainer: the record has nothing to say
        return None

    def detail_for(self, st: Any) -> str | None:
        s = self.status_for(st)
        if s == "queued":
            return f"queued in SLURM (job {self.job_id}" + (f": {self.reason})" if self.reason else ")")
        if s == "stopped":
            by = (self.cancelled or {}).get("by") or "segwatch stop"
            return f"stopped: SLURM job {self.job_id} cancelled by {by}"
        if s == "crashed":
            return f"crashed: {self.crash_reason()}"
        return None

    def crash_reason(self) -> str:
        why = f"SLURM ended job {self.job_id}: {self.state}"
        if self.reason and self.reason not in ("None", self.state):
            why += f" ({self.reason})"
        if self.state == "FAILED":
            why += f", exit {self.exit_code}" + (f"; see {self.log}" if self.log else "")
        return why


def _older(start: dict | None, t: float) -> bool:
    st = (start or {}).get("t")
    return start is None or (isinstance(st, (int, float)) and st < t)


def read_record(run_dir: Path) -> dict | None:
    from app.runlib import safeio  # here: app.runlib imports this module

    try:  # a regular file only, size- and depth-capped (a FIFO here would hang every refresh)
        data = safeio.load_json(run_dir / "slurm.json")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def job_info(run_dir: str | os.PathLike, *, fresh: bool = False) -> JobInfo | None:
    """The run's current job as the scheduler sees it (None: not a SLURM run)."""
    run_dir = Path(run_dir)
    rec = read_record(run_dir)
    if rec is None:
        return None
    job_id = str(rec.get("job_id") or "")
    info = JobInfo("slurm", job_id, cancelled=rec.get("cancelled") if isinstance(rec.get("cancelled"), dict) else None)
    if not job_id:
        return info
    if isinstance(rec.get("cancelled"), dict) and str(rec["cancelled"].get("job_id")) != job_id:
        info.cancelled = None  # an earlier job of this run was cancelled, not this one
    info.log = f"slurm/{job_id}_0_log.err"
    jobs = rec.get("jobs") if isinstance(rec.get("jobs"), list) else []
    for j in jobs:
        if isinstance(j, dict) and str(j.get("job_id")) == job_id and isinstance(j.get("t"), (int, float)):
            info.submitted_t = float(j["t"])
    q = query(job_id, fresh=fresh)
    info.state, info.reason, info.exit_code = q.get("state"), q.get("reason", ""), q.get("exit_code", "")
    if info.state in ("RUNNING", "COMPLETING"):  # a requeued job starts again: its trainer's start is newer still
        t = _last_attempt_t(run_dir, job_id)
        if t is not None and (info.submitted_t is None or t > info.submitted_t):
            info.submitted_t = t
    return info


def _last_attempt_t(run_dir: Path, job_id: str) -> float | None:
    """When the job last started on a node (slurm/attempts.jsonl, written by slurm_job.py)."""
    from app.runlib import safeio

    try:
        data, _ = safeio.read_tail(run_dir / "slurm" / "attempts.jsonl", 4096)
    except (OSError, ValueError):
        return None
    for line in reversed(data.splitlines()):
        try:
            a = json.loads(line)
        except ValueError:
            continue
        if isinstance(a, dict) and str(a.get("job_id")) == job_id and isinstance(a.get("t"), (int, float)):
            return float(a["t"])
    return None


def query(job_id: str, *, fresh: bool = False) -> dict:
    """{"state", "reason", "exit_code"} from squeue, else sacct; cached POLL_S, final states for good."""
    now = time.monotonic()
    hit = _cache.get(job_id)
    if hit is not None and (hit[1].get("state") in FINAL or (not fresh and now - hit[0] < POLL_S)):
        return hit[1]
    out = _squeue(job_id) or _sacct(job_id) or {}
    if out or hit is None:
        _cache[job_id] = (now, out)
    return out if out else (hit[1] if hit else {})


def _run(argv: list[str]) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def _squeue(job_id: str) -> dict | None:
    out = _run(["squeue", "-h", "-j", job_id, "-o", "%T|%r"])
    for line in (out or "").splitlines():
        state, _, reason = line.strip().partition("|")
        if state:
            return {"state": state, "reason": "" if reason == "None" else reason}
    return None


def _sacct(job_id: str) -> dict | None:
    out = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State,ExitCode,Reason"])
    for line in (out or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] == job_id:
            state = parts[1].split()[0] if parts[1].split() else ""
            reason = parts[3] if len(parts) > 3 and parts[3] != "None" else ""
            if parts[1].startswith("CANCELLED by"):
                reason = reason or parts[1]
            return {"state": state, "reason": reason, "exit_code": parts[2]}
    return None
