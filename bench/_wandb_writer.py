"""Load generator for the `wandb leet` side of bench/tui_load.py: one offline W&B run logging the
same numbers as the fake trainer (a step record 20 times a second, an epoch record every
``steps_per_epoch`` steps with val/train loss and F and 19 per-class F).

    python bench/_wandb_writer.py DIR NAME [--rate 20] [--steps-per-epoch 200]
"""

from __future__ import annotations

import argparse
import math
import os
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("name")
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    a = p.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = wandb.init(project="segwatch-bench", name=a.name, mode="offline", dir=a.dir,
                     settings=wandb.Settings(console="off"))
    period = 1.0 / a.rate
    step, nxt = 0, time.monotonic()
    try:
        while True:
            step += 1
            e = (step - 1) // a.steps_per_epoch + 1
            rec = {"loss": 1.6 * math.exp(-e / 8) + 0.2, "lr": 3e-4, "gamma": 2.5, "samples_per_s": 123.4,
                   "data_wait": 0.05}
            if step % a.steps_per_epoch == 0:
                k = 1 - math.exp(-e / 6)
                rec.update({"epoch": e, "val_f": 0.78 * k, "train_f": 0.8 * k, "val_loss": 1.65 * math.exp(-e / 8),
                            "train_loss": 1.6 * math.exp(-e / 8), "pooled_f": 0.7 * k,
                            **{f"per_class_f/{c}": 0.5 * k for c in range(19)}})
            run.log(rec, step=step)
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        run.finish()


if __name__ == "__main__":
    main()
