"""Issue 12: CPU seconds of one epoch of each shipped config on the built-in data, side by side.

    python bench/epoch_cost.py [--rounds 3] [--threads 1] [--out bench/out/epoch_cost.json]

A loaded shared box cannot give quiet-box wall times, so this measures CPU time (this process,
``time.process_time``) of the trainer's own step (``Trainer.train_step``: forward, loss, backward,
clip, AdamW) on real batches of the default synthetic data, for every shipped config, with the
model head the default data gets (``model.output_stride: auto`` -> 2 at 128 px) and with the old
stride-4 head, interleaved in rotating order; and of one validation pass. An epoch's CPU is
``steps_per_epoch * step + validation``. Data loading is excluded (it runs in a loader worker by
default now: ``training.num_workers: auto``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("baseline", "lmsa", "lmsa_focal", "lmsa_aggressive")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "epoch_cost.json"))
    a = p.parse_args()
    import torch

    from bench.common import machine_info, write_json
    from trainer.core.config import load_config
    from trainer.dist import DistContext
    from trainer.build import Parts, build
    from trainer.train import Trainer

    torch.set_num_threads(a.threads)
    variants = {}
    for name in CONFIGS:
        for stride in ("auto", 4):
            cfg = load_config(ROOT / "configs" / f"{name}.yaml", [f"model.output_stride={stride}", "training.num_workers=0"])
            c: Parts = build(cfg, torch.device("cpu"), DistContext())
            c.steering = type("S", (), {"live": {"lr": 1e-4, "grad_clip": cfg.training.grad_clip, "gamma": cfg.loss.focal_gamma}})()
            c.events = None
            tr = Trainer.__new__(Trainer)
            tr.c, tr.cfg, tr.live, tr.dist, tr.rank_log, tr.step, tr.skipped = c, cfg, c.steering.live, c.dist, None, 0, 0
            images, masks = next(iter(c.train_loader(1, 0)))
            vimages, vmasks = next(iter(c.val_loader()))
            variants[(name, str(stride))] = (c, tr, images, masks.long(), vimages, vmasks.long())
    step_cpu = {k: [] for k in variants}
    val_cpu = {k: [] for k in variants}
    keys = list(variants)
    for r in range(a.rounds + 1):  # round 0 warms up
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            c, tr, images, masks, vimages, vmasks = variants[k]
            t0 = time.process_time()
            tr.train_step(images, masks, 1e-4)
            t1 = time.process_time()
            with torch.no_grad():
                c.model.eval()
                c.loss_fn(c.model(vimages), vmasks)
                c.model.train()
            t2 = time.process_time()
            if r:
                step_cpu[k].append(t1 - t0)
                val_cpu[k].append((t2 - t1) / len(vimages))
    rows = []
    for (name, stride), (c, *_rest) in variants.items():
        step = statistics.median(step_cpu[(name, stride)])
        val_img = statistics.median(val_cpu[(name, stride)])
        n_val = len(c.val_ds)
        rows.append({"config": name, "output_stride": c.data_desc["output_stride"], "batch_size": c.cfg.training.batch_size,
                     "steps_per_epoch": c.steps_per_epoch, "step_cpu_s": round(step, 4),
                     "val_cpu_s": round(val_img * n_val, 2), "epoch_cpu_s": round(c.steps_per_epoch * step + val_img * n_val, 2),
                     "train_images": len(c.train_ds), "image_size": c.data_desc["image_size"]})
        print(json.dumps(rows[-1]))
    write_json(Path(a.out), {"machine": machine_info(), "threads": a.threads, "rounds": a.rounds, "rows": rows})


if __name__ == "__main__":
    main()
