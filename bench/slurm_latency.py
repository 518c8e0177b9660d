"""SLURM beside local: time to the first step event, and the control round trip inside a job.

    python bench/slurm_latency.py [--n 3] [--commands 10] [--out DIR]

Needs root and the SLURM packages (docs/slurm.md, "Tests"): it starts the one-machine test
cluster (tests/slurm/cluster.py) in a temp folder and stops it at the end.

Start: wall time from spawning ``segwatch run CONFIG --headless --device cpu [--launcher slurm]``
to the first ``step`` event in the run's events.jsonl (polled every 20 ms), for each launcher,
``--n`` times, alternating. Tiny trainer settings (width 8, 32 px, ``log_every=1``).

Control: inside one running run per launcher, ``--commands`` ``set gamma`` commands through
``app.runlib.Run.send``, each at a random moment; latency = the ack event's ``t`` - the time
``send`` returned (the same measure as bench/control_latency.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "slurm"))

from bench.common import machine_info, summary, write_json  # noqa: E402
from cluster import Cluster  # noqa: E402

SETS = ["model.width=8", "data.image_size=32", "data.synthetic_train=512", "data.synthetic_val=4",
        "training.batch_size=2", "training.epochs=1000", "training.warmup_epochs=0", "training.log_every=1",
        "augmentation.rotation=0"]


def first_step_t(events: Path, deadline: float) -> float | None:
    while time.time() < deadline:
        try:
            for line in events.read_bytes().splitlines():
                ev = json.loads(line)
                if ev.get("type") == "step":
                    return time.time()
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return None


def start(env: dict, runs: Path, name: str, launcher: str) -> tuple[float | None, subprocess.Popen]:
    argv = [sys.executable, "-m", "app", "run", str(ROOT / "configs" / "baseline.yaml"), "--headless",
            "--device", "cpu", "--runs-dir", str(runs), "--name", name]
    for s in SETS:
        argv += ["--set", s]
    if launcher == "slurm":
        argv += ["--launcher", "slurm"]
    t0 = time.time()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    t1 = first_step_t(runs / name / "events.jsonl", t0 + 180)
    return (t1 - t0 if t1 else None), p


def stop(env: dict, runs: Path, name: str, monitor: subprocess.Popen) -> None:
    subprocess.run([sys.executable, "-m", "app", "stop", name, "--runs-dir", str(runs), "--wait", "--timeout", "60"],
                   env=env, capture_output=True, cwd=ROOT)
    monitor.terminate()
    monitor.wait(timeout=60)


def control(run_dir: Path, n: int) -> list[float]:
    from app.runlib import Run

    run = Run(run_dir)
    out = []
    for i in range(n):
        time.sleep(random.uniform(0.05, 0.5))
        run.refresh()
        cid = run.send("set", {"gamma": 1.0 + (i % 2)}, reason="bench", source="bench")
        sent = time.time()
        ans = run.wait_for_answer(cid, 60, poll=0.01)
        if ans and isinstance(ans.get("t"), (int, float)):
            out.append(ans["t"] - sent)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--commands", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="segwatch-slurm-bench-")
    os.chmod(root, 0o755)
    c = Cluster(Path(root) / "cluster")
    try:
        c.up()
        env = {**os.environ, "SLURM_CONF": str(c.conf), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
               "XDG_CONFIG_HOME": str(Path(root) / "xdg")}
        runs = Path(root) / "runs"
        starts: dict[str, list[float]] = {"local": [], "slurm": []}
        lat: dict[str, list[float]] = {"local": [], "slurm": []}
        for i in range(a.n):
            for launcher in ("local", "slurm"):
                name = f"{launcher}{i}"
                dt, mon = start(env, runs, name, launcher)
                if dt is not None:
                    starts[launcher].append(dt)
                if i == 0 and dt is not None:
                    lat[launcher] = control(runs / name, a.commands)
                stop(env, runs, name, mon)
        res = {"machine": machine_info(), "n": a.n,
               "first_step_s": {k: summary(v) for k, v in starts.items()},
               "control_latency_s": {k: summary(v) for k, v in lat.items()},
               "raw": {"first_step_s": starts, "control_latency_s": lat}}
        write_json(Path(a.out) / "slurm_latency.json", res)
        for k in ("local", "slurm"):
            fs, cl = res["first_step_s"][k], res["control_latency_s"][k]
            print(f"{k:5s}  first step: median {fs.get('median', float('nan')):.2f} s (n={len(starts[k])})   "
                  f"control round trip: median {cl.get('median', float('nan')) * 1000:.0f} ms (n={len(lat[k])})")
        return 0
    finally:
        c.run("scancel", "--full", "--user", "root", check=False)
        time.sleep(2)
        c.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
