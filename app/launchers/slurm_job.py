"""What runs inside a SLURM job: the picklable callable that submitit executes.

``TrainerJob(run_dir, fresh_args, resume_args)()`` runs ``python -m app.supervise RUN_DIR --
python -m trainer ARGS`` (argument lists, no shell) on the compute node: the same supervisor
and trainer as a local run, writing the same run directory, so exit.json, stdout.log and
stderr.log are where they always are. When the run directory already holds
``checkpoints/last.pt`` it passes ``--resume RUN_DIR`` instead of the fresh arguments: a job
that SLURM requeues (preemption, node failure with ``--requeue``) or that ``segwatch resume``
resubmits continues from its checkpoint by itself.

Signals: SLURM sends SIGTERM to every process of the job at its time limit, on preemption and
on ``scancel``; the trainer answers it by checkpointing and ending ("stopped"), and the job's
final state (TIMEOUT, PREEMPTED, CANCELLED...) is read from sacct by app/launchers/jobinfo.py.
submitit's early warning (``--signal=USR2@S``: S seconds before the limit) would kill the
trainer (USR2's default action) and make submitit give the job up early, so the processes this
job starts ignore it, and the job itself answers it by asking the trainer for a checkpoint
through control.jsonl (a ``checkpoint`` command, source "slurm").

Pure standard library: it is unpickled by ``python -m submitit.core._submit`` on the node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path


class TrainerJobFailed(RuntimeError):
    pass


class TrainerJob:
    def __init__(self, run_dir: str, fresh_args: list[str], resume_args: list[str], python: str | None = None,
                 nproc_per_node: int = 1):
        self.run_dir = str(run_dir)
        self.fresh_args = list(fresh_args)
        self.resume_args = list(resume_args)
        self.python = python or sys.executable
        self.nproc_per_node = max(1, int(nproc_per_node))

    def trainer_args(self) -> list[str]:
        last = Path(self.run_dir) / "checkpoints" / "last.pt"
        return self.resume_args if last.exists() else self.fresh_args

    def argv(self, env: dict | None = None) -> list[str]:
        """What this task runs. One task: the supervised trainer (which starts its own torchrun for
        nproc_per_node > 1, as locally). Several tasks (``--nodes N``: one per node): each task
        runs torchrun for its node, joined by a c10d rendezvous on the job's first node; task 0's
        torchrun runs under the supervisor (exit.json, stdout.log, stderr.log), like a local run.
        """
        env = os.environ if env is None else env
        py, args = self.python, self.trainer_args()
        tasks = int(env.get("SLURM_NTASKS", "1") or 1)
        if tasks <= 1:
            return [py, "-m", "app.supervise", self.run_dir, "--", py, "-m", "trainer", *args]
        job = env.get("SLURM_JOB_ID", "0")
        head = _first_host(env.get("SLURM_JOB_NODELIST", "")) or socket.gethostname()
        port = 20000 + int(job) % 20000 if job.isdigit() else 29500
        run = [py, "-m", "torch.distributed.run", f"--nnodes={tasks}", f"--nproc-per-node={self.nproc_per_node}",
               "--rdzv-backend=c10d", f"--rdzv-endpoint={head}:{port}", f"--rdzv-id=segwatch-{job}",
               "-m", "trainer", *args]
        if int(env.get("SLURM_PROCID", "0") or 0) == 0:
            return [py, "-m", "app.supervise", self.run_dir, "--", *run]
        return run

    def __call__(self) -> int:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # inherited (ignored) by supervise and the trainer
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SLURM signals every process; the trainer handles it
        argv = self.argv()
        # each start of the job (a requeue too) is its own attempt (docs/run-directory.md, "Attempts"):
        # never the one sbatch may have exported from the submitting shell
        os.environ["SEGWATCH_ATTEMPT"] = uuid.uuid4().hex[:16]
        _note_attempt(Path(self.run_dir), argv)
        if int(os.environ.get("SLURM_NNODES", "1") or 1) == 1 and Path("/sys/class/net/lo").exists():
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # every rank on this node: gloo on loopback
        if argv[1:3] != ["-m", "app.supervise"]:  # a task after the first: its own log, not the run's
            folder = Path(self.run_dir) / "slurm"
            name = f"{os.environ.get('SLURM_JOB_ID', 'job')}_task{os.environ.get('SLURM_PROCID', '?')}.log"
            with open(folder / name, "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        else:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        signal.signal(signal.SIGUSR2, self._early_warning)  # for this process only: after the child started
        rc = proc.wait()
        if rc != 0:
            raise TrainerJobFailed(f"the trainer's supervisor exited with {rc}; see {self.run_dir}/stderr.log")
        return rc


    def _early_warning(self, signum: int, frame: object) -> None:
        """The limit (or a preemption) is near: ask the trainer for a checkpoint now."""
        from app.runlib.run import Run  # pure Python; imported only when needed

        try:
            Run(self.run_dir).send("checkpoint", reason="SLURM: the job's time limit or a preemption is near",
                                   source="slurm")
        except (OSError, ValueError) as e:
            print(f"segwatch slurm job: could not ask for a checkpoint: {e}", file=sys.stderr)


def _first_host(nodelist: str) -> str | None:
    """The first host of a SLURM node list ("gpu[03-05,07]" -> "gpu03"), via scontrol when there."""
    if not nodelist:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head, _, rest = nodelist.partition("[")
    return head + rest.split(",")[0].split("-")[0].rstrip("]") if rest else nodelist.split(",")[0]


def _note_attempt(run_dir: Path, argv: list[str]) -> None:
    """Append this attempt (job id, restart count, node, resumed or fresh) to slurm/attempts.jsonl."""
    line = {"v": 1, "t": time.time(), "job_id": os.environ.get("SLURM_JOB_ID"),
            "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            "node": socket.gethostname(), "resumed": "--resume" in argv, "attempt": os.environ.get("SEGWATCH_ATTEMPT")}
    folder = run_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
