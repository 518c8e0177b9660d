"""Fast epochs: the cockpit's CPU per epoch event when 6 runs each finish an epoch every second.

    python bench/tui_fast_epochs.py [--runs 6] [--seconds 60] [--size 200x55] [--compare-tree DIR] [--out DIR]
    python bench/tui_fast_epochs.py --runs 2 --rate 40 --size 160x50   (issue 13's two runs at 2 epochs/s)

Six fake trainers (bench/_paced_fake.py: 20 step events per second, an epoch event every 20
steps, so one epoch per second each) and ``segwatch attach`` on all of them (the real command,
default polling, ``--no-gpu``) on a pseudo-terminal of ``--size`` whose output is drained. After a
warm-up, the CPU time (user + system, all threads, from /proc) and RSS of the segwatch process are
sampled for ``--seconds`` (RSS every 10 s). Reported: CPU % of one core, epoch events written in
the window (all runs), CPU ms per epoch event, RSS over time. ``--compare-tree`` runs the same
command from another source tree on the same runs at the same time (before/after side by side).
The issue asked for 10 minutes; the default here is 60 s (the per-event cost is flat after the
warm-up; pass --seconds 600 for the long form).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PtyProcess, machine_info, stop_all, tree_cpu_rss, write_json  # noqa: E402

MB = 1e6


def _count(path: Path, kind: bytes) -> int:
    try:
        return path.read_bytes().count(b'"type":"' + kind + b'"')
    except FileNotFoundError:
        return 0


def measure(n_runs: int = 6, seconds: float = 60, warmup: float = 10, size: tuple[int, int] = (200, 55),
            compare_tree: str | None = None, rate: float = 20, steps_per_epoch: int = 20) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-fast-"))
    procs: list = []
    ptys: list[PtyProcess] = []
    try:
        runs = [tmp / f"run-{i}" for i in range(n_runs)]
        for d in runs:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_paced_fake.py"), str(d),
                                           "--rate", str(rate), "--steps-per-epoch", str(steps_per_epoch)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        trees = {"segwatch": str(ROOT)}
        if compare_tree:
            trees["segwatch_compare_tree"] = compare_tree
        pids = {}
        for k, tree in trees.items():
            p = PtyProcess([sys.executable, "-m", "app", "attach", *map(str, runs), "--no-gpu"], cwd=tree,
                           cols=size[0], rows=size[1])
            ptys.append(p)
            pids[k] = p.pid
        time.sleep(warmup)
        e0 = sum(_count(d / "events.jsonl", b"epoch") for d in runs)
        c0 = {k: tree_cpu_rss(p)[0] for k, p in pids.items()}
        t0 = time.monotonic()
        rss: dict[str, list[tuple[float, float]]] = {k: [] for k in pids}
        tick = 0
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            tick += 1
            if tick % 10 == 0 or tick == 1:
                for k, p in pids.items():
                    rss[k].append((round(time.monotonic() - t0), round(tree_cpu_rss(p)[1] / MB, 1)))
        dt = time.monotonic() - t0
        epochs = sum(_count(d / "events.jsonl", b"epoch") for d in runs) - e0
        out = {"runs": n_runs, "size": f"{size[0]}x{size[1]}", "seconds": round(dt, 1),
               "epoch_events_in_window": epochs, "epochs_per_s_per_run": round(epochs / dt / n_runs, 2)}
        for k, p in pids.items():
            cpu = tree_cpu_rss(p)[0] - c0[k]
            out[k] = {"tree": trees[k], "cpu_s": round(cpu, 2), "cpu_pct_one_core": round(cpu / dt * 100, 1),
                      "cpu_ms_per_epoch_event": round(cpu / max(epochs, 1) * 1000, 1),
                      "rss_mb_over_time": rss[k], "alive_at_end": ptys[list(pids).index(k)].proc.poll() is None}
        return out
    finally:
        stop_all(ptys, procs, tmp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--size", default="200x55")
    p.add_argument("--compare-tree")
    p.add_argument("--rate", type=float, default=20, help="step events per second per run")
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    res = measure(a.runs, a.seconds, size=(cols, rows), compare_tree=a.compare_tree, rate=a.rate,
                  steps_per_epoch=a.steps_per_epoch)
    write_json(Path(a.out) / f"tui_fast_epochs-{a.runs}runs.json", {"machine": machine_info(), **res})
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
