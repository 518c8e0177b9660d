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

Long runs outlive a session: ``--stop-after N`` runs a config's own schedule and stops it after
epoch N; ``--resume RUN_DIR [--stop-after N]`` continues a stopped run in place from its checkpoint;
``--snapshot RUN_DIR... --json FILE`` reads any of them (running or not) into curves, which
``bench/ablation_table.py`` turns into the tables of bench/RESULTS.md.
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
from trainer.core.classes import CLASS_NAMES, SMALL_CLASSES  # noqa: E402

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


def run_config(name: str, epochs: int, out: Path, extra: list[str], threads: int = 0,
               stop_after: int = 0, tag: str = "", nice: int = 0) -> dict:
    """``stop_after`` > 0: run the config's own schedule (its epoch count, warmup and cosine
    untouched) and stop the trainer (SIGTERM: it checkpoints and ends 'stopped') once epoch
    ``stop_after`` is recorded. Otherwise ``training.epochs`` is set to ``epochs``."""
    label = tag or name
    run_dir = out / label
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / f"{name}.yaml"),
           *([] if stop_after else ["--set", f"training.epochs={epochs}"]), *extra,
           "--run-dir", str(run_dir), "--device", "cpu"]
    if not stop_after and epochs <= 10:  # warmup must stay below the epoch count
        cmd[cmd.index("--run-dir"):cmd.index("--run-dir")] = ["--set", f"training.warmup_epochs={max(0, epochs - 1)}"]
    (out / f"{label}.cpu.jsonl").unlink(missing_ok=True)
    return train(cmd, run_dir, name, label, threads, stop_after, nice)


def resume_run(run_dir: Path, threads: int = 0, stop_after: int = 0, nice: int = 0) -> dict:
    """Continue a stopped run of this bench in place (``python -m trainer --resume``), e.g. after the
    session that started it ended; its log and CPU figures are appended to, its row re-read whole."""
    run_dir = Path(run_dir).resolve()
    meta = json.loads((run_dir / "meta.json").read_text())
    cmd = [sys.executable, "-m", "trainer", "--resume", str(run_dir), "--device", "cpu"]
    cmd_file = run_dir.parent / f"{run_dir.name}.cmd"
    done = sum(1 for x in (run_dir / "events.jsonl").read_text().splitlines() if '"type":"epoch"' in x)
    if stop_after and done >= stop_after:
        return summarize(run_dir, meta.get("name", run_dir.name), run_dir.name,
                         cmd_file.read_text().strip() if cmd_file.exists() else "", stop_after)
    return train(cmd, run_dir, meta.get("name", run_dir.name), run_dir.name, threads, stop_after, nice, resumed=True)


def train(cmd: list[str], run_dir: Path, name: str, label: str, threads: int, stop_after: int, nice: int,
          resumed: bool = False) -> dict:
    """Run one trainer command to its end (or to epoch ``stop_after``: SIGTERM, it checkpoints and
    ends 'stopped'), noting its CPU seconds at every epoch event in ``<label>.cpu.jsonl``."""
    out = run_dir.parent
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    log = open(out / f"{label}.log", "a" if resumed else "w")
    shown = " ".join(cmd).replace(str(ROOT) + "/", "").replace(sys.executable, "python")
    with open(out / f"{label}.cmd", "a" if resumed else "w") as f:
        f.write(shown + "\n")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    epoch_cpu: dict[int, float] = {}  # epoch -> the trainer's CPU seconds when its event appeared
    ev_path = run_dir / "events.jsonl"
    offset, partial = (ev_path.stat().st_size if resumed else 0), b""
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
                if b'"type":"epoch"' in raw:
                    ep = json.loads(raw)["epoch"]
                    if cpu_now is not None:
                        epoch_cpu[ep] = cpu_now
                        with open(out / f"{label}.cpu.jsonl", "a") as cf:
                            cf.write(json.dumps({"epoch": ep, "cpu_s": cpu_now, "pid": proc.pid}) + "\n")
                    if stop_after and ep >= stop_after and proc.poll() is None:
                        proc.terminate()
        except FileNotFoundError:
            pass
        if done:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: trainer exited {proc.returncode}: {(out / f'{label}.log').read_text()[-2000:]}")
    row = summarize(run_dir, name, label, (out / f"{label}.cmd").read_text().strip().replace("\n", " ; "), stop_after)
    row.update({"wall_s": round(wall, 1), "torch_threads": threads or "default",
                "loadavg_1m_at_start": round(load0[0], 2), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)})
    return row


