"""Item 6 (GPU): images/s at 512 px, bf16 autocast + channels_last, torch.compile off and on.

    python bench/gpu_throughput.py [--size 512] [--batch 32] [--steps 40] [--workers 12] [--out DIR]
    python bench/gpu_throughput.py --smoke        # tiny, on the CPU: proves the script runs

Written for one H200 and a few minutes (about 3-4 min: two compiles of the model, ~40 timed steps
per variant). NOT RUN in the session that wrote it (no GPU was available): see bench/RESULTS.md.

Part A, the model step alone (batches already on the GPU, 32 distinct synthetic faces at
``--size`` px, so the data pipeline is out of the picture), for compile off and on:
- ``bare``: ``zero_grad; loss_fn(model(x), y).backward(); opt.step()`` under bf16 autocast;
- ``bare+sync``: the same plus one ``loss.item()`` per step (what any loop that logs or
  checks every step pays);
- ``segwatch``: ``Trainer.train_step`` (grad clipping, the finite check before the optimizer
  step, merged with the SIGTERM and control flags into the step's one host sync) + the train F meter update + the
  control poll, exactly the trainer's per-step work.
Timing: ``torch.cuda.synchronize()`` before and after ``--steps`` steps, after warm-up steps
(compile happens there). Reported: images/s and the ratio to ``bare``.

Part B, the whole trainer with its data pipeline: ``Trainer.train_epoch`` (DataLoader with
``--workers`` worker processes, pinned memory, augmentation on the CPU) over 256 synthetic faces,
compile off, three epochs: images/s from the step events and the trainer's own ``data_wait``.
Twice: as ``python -m trainer`` runs it (``prefill=False``: each worker generates the samples it
serves and its cache dies with it at each epoch's end), and with the samples generated once by a
process pool and cached before the workers fork (``prefill=True``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, write_json  # noqa: E402


def _gen(args):
    from trainer.data.synthetic import SyntheticFaces

    n, size, seed, split, i = args
    return i, SyntheticFaces(n, size, seed, split).get_raw(i)


def _prefill(source, processes: int) -> None:
    """Generate every synthetic sample with a process pool and put it in the source's cache."""
    if source.cache is None:
        return
    jobs = [(source.n, source.size, source.seed, source.split, i) for i in range(source.n)]
    with mp.get_context("fork").Pool(processes) as pool:
        for i, sample in pool.imap_unordered(_gen, jobs, chunksize=4):
            source.cache[i] = sample


