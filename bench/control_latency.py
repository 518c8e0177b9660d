"""Item 2: control latency, from a command appended to control.jsonl to its ack in the record.

    python bench/control_latency.py [--fast-n 100] [--slow-n 30] [--quick] [--out DIR]

Starts the real trainer (``python -m trainer``, tiny model so a step is short: width 8, 32 px,
batch 2, 512 synthetic images = 256 steps per epoch, ``log_every=1``), then sends ``set gamma``
commands through the app's own path (``app.runlib.Run.send``: validate, one O_APPEND write) at
random moments (uniform gaps, so they land anywhere inside a step). Latency = the ack event's
``t`` (written by the trainer when it answers) - the wall time right after ``send`` returned
(the line is in the file). Two step lengths: ``fast`` (the tiny model as fast as this machine
runs it) and ``slow`` (``debug.step_delay=1.0``: one second per step). The step time is measured
from consecutive ``step`` events of the same run. Latency is also given in steps.
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

from bench.common import machine_info, summary, write_json  # noqa: E402


def trainer_cmd(run_dir: Path, step_delay: float) -> list[str]:
    sets = {"name": "latency", "model.width": 8, "data.image_size": 32, "data.synthetic_train": 512,
            "data.synthetic_val": 4, "training.batch_size": 2, "training.epochs": 1000,
            "training.warmup_epochs": 0, "training.log_every": 1, "augmentation.rotation": 0,
            "debug.step_delay": step_delay}
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "baseline.yaml"),
           "--run-dir", str(run_dir), "--device", "cpu"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def read_events(path: Path) -> list[dict]:
    out = []
    try:
        for line in path.read_bytes().split(b"\n"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    except FileNotFoundError:
        pass
    return out


def measure(step_delay: float, n: int, gap: tuple[float, float], tmp: Path, label: str) -> dict:
    from app.runlib import Run

    run_dir = tmp / label
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(trainer_cmd(run_dir, step_delay), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ev_path = run_dir / "events.jsonl"
        deadline = time.time() + 180
        while sum(1 for e in read_events(ev_path) if e.get("type") == "step") < 3:  # running and warm
            if proc.poll() is not None:
                raise RuntimeError(f"trainer exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                raise RuntimeError("trainer did not start stepping within 180 s")
            time.sleep(0.05)
        run = Run(run_dir)
        run.refresh()
        rnd = random.Random(7)
        sent: dict[str, float] = {}
        for i in range(n):
            time.sleep(rnd.uniform(*gap))
            cid = run.send("set", {"gamma": 2.0 if i % 2 else 2.5}, reason="latency bench", source="bench")
            sent[cid] = time.time()
        deadline = time.time() + max(30.0, 5 * step_delay + 10)
        while True:
            acks = {e["id"]: e for e in read_events(ev_path) if e.get("type") in ("ack", "nack") and e.get("id") in sent}
            if len(acks) == len(sent) or time.time() > deadline:
                break
            time.sleep(0.05)
        evs = read_events(ev_path)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lat = [(acks[c]["t"] - t) * 1000 for c, t in sent.items() if c in acks and acks[c]["type"] == "ack"]
    steps = [e for e in evs if e.get("type") == "step"]
    t_first, t_last = min(sent.values()), max(sent.values()) + 5
    gaps = [(b["t"] - a["t"]) * 1000 for a, b in zip(steps, steps[1:])
            if b["step"] == a["step"] + 1 and b["epoch"] == a["epoch"] and t_first <= b["t"] <= t_last]
    step_ms = summary(gaps)
    med_step = step_ms.get("median") or float("nan")
    return {"step_delay_s": step_delay, "commands": n, "answered": len(acks),
            "acked": len(lat), "latency_ms": summary(lat), "step_ms": step_ms,
            "latency_steps": summary([x / med_step for x in lat]),
            "p95_minus_p95_step_ms": (summary(lat).get("p95", float("nan")) - step_ms.get("p95", float("nan")))}


def run(fast_n: int = 100, slow_n: int = 30, quick: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-ctl-"))
    try:
        if quick:  # CI: one trainer start is most of the time; the slow case is the same code
            return {"fast": measure(0.0, 4, (0.03, 0.12), tmp, "fast"), "slow": {"skipped": "quick mode"}}
        fast = measure(0.0, fast_n, (0.03, 0.12), tmp, "fast")
        slow = measure(1.0, slow_n, (0.5, 1.6), tmp, "slow")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"fast": fast, "slow": slow}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast-n", type=int, default=100)
    p.add_argument("--slow-n", type=int, default=30)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    res = run(a.fast_n, a.slow_n, a.quick)
    write_json(Path(a.out) / "control_latency.json", {"machine": machine_info(), **res})
    for k, r in res.items():
        if "latency_ms" not in r:
            print(f"{k}: {r}")
            continue
        la, st = r["latency_ms"], r["step_ms"]
        print(f"{k}: step median {st.get('median', 0):.1f} ms (p95 {st.get('p95', 0):.1f}); latency p50 "
              f"{la.get('median', 0):.1f} ms, p95 {la.get('p95', 0):.1f} ms, max {la.get('max', 0):.1f} ms "
              f"({r['acked']}/{r['commands']} acked)")


if __name__ == "__main__":
    main()