def summarize(run_dir: Path, name: str, label: str, command: str, stop_after: int = 0) -> dict:
    """The row of one run from its record (finished or still going): curves, s/epoch, CPU s/epoch
    (from ``<label>.cpu.jsonl`` beside the run, written while it ran) and the health verdict the
    app's default rules give after every epoch (``health_curve``: green / yellow / red)."""
    run_dir = Path(run_dir)
    evs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    start = next(e for e in evs if e["type"] == "start")
    epochs_ev = [e for e in evs if e["type"] == "epoch"]
    last = epochs_ev[-1]
    times = [e["epoch_time"] for e in epochs_ev]
    later = times[1:] or times
    cpu_file = run_dir.parent / f"{label}.cpu.jsonl"
    epoch_cpu = {}  # epoch -> (the trainer process, its CPU seconds at that epoch's event)
    if cpu_file.exists():
        for line in cpu_file.read_text().splitlines():
            d = json.loads(line)
            epoch_cpu[d["epoch"]] = (d.get("pid"), d["cpu_s"])
    eps = sorted(epoch_cpu)
    cpu_steps = [round(epoch_cpu[b][1] - epoch_cpu[a][1], 2) for a, b in zip(eps, eps[1:])
                 if b == a + 1 and epoch_cpu[a][0] == epoch_cpu[b][0]]  # within one process (a resume restarts it)
    small_last = mean_defined(last["per_class_f"][c] for c in SMALL_CLASSES)
    best = max(epochs_ev, key=lambda e: e["val_f"])
    end = next((e for e in evs if e["type"] == "end"), None)
    return {
        "config": name, "tag": label, "stopped_after": stop_after or None, "command": command,
        "finished": end["reason"] if end else None,
        "seed": start.get("data", {}).get("seed"), "epochs": len(epochs_ev),
        "batch_size": start["batch_size"], "steps_per_epoch": start["steps_per_epoch"], "params": start["params"],
        "data": start.get("data"), "alpha_info": start.get("alpha_info"), "live_alpha": start.get("live", {}).get("alpha"),
        "epoch1_s": times[0], "epoch_times": times, "epoch_cpu_s": cpu_steps, "epoch_s_median": statistics.median(later),
        "epoch_s_min": min(later), "epoch_s_max": max(later),
        "cpu_s_per_epoch_median": statistics.median(cpu_steps) if cpu_steps else None,
        "val_f_last": last["val_f"], "val_f_best": best["val_f"], "best_epoch": best["epoch"],
        "pooled_f_last": last["pooled_f"], "small_f_last": small_last,
        "per_class_f_last": dict(zip(CLASS_NAMES, last["per_class_f"])),
        **step_figures(run_dir),
        "val_f_curve": [round(e["val_f"], 4) for e in epochs_ev],
        "per_class_f_curve": [[None if x is None else round(x, 4) for x in e["per_class_f"]] for e in epochs_ev],
        "small_f_curve": [None if (m := mean_defined(e["per_class_f"][c] for c in SMALL_CLASSES)) is None
                          else round(m, 4) for e in epochs_ev],
        "classes_f_zero_curve": [sum(1 for x in e["per_class_f"] if x is not None and x <= 0) for e in epochs_ev],
        "train_loss_curve": [round(e["train_loss"], 4) for e in epochs_ev],
        **health_curve(evs),
    }


def health_curve(evs: list[dict]) -> dict:
    """The app's verdict (default rules, no `health:` override) after each epoch, as the cockpit
    would have shown it then: status per epoch and the signals that were not ok."""
    from app.health import evaluate, load_rules

    rules = load_rules()
    start = next(e for e in evs if e["type"] == "start")
    warnings = [e for e in evs if e["type"] == "warning"]
    history, status, flagged = [], [], {}
    for e in (x for x in evs if x["type"] == "epoch"):
        history.append(e)
        v = evaluate(history, rules, live=start.get("live"), run_state="running", total_epochs=e.get("epochs"),
                     warnings=[w for w in warnings if w.get("seq", 0) < e.get("seq", 0)])
        status.append(v.status)
        bad = [f"{s.id}:{s.state}" for s in v.signals if s.state in ("warning", "failed")]
        if bad:
            flagged[e["epoch"]] = bad
    return {"health_curve": status, "health_flagged": flagged}


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


