"""Issue 16's GPU checks in one short run (a few minutes on one or two GPUs), PASS/FAIL per check.

    python bench/gpu_checks.py [--out DIR]     # on a GPU machine
    python bench/gpu_checks.py --dry-run       # on the CPU, tiny sizes: checks the script itself

Checks (each a real ``python -m trainer`` process unless said otherwise):
- ``precision``: ``training.amp: auto`` picks bf16 exactly where the GPU has it natively
  (compute capability >= 8.0), and the start event says so (in-process: ``choose_precision``).
- ``cuda_setup``: cudnn.benchmark is on and AdamW is fused on CUDA, also when resuming a checkpoint
  written on the CPU (in-process: ``build`` + ``restore_state``).
- ``ddp_resume``: with 2+ GPUs, 2 DDP processes (NCCL): they step, a ``stop`` ends the run mid-epoch,
  ``--resume`` continues on 2 processes with the same steps per epoch, both ranks log the same steps
  and every step's LR is the schedule's. With one GPU the same on one process (DDP: SKIP).
- ``data_wait``: the trainer with its default data settings at 512 px on synthetic faces: median
  share of time waiting for data over epochs 2-3 must be below 25 %; images/s reported.

NOT RUN in the session that wrote it (no GPU was available); its ``--dry-run`` runs in the test
suite (tests/bench/test_gpu_checks.py). Results go to bench/RESULTS.md when a GPU is available.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.record import read_events  # noqa: E402
from trainer.schedule import lr_at  # noqa: E402

BASE = ROOT / "configs" / "baseline.yaml"


def trainer(args: list[str], timeout: float, *, wait: bool = True, device: str = "cuda") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "trainer", *args, "--device", device], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        p.err = p.communicate(timeout=timeout)[1]  # type: ignore[attr-defined]
    return p


def sets(*items: str) -> list[str]:
    out: list[str] = []
    for s in items:
        out += ["--set", s]
    return out


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e.get("type") == kind] if (run / "events.jsonl").exists() else []


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


def check_precision(device) -> dict:
    import torch

    from trainer.device import choose_precision

    on, why = choose_precision("auto", device)
    if device.type != "cuda":
        return {"ok": on is False, "chosen": "bf16" if on else "fp32", "reason": why}
    cc = torch.cuda.get_device_capability(device)
    ok = on == (cc >= (8, 0))
    if on:  # and bf16 autocast really runs here
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)
        ok = ok and y.dtype == torch.bfloat16 and float(y[0, 0]) == 64.0
    return {"ok": ok, "capability": f"{cc[0]}.{cc[1]}", "chosen": "bf16" if on else "fp32", "reason": why}


def check_cuda_setup(device, tmp: Path) -> dict:
    import torch

    from trainer import checkpoint as ckpt
    from trainer.core.config import load_config
    from trainer.dist import DistContext
    from trainer.build import build, restore_state
    from trainer.rundir import open_run
    from trainer.train import Trainer

    tiny = ["data.synthetic_train=16", "data.synthetic_val=4", "data.image_size=32", "training.batch_size=4"]
    cfg = load_config(BASE, tiny)
    cpu = open_run(build(cfg, torch.device("cpu"), DistContext()), tmp / "cpu-run", None, [])
    Trainer(cpu).save("last")
    cpu.events.close()
    state = ckpt.load(tmp / "cpu-run" / "checkpoints" / "last.pt")
    comp = build(load_config(BASE, tiny), device, DistContext())
    restore_state(comp, state)
    fused = [g.get("fused") for g in comp.optimizer.param_groups]
    want = device.type == "cuda"
    bench = bool(torch.backends.cudnn.benchmark)
    return {"ok": all(f == want for f in fused) and bench == want, "fused_after_cpu_checkpoint": fused,
            "cudnn_benchmark": bench}


def check_ddp_resume(device_kind: str, nproc: int, tmp: Path, small: bool) -> dict:
    run = tmp / f"ddp{nproc}"
    size, n_train, bs = (32, 64, 8) if small else (128, 64 * nproc, 16)
    extra = ["model.width=8"] if small else []
    cfg = sets(f"data.image_size={size}", f"data.synthetic_train={n_train}", "data.synthetic_val=17",
               f"training.batch_size={bs}", "training.epochs=3", "training.warmup_epochs=1", "training.log_every=1",
               "debug.rank_log=true", "debug.step_delay=0.05", *extra)
    args = ["--config", str(BASE), "--run-dir", str(run), *cfg, "--nproc-per-node", str(nproc)]
    p = trainer(args, 0, wait=False, device=device_kind)
    try:
        wait_for(lambda: [s for s in events(run, "step") if s["step"] >= 6], 240, "step 6")
        line = {"v": 1, "id": uuid.uuid4().hex, "t": time.time(), "cmd": "stop", "source": "gpu_checks"}
        with open(run / "control.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        _, err1 = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    stopped_at = (events(run, "checkpoint") or [{}])[-1].get("step")
    r = trainer(["--resume", str(run)], 300, device=device_kind)
    starts = events(run, "start")
    spe = starts[0]["steps_per_epoch"] if starts else 0
    logs = [[json.loads(x) for x in (run / "ranks" / f"rank{k}.jsonl").read_text().splitlines()] for k in range(nproc)
            if (run / "ranks" / f"rank{k}.jsonl").exists()]
    steps = [[e for e in log if "step" in e] for log in logs]
    base = starts[0]["live"]["lr"] if starts else 0
    lr_ok = bool(steps) and all(abs(e["lr"] - lr_at(e["step"] - 1, base, spe, 3 * spe, 0.01)) <= 1e-9 * base
                                for e in steps[0])
    res = {"exit_codes": [p.returncode, r.returncode], "world_sizes": [s["world_size"] for s in starts],
           "steps_per_epoch": [s["steps_per_epoch"] for s in starts],
           "stopped_at_step": stopped_at,
           "ranks_agree": len(steps) == nproc and all(s == steps[0] for s in steps),
           "steps_contiguous": bool(steps) and [e["step"] for e in steps[0]] == list(range(1, 3 * spe + 1)),
           "lr_is_schedule": lr_ok, "end": (events(run, "end") or [{}])[-1].get("reason")}
    res["ok"] = (res["exit_codes"] == [0, 0] and res["world_sizes"] == [nproc, nproc] and len(set(res["steps_per_epoch"])) == 1
                 and res["ranks_agree"] and res["steps_contiguous"] and lr_ok and res["end"] == "completed")
    if not res["ok"]:
        res["stderr_tail"] = (getattr(p, "err", None) or err1 or "")[-1500:] + (r.err or "")[-1500:]  # type: ignore[attr-defined]
    return res


def _config_value(run: Path, section: str, key: str):
    import yaml

    try:
        return (yaml.safe_load((run / "config.yaml").read_text()).get(section) or {}).get(key)
    except (OSError, AttributeError, yaml.YAMLError):
        return None


def check_data_wait(device_kind: str, tmp: Path, small: bool) -> dict:
    run = tmp / "defaults"
    # 128 synthetic faces at 512 px take ~50 CPU-seconds to generate (once: epoch 1); epochs 2-3 are measured
    size, n_train, extra = (32, 64, ["model.width=8"]) if small else (512, 128, [])
    cfg = sets(f"data.image_size={size}", f"data.synthetic_train={n_train}", "data.synthetic_val=16", "training.epochs=3",
               "training.warmup_epochs=0", "training.log_every=1", *extra)
    t0 = time.monotonic()
    p = trainer(["--config", str(BASE), "--run-dir", str(run), *cfg], 400, device=device_kind)
    steps = [s for s in events(run, "step") if s["epoch"] >= 2 and s.get("data_wait") is not None]
    wait = statistics.median(s["data_wait"] for s in steps) if steps else None
    ips = statistics.median(s["samples_per_s"] for s in steps) if steps else None
    start = (events(run, "start") or [{}])[0]
    res = {"exit": p.returncode, "median_data_wait": wait, "images_per_s": ips, "wall_s": round(time.monotonic() - t0, 1),
           "num_workers": _config_value(run, "training", "num_workers"), "precision": start.get("precision"),
           "image_size": size}
    res["ok"] = p.returncode == 0 and wait is not None and (small or wait < 0.25)
    if p.returncode:
        res["stderr_tail"] = p.err[-1500:]  # type: ignore[attr-defined]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, gloo: checks the script, measures nothing")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = ap.parse_args()
    import torch

    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_checks: no CUDA device here (use --dry-run to check the script on the CPU)", file=sys.stderr)
        return 2
    kind = "cpu" if a.dry_run else "cuda"
    device = torch.device("cpu") if a.dry_run else torch.device("cuda", 0)
    ngpu = 0 if a.dry_run else torch.cuda.device_count()
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-gpu-checks-"))
    t0 = time.monotonic()
    results: dict[str, dict] = {}
    plan = [("precision", lambda: check_precision(device)),
            ("cuda_setup", lambda: check_cuda_setup(device, tmp)),
            ("ddp_resume", lambda: check_ddp_resume(kind, 2 if (a.dry_run or ngpu >= 2) else 1, tmp, a.dry_run)),
            ("data_wait", lambda: check_data_wait(kind, tmp, a.dry_run))]
    for name, fn in plan:
        t = time.monotonic()
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001 - a check that crashes is a FAIL with its reason, the others still run
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.monotonic() - t, 1)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    info = {"dry_run": a.dry_run, "gpus": ngpu, "torch": torch.__version__,
            "device_name": torch.cuda.get_device_name(0) if ngpu else "cpu", "total_s": round(time.monotonic() - t0, 1)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu_checks-dry.json" if a.dry_run else "gpu_checks.json")).write_text(json.dumps({**info, "results": results}, indent=2))
    print(f"\nSUMMARY ({info['device_name']}, {ngpu} GPU(s), {info['total_s']} s{', DRY RUN' if a.dry_run else ''})")
    for name, r in results.items():
        verdict = "PASS" if r["ok"] else "FAIL"
        if name == "ddp_resume" and not a.dry_run and ngpu < 2:
            verdict += " (one GPU: resume checked on 1 process; 2-GPU DDP SKIPPED)"
        print(f"  {verdict:4}  {name}")
    ok = all(r["ok"] for r in results.values())
    print("ALL PASS" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
