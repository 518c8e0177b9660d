"""Issue 12, "a run that is sick must look sick": the demonstration of the product.

    python bench/sick_runs.py [--sick lr_x10,reg_heavy] [--after 10] [--threads 1] [--out DIR] [--quick]

For each sick variant of ``configs/lmsa_focal.yaml`` on the default data (same seed 42):

- ``lr_x10``: ``training.learning_rate`` ten times the plan's (5e-3);
- ``reg_heavy``: ``training.dropout=0.6`` and ``training.weight_decay=0.1``;

1. train it with the config's own schedule until its phase's milestone (the early phase's
   ``milestones.early_val_f_epoch``, 10 by default; ``--milestone``), then stop it (SIGTERM: it
   checkpoints and ends ``stopped``);
2. judge it with the app's default rules (no ``health:`` override): colour, the signals not ok,
   and the first suggested action with its resolved values (what one key in the cockpit sends);
3. copy the run directory twice and resume both for ``--after`` more epochs from the same
   checkpoint (same weights, optimizer, RNG and data order): ``fixed`` with that action sent
   through the control channel (``Run.send``, exactly what the key does) before it resumes,
   ``untouched`` without it;
4. report val F of both after every epoch and the mean gain over the ``--after`` epochs.

JSON in ``--out`` (default bench/out/sick_runs/sick_runs.json). ``--quick`` checks the mechanics
on tiny data (64 px, 32 images, milestone 2, 2 epochs after) in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_json  # noqa: E402

SICK = {
    "lr_x10": ["training.learning_rate=5e-3"],
    "reg_heavy": ["training.dropout=0.6", "training.weight_decay=0.1"],
}
QUICK = ["data.image_size=64", "data.synthetic_train=32", "data.synthetic_val=16", "training.batch_size=8"]


def epochs_of(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [e for e in (json.loads(x) for x in path.read_text().splitlines() if x.strip()) if e["type"] == "epoch"]


def train_until(cmd: list[str], run_dir: Path, epoch: int, threads: int, log: Path) -> None:
    """Run the trainer command until ``epoch`` is recorded, then stop it cleanly (SIGTERM)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                eps = epochs_of(run_dir)
                if eps and eps[-1]["epoch"] >= epoch:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=600)
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
    if proc.returncode not in (0, None):
        raise RuntimeError(f"trainer exited {proc.returncode}; see {log}")


def verdict(run_dir: Path):
    from app.health import evaluate, load_rules
    from app.runlib import Run

    run = Run(run_dir)
    run.refresh()
    st = run.state
    return evaluate(list(st.history()), load_rules(), live=dict(st.live or {}), run_state="running",
                    total_epochs=st.total_epochs, warnings=list(st.warnings or ()))


def one(name: str, sets: list[str], a: argparse.Namespace, out: Path) -> dict:
    base = out / name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    sick = base / "sick"
    overrides = [*(QUICK if a.quick else []), *sets]
    cmd = [sys.executable, "-m", "trainer", "--config", str(ROOT / "configs" / "lmsa_focal.yaml"),
           "--run-dir", str(sick), "--device", "cpu"]
    for s in overrides:
        cmd += ["--set", s]
    milestone = a.milestone
    train_until(cmd, sick, milestone, a.threads, base / "sick.log")
    v = verdict(sick)
    row = {"sick": name, "overrides": overrides, "milestone": milestone, "colour": v.status,
           "signals": {s.id: s.state for s in v.signals if s.state not in ("ok", "pending")},
           "val_f_curve": [round(e["val_f"], 4) for e in epochs_of(sick)]}
    action = next((x for x in v.actions if x.values), None)
    row["action"] = {"preset": action.preset, "text": action.text, "values": action.values} if action else None
    if action is None and a.force_preset:  # --quick: nothing is decided that early; check the mechanics anyway
        from app.health import load_rules, resolve_preset
        from app.runlib import Run

        run = Run(sick)
        run.refresh()
        values = resolve_preset(a.force_preset, dict(run.state.live or {}), load_rules(), epoch=milestone + 1)
        action = type("A", (), {"preset": a.force_preset, "text": "forced (--force-preset)", "values": values})()
        row["action"] = {"preset": a.force_preset, "text": action.text, "values": values, "forced": True}
    if action is None or not action.values:
        return row
    arms = {}
    for arm in ("untouched", "fixed"):
        d = base / arm
        shutil.copytree(sick, d)
        for f in ("trainer.pid", "trainer.lock"):
            (d / f).unlink(missing_ok=True)
        if arm == "fixed":
            from app.runlib import Run

            run = Run(d)
            run.refresh()
            run.send("set", dict(action.values), reason=f"preset: {action.preset} (bench/sick_runs.py)", source="bench")
        resume = [sys.executable, "-m", "trainer", "--resume", str(d), "--device", "cpu"]
        train_until(resume, d, milestone + a.after, a.threads, base / f"{arm}.log")
        arms[arm] = [round(e["val_f"], 4) for e in epochs_of(d) if e["epoch"] > milestone]
    row["after"] = arms
    n = min(len(arms["fixed"]), len(arms["untouched"]))
    if n:
        row["mean_gain"] = round(statistics.mean(arms["fixed"][:n]) - statistics.mean(arms["untouched"][:n]), 4)
        row["fixed_colour_after"] = verdict(base / "fixed").status
        row["untouched_colour_after"] = verdict(base / "untouched").status
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sick", default=",".join(SICK))
    p.add_argument("--milestone", type=int, default=0, help="epoch to judge at (default: the rules' early milestone)")
    p.add_argument("--after", type=int, default=10, help="epochs to compare after the action")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "sick_runs"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--force-preset", default="", help="when the rules suggest nothing at the milestone, apply this "
                   "preset anyway (--quick uses early_fix: checks the mechanics)")
    a = p.parse_args()
    if a.quick and not a.force_preset:
        a.force_preset = "early_fix"
    if not a.milestone:
        from app.health import load_rules

        a.milestone = 2 if a.quick else load_rules().milestones.early_val_f_epoch
    if a.quick:
        a.after = min(a.after, 2)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [s for s in a.sick.split(",") if s]:
        rows.append(one(name, SICK[name], a, out))
        r = rows[-1]
        print(f"{name}: {r['colour']} at epoch {r['milestone']} ({', '.join(f'{k}={s}' for k, s in r['signals'].items())}); "
              f"action {r['action'] and r['action']['preset']} {r['action'] and r['action']['values']}; "
              f"mean val F gain over the next epochs {r.get('mean_gain')}", flush=True)
        write_json(out / "sick_runs.json", {"machine": machine_info(), "quick": a.quick, "runs": rows})


if __name__ == "__main__":
    main()