def run(epochs: int = 20, configs=CONFIGS, out: Path | None = None, quick: bool = False, threads: int = 0,
        stop_after: int = 0, sets: list[str] | None = None, tag: str = "", nice: int = 0) -> dict:
    out = Path(out or ROOT / "bench" / "out" / "quality")
    out.mkdir(parents=True, exist_ok=True)
    extra = []
    if quick:
        epochs, configs, threads = 2, ("baseline",), threads or 1
        extra = ["--set", "data.image_size=64", "--set", "data.synthetic_train=32", "--set", "data.synthetic_val=16",
                 "--set", "training.batch_size=8"]
    for kv in sets or []:
        extra += ["--set", kv]
    rows = []
    for name in configs:
        row = run_config(name, epochs, out, extra, threads, stop_after, f"{name}{tag}", nice)
        rows.append(row)
        print(f"{name}: {row['epochs']} epochs, median {row['epoch_s_median']:.1f} s/epoch "
              f"(min {row['epoch_s_min']:.1f}, epoch 1 {row['epoch1_s']:.1f}), val F {row['val_f_last']:.4f} "
              f"(best {row['val_f_best']:.4f} @{row['best_epoch']}), small-class F {row['small_f_last'] or 0:.4f}",
              flush=True)
        write_json(out / f"quality-{'-'.join(configs)}{tag}.json", {"machine": machine_info(), "epochs": epochs, "runs": rows})
    return {"epochs": epochs, "quick": quick, "runs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the trainers (0: torch's default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="run each config's own schedule (no epoch override) and stop it after epoch N")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="extra trainer --set (e.g. loss.focal_alpha=balanced); name the variant with --tag")
    p.add_argument("--tag", default="", help="suffix of the run folder and JSON names (e.g. _balanced)")
    p.add_argument("--nice", type=int, default=0, help="run the trainers under nice -n N")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped run of this bench in place (with --stop-after N: up to epoch N)")
    p.add_argument("--snapshot", nargs="+", metavar="RUN_DIR",
                   help="only summarize these run directories (finished or still running) into --json")
    p.add_argument("--json", help="with --snapshot: the JSON file to write")
    p.add_argument("--summarize", action="store_true",
                   help="only re-read the run directories under --out and add the step-event figures to its JSON")
    a = p.parse_args()
    if a.resume:
        row = resume_run(Path(a.resume), a.threads, a.stop_after, a.nice)
        print(f"{row['tag']}: {row['epochs']} epochs, val F {row['val_f_last']:.4f} (best {row['val_f_best']:.4f} "
              f"@{row['best_epoch']})", flush=True)
        return
    if a.snapshot:
        rows = []
        for d in a.snapshot:
            d = Path(d)
            meta = d / "meta.json"
            name = json.loads(meta.read_text()).get("name", d.name) if meta.exists() else d.name
            cmd_file = d.parent / f"{d.name}.cmd"
            rows.append(summarize(d, name, d.name, cmd_file.read_text().strip() if cmd_file.exists() else ""))
            r = rows[-1]
            print(f"{d.name}: {r['epochs']} epochs, val F {r['val_f_last']:.4f} (best {r['val_f_best']:.4f} "
                  f"@{r['best_epoch']}), zero-F classes {r['classes_f_zero_curve'][-1]}, health {r['health_curve'][-1]}")
        write_json(Path(a.json), {"machine": machine_info(), "snapshot": True, "runs": rows})
        return
    if a.summarize:
        for f in Path(a.out).glob("quality-*.json"):
            d = json.loads(f.read_text())
            for row in d.get("runs", []):
                row.update(step_figures(Path(a.out) / row["config"]))
            write_json(f, d)
            print(f, [(r["config"], r.get("data_wait_median"), r.get("train_s_per_epoch_est")) for r in d["runs"]])
        return
    configs = [c for c in a.configs.split(",") if c]
    res = run(a.epochs, configs, Path(a.out), a.quick, a.threads, a.stop_after, a.sets, a.tag, a.nice)
    write_json(Path(a.out) / f"quality-{'-'.join(configs)}{a.tag}.json", {"machine": machine_info(), **res})


if __name__ == "__main__":
    main()
