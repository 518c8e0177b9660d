"""Issue 12: what holds the first epochs back on the built-in data? (the calibration probes)

    python bench/learning_speed.py VARIANT STEPS EVERY [KEY=VALUE ...] [V:lr=X] [V:ls=X] [V:lscale=X]
                                   [V:prior=1] [V:easy=1] [V:aug=0] [V:warm=N]

Trains ``configs/lmsa_focal.yaml`` (its loss, model, dropout and weight decay; ``KEY=VALUE`` are
config overrides such as ``data.image_size=128``) in one process on one torch thread for STEPS
optimizer steps at a CONSTANT learning rate (the plan's 5e-4 unless ``V:lr``; ``V:warm=N``: a
linear warmup over N steps), and prints the organisers' val F on the validation split every
EVERY steps as JSON lines (``nz``: classes with F > 0.05). What the variants change:

- ``V:lr=5e-3``: ten times the plan's LR;
- ``V:ls=1.0``: every block's layer scale set to 1 at the start (0.01 by default);
- ``V:lscale=K``: the classifier's logits multiplied by K (what ``model.logit_scale`` does);
- ``V:prior=1``: the classifier's bias set to the log class shares of the training masks;
- ``V:easy=1``: every image repainted with one fixed colour per class plus noise (a trivially
  separable task: tells whether the data or the optimisation is the brake);
- ``V:aug=0``: no augmentation.

Not a test and not the trainer: a probe of the optimisation alone (no checkpoints, no events).
The trainer's own curves are in bench/quality.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import trainer.data.synthetic as synthetic  # noqa: E402
from trainer.core.classes import NUM_CLASSES  # noqa: E402
from trainer.core.config import load_config  # noqa: E402
from trainer.data.augment import Augment  # noqa: E402
from trainer.data.dataset import build_datasets  # noqa: E402
from trainer.losses import SegLoss  # noqa: E402
from trainer.metrics import FScoreMeter  # noqa: E402
from trainer.model import DEFAULT_WIDTH, build_model, logit_scale_for, output_stride_for  # noqa: E402


def easy_faces(draw):
    """Wrap ``generate_face``: the same masks, images painted one fixed colour per class."""
    palette = np.random.default_rng(7).uniform(0, 255, (NUM_CLASSES, 3)).astype(np.float32)

    def generate(rng, size):
        _, mask = draw(rng, size)
        img = palette[mask] + rng.normal(0, 8, (size, size, 3)).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8), mask
    return generate


def main(argv: list[str]) -> None:
    variant, steps, every = argv[0], int(argv[1]), int(argv[2])
    sets = [s for s in argv[3:] if not s.startswith("V:")]
    opts = dict(s[2:].split("=", 1) for s in argv[3:] if s.startswith("V:"))
    torch.set_num_threads(1)
    if opts.get("easy") == "1":
        synthetic.generate_face = easy_faces(synthetic.generate_face)
    cfg = load_config(ROOT / "configs" / "lmsa_focal.yaml", sets)
    torch.manual_seed(cfg.seed)
    a = cfg.augmentation
    augment = None if opts.get("aug") == "0" else Augment(
        rotation=a.rotation, scale_range=tuple(a.scale_range), hflip=a.hflip, color_jitter=a.color_jitter)
    d = cfg.data
    train_ds, val_ds, desc = build_datasets(root=None, image_size=d.image_size, synthetic_train=d.synthetic_train,
                                            synthetic_val=d.synthetic_val, seed=cfg.seed, augment=augment)
    for ds in (train_ds, val_ds):
        ds.source.prefill()
    size = desc["image_size"]
    model = build_model(attention=cfg.model.attention, width=cfg.model.width or DEFAULT_WIDTH,
                        dropout=cfg.training.dropout, output_stride=output_stride_for(cfg.model.output_stride, size),
                        logit_scale=float(opts.get("lscale", logit_scale_for(cfg.model.logit_scale, size))))
    if "ls" in opts:
        for m in model.modules():
            if isinstance(getattr(m, "scale", None), torch.nn.Parameter):
                m.scale.data.fill_(float(opts["ls"]))
    if opts.get("prior") == "1":
        shares = np.array(synthetic.measure_class_shares(train_ds.source, 200)["shares"]) + 1e-4
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(np.log(shares), dtype=torch.float32))
    lr = float(opts.get("lr", cfg.training.learning_rate))
    warm = int(opts.get("warm", 0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.training.weight_decay)
    loss_fn = SegLoss(use_focal=cfg.loss.use_focal, gamma=cfg.loss.focal_gamma, alpha=cfg.loss.focal_alpha,
                      dice_weight=cfg.loss.dice_weight, ignore_index=cfg.loss.ignore_index)
    train = DataLoader(train_ds, batch_size=cfg.training.batch_size, shuffle=True, drop_last=True)
    val = DataLoader(val_ds, batch_size=20)

    def evaluate() -> dict:
        model.eval()
        meter = FScoreMeter()
        with torch.no_grad():
            for x, y in val:
                meter.update(model(x).argmax(1), y)
        model.train()
        return meter.compute()

    step, t0 = 0, time.process_time()
    while step < steps:
        for x, y in train:
            step += 1
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, step / warm) if warm else lr
            loss, _ = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
            opt.step()
            if step % every == 0:
                r = evaluate()
                print(json.dumps({"variant": variant, "step": step, "val_f": round(r["f"], 4),
                                  "loss": round(loss.item(), 3), "cpu_s": round(time.process_time() - t0),
                                  "classes_f_above_0.05": sum(1 for p in r["per_class"] if p and p > 0.05)}), flush=True)
            if step >= steps:
                break


if __name__ == "__main__":
    main(sys.argv[1:])