def _trainer(run_dir: Path, device, *, size: int, batch: int, n_train: int, workers: int, compile_: bool,
             amp: str, channels_last: str):
    import torch  # noqa: F401

    from trainer.core.config import from_dict
    from trainer.dist import DistContext
    from trainer.build import build
    from trainer.rundir import open_run
    from trainer.train import Trainer

    cfg = from_dict({"name": "gpu-bench", "data": {"image_size": size, "synthetic_train": n_train, "synthetic_val": batch},
                     "training": {"batch_size": batch, "log_every": 1, "epochs": 10_000, "warmup_epochs": 1,
                                  "num_workers": workers, "compile": compile_, "amp": amp,
                                  "channels_last": channels_last}}, source="gpu-bench")
    c = open_run(build(cfg, device, DistContext()), run_dir, None, ["gpu-bench"])
    return Trainer(c)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_a(device, tmp: Path, *, size: int, batch: int, steps: int, warmup: int, compile_: bool, amp: str,
           channels_last: str, workers: int) -> dict:
    import torch

    from trainer.metrics import FScoreMeter

    tr = _trainer(tmp / f"a-{int(compile_)}", device, size=size, batch=batch, n_train=batch, workers=0,
                  compile_=compile_, amp=amp, channels_last=channels_last)
    c = tr.c
    _prefill(c.train_ds.source, max(1, workers))
    c.train_ds.set_epoch(1)
    items = [c.train_ds[i] for i in range(batch)]
    x = torch.stack([a for a, _ in items]).to(device)
    y = torch.stack([b for _, b in items]).to(device)
    if c.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model, opt, loss_fn = c.model, c.optimizer, c.loss_fn
    meter = FScoreMeter()

    def bare(sync: bool):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=c.amp):
            loss, _ = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if sync:
            loss.item()

    def seg():
        tr.control_point()
        loss, pred, ok = tr.train_step(x, y, tr.lr_for(tr.step))
        tr.step += 1
        if ok:
            meter.update(pred, y)

    variants = {"bare": lambda: bare(False), "bare+sync": lambda: bare(True), "segwatch": seg}
    t_compile = time.perf_counter()
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    t_compile = time.perf_counter() - t_compile
    res: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(3):  # interleaved repetitions
        for k, fn in variants.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            res[k].append(steps * batch / (time.perf_counter() - t0))
    out = {k: statistics.median(v) for k, v in res.items()}
    return {"images_per_s": out, "ratio_to_bare": {k: v / out["bare"] for k, v in out.items()},
            "spread": {k: [min(v), max(v)] for k, v in res.items()}, "warmup_s_incl_compile": round(t_compile, 1),
            "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None}


def part_b(device, tmp: Path, *, size: int, batch: int, workers: int, amp: str, channels_last: str, n_train: int,
           prefill: bool) -> dict:
    tr = _trainer(tmp / f"b{int(prefill)}", device, size=size, batch=batch, n_train=n_train, workers=workers,
                  compile_=False, amp=amp, channels_last=channels_last)
    t0 = time.perf_counter()
    if prefill:
        _prefill(tr.c.train_ds.source, max(1, workers))
        _prefill(tr.c.val_ds.source, max(1, workers))
    gen_s = time.perf_counter() - t0
    out = []
    for epoch in (1, 2, 3):
        t0 = time.perf_counter()
        tr.train_epoch(epoch)
        total = time.perf_counter() - t0
        steps = [json.loads(x) for x in (tr.c.run_dir / "events.jsonl").read_text().splitlines()
                 if '"type":"step"' in x and f'"epoch":{epoch},' in x]
        span = steps[-1]["t"] - steps[0]["t"]
        out.append({"epoch": epoch, "images_per_s": (len(steps) - 1) * batch / span,
                    "data_wait": statistics.fmean(s["data_wait"] for s in steps[1:]), "epoch_s": round(total, 2)})
    return {"generate_s": round(gen_s, 1), "epochs": out, "note": "epoch 1 includes first-call costs; read epochs 2-3"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    import torch

    if a.smoke:
        a.size, a.batch, a.steps, a.warmup, a.workers, a.n_train, a.device, a.no_compile = 64, 2, 2, 1, 2, 4, "cpu", True
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_throughput: no CUDA device here (use --smoke to check the script on the CPU)")
    amp, cl = ("bf16", "on") if device.type == "cuda" else ("off", "off")
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-gpu-"))
    res: dict = {"args": vars(a), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "torch": torch.__version__, "bf16": amp == "bf16", "channels_last": cl == "on"}
    try:
        res["model_step"] = {}
        for comp in ((False,) if a.no_compile else (False, True)):
            res["model_step"][f"compile={comp}"] = part_a(device, tmp, size=a.size, batch=a.batch, steps=a.steps,
                                                          warmup=a.warmup, compile_=comp, amp=amp, channels_last=cl,
                                                          workers=a.workers)
            print(json.dumps({f"compile={comp}": res["model_step"][f"compile={comp}"]}), flush=True)
        # as `python -m trainer` runs it (with workers, each worker process generates the synthetic
        # samples it serves, and its cache dies with it at the end of the epoch), then with the
        # samples generated once and cached before the workers fork
        res["trainer_with_data"] = {
            f"prefill={pf}": part_b(device, tmp, size=a.size, batch=a.batch, workers=a.workers, amp=amp,
                                    channels_last=cl, n_train=a.n_train, prefill=pf) for pf in (False, True)}
        print(json.dumps({"trainer_with_data": res["trainer_with_data"]}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(Path(a.out) / ("gpu_throughput-smoke.json" if a.smoke else "gpu_throughput.json"),
               {"machine": machine_info(), **res})


if __name__ == "__main__":
    main()
