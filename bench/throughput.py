"""Item 6 (CPU): the segwatch trainer against a bare PyTorch loop; time spent waiting for data.

    python bench/throughput.py [--rounds 6] [--steps 8] [--workers 0] [--threads 1] [--quick] [--out DIR]

One model (the default LMSA net, width 32, 1.66 M parameters), one optimizer, one data pipeline
(the built-in synthetic faces at 128 px with the configs' augmentation, batch 16, ``--steps``
batches per epoch, ``training.num_workers=--workers``), in one process. Alternating epochs:

- ``segwatch``: ``Trainer.train_epoch`` as ``python -m trainer`` runs it (control polling, LR
  schedule, finite checks, grad clipping, train F meter, a step event per step), with
  ``log_every=1`` so every step's time and data wait are in the record. Throughput is taken
  between the first and the last step event of the epoch (validation and the checkpoint
  after it are reported apart: they are per-epoch, not per-sample costs);
- ``bare``: ``for x, y in loader: opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()``
  over the same loader, timed over the same steps.

Reported: samples/s of each, the per-round ratio segwatch/bare (median, spread), the same per
CPU second of the training thread (``time.thread_time`` at each step: robust to other processes
taking the cores, which the wall-clock ratio is not on a shared box), and the trainer's own
``data_wait`` (fraction of step time spent waiting for the loader).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info, summary, write_json  # noqa: E402


def _build(run_dir: Path, *, image_size: int, batch: int, steps: int, workers: int, width: int):
    import torch

    from trainer.core.config import from_dict
    from trainer.dist import DistContext
    from trainer.build import build
    from trainer.rundir import open_run
    from trainer.train import Trainer

    cfg = from_dict({"name": "throughput", "model": {"width": width},
                     "data": {"image_size": image_size, "synthetic_train": batch * steps, "synthetic_val": batch},
                     "training": {"batch_size": batch, "log_every": 1, "epochs": 10_000, "warmup_epochs": 1,
                                  "num_workers": workers}}, source="bench")
    c = open_run(build(cfg, torch.device("cpu"), DistContext()), run_dir, None, ["bench"])
    return Trainer(c)


def _steps_of_epoch(events_path: Path, epoch: int) -> list[dict]:
    out = []
    for line in events_path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("type") == "step" and e.get("epoch") == epoch:
            out.append(e)
    return out


def segwatch_epoch(tr, epoch: int) -> dict:
    ev = tr.c.events
    cpu_marks: list[float] = []
    emit = ev.emit

    def timed_emit(type_, **fields):  # the CPU clock of this thread at each step event
        if type_ == "step":
            cpu_marks.append(time.thread_time())
        return emit(type_, **fields)

    ev.emit = timed_emit
    t0 = time.perf_counter()
    try:
        tr.train_epoch(epoch)
    finally:
        del ev.emit
    total = time.perf_counter() - t0
    steps = _steps_of_epoch(tr.c.run_dir / "events.jsonl", epoch)
    bs = tr.cfg.training.batch_size
    span = steps[-1]["t"] - steps[0]["t"]
    n = len(steps) - 1
    train_time = span * len(steps) / max(n, 1)
    return {"samples_per_s": n * bs / span, "samples_per_cpu_s": n * bs / (cpu_marks[-1] - cpu_marks[0]),
            "data_wait": statistics.fmean(s["data_wait"] for s in steps[1:]),
            "epoch_s": total, "val_and_checkpoint_s": max(0.0, total - train_time)}


def bare_epoch(tr, epoch: int) -> dict:
    c = tr.c
    model, opt, loss_fn = c.model, c.optimizer, c.loss_fn
    model.train()
    loader = c.train_loader(epoch, 0)
    marks, waits, cpu = [], [], []
    t_wait = time.perf_counter()
    for x, y in loader:
        waits.append(time.perf_counter() - t_wait)
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        marks.append(time.perf_counter())
        cpu.append(time.thread_time())
        t_wait = time.perf_counter()
    n = len(marks) - 1
    span = marks[-1] - marks[0]
    bs = c.cfg.training.batch_size
    return {"samples_per_s": n * bs / span, "samples_per_cpu_s": n * bs / (cpu[-1] - cpu[0]),
            "data_wait": sum(waits[1:]) / span}


def step_parts(tr, reps: int = 6) -> dict:
    """CPU ms (this thread) of each part of one training step on one batch, median of ``reps``:
    where a segwatch step spends more than the bare loop (the mechanism behind the ratio)."""
    import torch

    from trainer.metrics import FScoreMeter

    c = tr.c
    x, y = next(iter(c.train_loader(1, 0)))
    model, opt = c.model, c.optimizer
    parts: dict[str, list[float]] = {k: [] for k in ("forward+loss", "backward", "optimizer", "clip_grad_norm",
                                                      "finite_check", "argmax(1)", "max(1).indices", "meter.update")}
    for r in range(reps + 1):
        t = [time.thread_time()]
        logits = model(x)
        loss, _ = c.loss_fn(logits, y)
        t.append(time.thread_time())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.thread_time())
        g = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t.append(time.thread_time())
        bool(torch.isfinite(loss.detach()).item() and torch.isfinite(g).item())
        t.append(time.thread_time())
        opt.step()
        t.append(time.thread_time())
        logits.detach().argmax(1)
        t.append(time.thread_time())
        pred = logits.detach().max(1).indices
        t.append(time.thread_time())
        FScoreMeter().update(pred, y)
        t.append(time.thread_time())
        if r:  # the first is a warm-up
            d = dict(zip(("forward+loss", "backward", "clip_grad_norm", "finite_check", "optimizer", "argmax(1)",
                          "max(1).indices", "meter.update"), (b - a for a, b in zip(t, t[1:]))))
            for k, v in d.items():
                parts[k].append(v * 1000)
    return {k: round(statistics.median(v), 2) for k, v in parts.items()}


def run(rounds: int = 6, steps: int = 8, workers: int = 0, threads: int = 1, quick: bool = False,
        image_size: int = 128, batch: int = 16, width: int = 32) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    if quick:
        rounds, steps, image_size, batch, width = 1, 3, 32, 2, 8
    tmp = Path(tempfile.mkdtemp(prefix="segwatch-bench-tp-"))
    try:
        tr = _build(tmp / "run", image_size=image_size, batch=batch, steps=steps, workers=workers, width=width)
        epoch = 1
        segwatch_epoch(tr, epoch)  # warm-up: generates (and caches) the synthetic samples, first-call costs
        epoch += 1
        bare_epoch(tr, epoch)
        epoch += 1
        parts = step_parts(tr, 2 if quick else 6)
        seg, bare, ratios, cpu_ratios = [], [], [], []
        for r in range(rounds):
            order = ("segwatch", "bare") if r % 2 == 0 else ("bare", "segwatch")
            got = {}
            for v in order:
                got[v] = segwatch_epoch(tr, epoch) if v == "segwatch" else bare_epoch(tr, epoch)
                epoch += 1
            seg.append(got["segwatch"])
            bare.append(got["bare"])
            ratios.append(got["segwatch"]["samples_per_s"] / got["bare"]["samples_per_s"])
            cpu_ratios.append(got["segwatch"]["samples_per_cpu_s"] / got["bare"]["samples_per_cpu_s"])
        return {
            "setup": {"image_size": image_size, "batch": batch, "steps_per_epoch": steps, "num_workers": workers,
                      "torch_threads": torch.get_num_threads(), "params": tr.c.params, "rounds": rounds},
            "segwatch_samples_per_s": summary(x["samples_per_s"] for x in seg),
            "bare_samples_per_s": summary(x["samples_per_s"] for x in bare),
            "ratio_segwatch_to_bare": summary(ratios),
            "cpu_ratio_segwatch_to_bare": summary(cpu_ratios),
            "segwatch_samples_per_cpu_s": summary(x["samples_per_cpu_s"] for x in seg),
            "bare_samples_per_cpu_s": summary(x["samples_per_cpu_s"] for x in bare),
            "segwatch_data_wait": summary(x["data_wait"] for x in seg),
            "bare_data_wait": summary(x["data_wait"] for x in bare),
            "segwatch_val_and_checkpoint_s": summary(x["val_and_checkpoint_s"] for x in seg),
            "step_parts_cpu_ms": parts,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="training.num_workers (the configs' default is 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    res = run(a.rounds, a.steps, a.workers, a.threads, a.quick)
    write_json(Path(a.out) / f"throughput-w{a.workers}.json", {"machine": machine_info(), **res})
    r, w = res["ratio_segwatch_to_bare"], res["segwatch_data_wait"]
    print(f"workers={a.workers}: segwatch {res['segwatch_samples_per_s']['median']:.1f} samples/s, bare "
          f"{res['bare_samples_per_s']['median']:.1f}; ratio median {r['median']:.3f} (p5 {r['p5']:.3f}, p95 {r['p95']:.3f}); "
          f"per CPU second ratio {res['cpu_ratio_segwatch_to_bare']['median']:.3f}; "
          f"data wait {w['median'] * 100:.1f}% (bare loop {res['bare_data_wait']['median'] * 100:.1f}%)")


if __name__ == "__main__":
    main()
