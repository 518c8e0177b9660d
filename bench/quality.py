"""Item 7 + issue 2: the ablation chain on the built-in synthetic data.

    python bench/quality.py [--epochs 20] [--configs baseline,lmsa,lmsa_focal,lmsa_aggressive]
                            [--out bench/out/quality] [--quick]

Runs each shipped config as a real trainer process (``python -m trainer --config
configs/<name>.yaml --set training.epochs=N --device cpu``), one after the other, and reads
its ``events.jsonl``: seconds per epoch (``epoch_time``; epoch 1 also generates the synthetic
samples, so it is reported apart), the organisers' val F (``val_f``) at the last epoch and the
best one, and the mean per-class val F over the small classes (``SMALL_CLASSES``: nose, eyes,
brows, ears, mouth, lips). Nothing else is overridden: the seed is the config's (42), warmup
stays at the config's 10 epochs, the cosine schedule is fitted to the shortened run.

``--quick`` (CI): 1 epoch of baseline at 64 px, 32 train / 16 val images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_json  # noqa: E402
from trainer.data.classes import CLASS_NAMES, SMALL_CLASSES  # noqa: E402

CONFIGS = ("baseline", "lmsa", "lmsa_focal", "lmsa_aggressive")


def mean_defined(xs) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def proc_cpu(pid: int) -> float | None:
    """user + system CPU seconds of a live process (Linux /proc), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_config(name: str, epochs: int, out: Path, extra: list[str], threads: int = 0) -> dict:
    run_dir = out / name
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / f"{name}.yaml"),
           "--set", f"training.epochs={epochs}", *extra, "--run-dir", str(run_dir), "--device", "cpu"]
    if epochs <= 10:  # warmup must stay below the epoch count
        cmd[cmd.index("--run-dir"):cmd.index("--run-dir")] = ["--set", f"training.warmup_epochs={max(0, epochs - 1)}"]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    log = open(out / f"{name}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    epoch_cpu: dict[int, float] = {}  # epoch -> the trainer's CPU seconds when its event appeared
    offset, partial = 0, b""
    ev_path = run_dir / "events.jsonl"
    while True:
        done = proc.poll() is not None
        try:
            with open(ev_path, "rb") as f:
                f.seek(offset)
                data = f.read()
            offset += len(data)
            *lines, partial = (partial + data).split(b"\n")
            cpu_now = proc_cpu(proc.pid)
            for raw in lines:
                if b'"type":"epoch"' in raw and cpu_now is not None:
                    epoch_cpu[json.loads(raw)["epoch"]] = cpu_now
        except FileNotFoundError:
            pass
        if done:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: trainer exited {proc.returncode}: {(out / f'{name}.log').read_text()[-2000:]}")
    evs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    start = next(e for e in evs if e["type"] == "start")
    epochs_ev = [e for e in evs if e["type"] == "epoch"]
    last = epochs_ev[-1]
    times = [e["epoch_time"] for e in epochs_ev]
    later = times[1:] or times
    eps = sorted(epoch_cpu)
    cpu_steps = [round(epoch_cpu[b] - epoch_cpu[a], 2) for a, b in zip(eps, eps[1:]) if b == a + 1]
    small_last = mean_defined(last["per_class_f"][c] for c in SMALL_CLASSES)
    best = max(epochs_ev, key=lambda e: e["val_f"])
    return {
        "config": name, "command": " ".join(cmd[1:]).replace(str(ROOT) + "/", ""),
        "seed": start.get("data", {}).get("seed"), "epochs": len(epochs_ev),
        "batch_size": start["batch_size"], "steps_per_epoch": start["steps_per_epoch"], "params": start["params"],
        "epoch1_s": times[0], "epoch_times": times, "epoch_cpu_s": cpu_steps, "epoch_s_median": statistics.median(later), "epoch_s_min": min(later),
        "epoch_s_max": max(later), "wall_s": round(wall, 1), "torch_threads": threads or "default",
        "cpu_s_per_epoch_median": statistics.median(cpu_steps) if cpu_steps else None,
        "loadavg_1m_at_start": round(load0[0], 2), "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "val_f_last": last["val_f"], "val_f_best": best["val_f"], "best_epoch": best["epoch"],
        "pooled_f_last": last["pooled_f"], "small_f_last": small_last,
        "per_class_f_last": dict(zip(CLASS_NAMES, last["per_class_f"])),
        **step_figures(run_dir),
        "val_f_curve": [round(e["val_f"], 4) for e in epochs_ev],
        "train_loss_curve": [round(e["train_loss"], 4) for e in epochs_ev],
    }


def step_figures(run_dir: Path) -> dict:
    """From the step events: training throughput and the data-wait fraction (medians over epochs
    2..N; epoch 1 also generates the synthetic samples), and the split of an epoch's time."""
    evs = [json.loads(x) for x in (Path(run_dir) / "events.jsonl").read_text().splitlines() if x.strip()]
    start = next(e for e in evs if e["type"] == "start")
    steps = [e for e in evs if e["type"] == "step" and e["epoch"] >= 2]
    epochs = {e["epoch"]: e for e in evs if e["type"] == "epoch" and e["epoch"] >= 2}
    if not steps or not epochs:
        return {}
    sps = statistics.median(e["samples_per_s"] for e in steps)
    train_s = start["steps_per_epoch"] * start["batch_size"] / sps
    ep = statistics.median(e["epoch_time"] for e in epochs.values())
    return {"train_samples_per_s_median": round(sps, 2), "data_wait_median": statistics.median(e["data_wait"] for e in steps),
            "train_s_per_epoch_est": round(train_s, 1), "val_and_checkpoint_s_per_epoch_est": round(max(0.0, ep - train_s), 1)}


def run(epochs: int = 20, configs=CONFIGS, out: Path | None = None, quick: bool = False, threads: int = 0) -> dict:
    out = Path(out or ROOT / "bench" / "out" / "quality")
    out.mkdir(parents=True, exist_ok=True)
    extra = []
    if quick:
        epochs, configs, threads = 2, ("baseline",), threads or 1
        extra = ["--set", "data.image_size=64", "--set", "data.synthetic_train=32", "--set", "data.synthetic_val=16",
                 "--set", "training.batch_size=8"]
    rows = []
    for name in configs:
        row = run_config(name, epochs, out, extra, threads)
        rows.append(row)
        print(f"{name}: {row['epochs']} epochs, median {row['epoch_s_median']:.1f} s/epoch "
              f"(min {row['epoch_s_min']:.1f}, epoch 1 {row['epoch1_s']:.1f}), val F {row['val_f_last']:.4f} "
              f"(best {row['val_f_best']:.4f} @{row['best_epoch']}), small-class F {row['small_f_last'] or 0:.4f}",
              flush=True)
        write_json(out / f"quality-{'-'.join(configs)}.json", {"machine": machine_info(), "epochs": epochs, "runs": rows})
    return {"epochs": epochs, "quick": quick, "runs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the trainers (0: torch's default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--summarize", action="store_true",
                   help="only re-read the run directories under --out and add the step-event figures to its JSON")
    a = p.parse_args()
    if a.summarize:
        for f in Path(a.out).glob("quality-*.json"):
            d = json.loads(f.read_text())
            for row in d.get("runs", []):
                row.update(step_figures(Path(a.out) / row["config"]))
            write_json(f, d)
            print(f, [(r["config"], r.get("data_wait_median"), r.get("train_s_per_epoch_est")) for r in d["runs"]])
        return
    configs = [c for c in a.configs.split(",") if c]
    res = run(a.epochs, configs, Path(a.out), a.quick, a.threads)
    write_json(Path(a.out) / f"quality-{'-'.join(configs)}.json", {"machine": machine_info(), **res})


if __name__ == "__main__":
    main()
