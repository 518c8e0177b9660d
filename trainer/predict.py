"""``python -m trainer.predict --model RUN_OR_PT [--model ...] --images DIR --out DIR [--tta flip]``.

Class-id masks for every image of a folder, from one model (its best checkpoint) or the softmax
average of several (an ensemble). Each model sees each image as the trainer saw its validation
images: resized to the model's ``data.image_size`` (Pillow BILINEAR), normalised with
IMAGE_MEAN/STD, in batches of its ``training.batch_size``, with the trainer's AMP and
channels-last choices. Its logits are upsampled (bilinear) to the image's own size; ``--tta
flip`` adds the mirrored image, whose output is mirrored back with left/right classes swapped
(FLIP_PERM). One model without TTA: argmax of the logits; otherwise argmax of the mean softmax.

Writes ``OUT/<stem>.png`` (mode "L", pixel = class id, the image's original size) and
``OUT/predictions.json`` (models, images, what could not be read). Images that cannot be read
and files that are not images are reported by name. Exit 0 done, 1 some images could not be
read (the others are written), 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: Path) -> tuple[list[Path], list[str]]:
    """(image files sorted by name, names of everything else in the folder)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    images, other = [], []
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS:
            images.append(Path(e.path))
        else:
            other.append(e.name + ("/" if e.is_dir() else ""))
    return images, other


def read_rgb(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.array(im.convert("RGB"))


def _amp_channels_last(cfg, device) -> tuple[bool, bool]:
    t = cfg.training  # the same rules as trainer.build.build
    amp = device.type == "cuda" and t.amp in ("auto", "bf16") or (t.amp == "bf16")
    cl = t.channels_last == "on" or (t.channels_last == "auto" and device.type == "cuda")
    return amp, cl


def model_outputs(lm, arrays: list, device, tta: bool, batch_size: int | None = None):
    """Per image: the model's logits at the image's own size, 19 x H x W (float32, CPU);
    with ``tta`` a pair (logits, mirrored-back logits of the flipped image)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from trainer.data import FLIP_PERM, to_tensor

    s = lm.image_size
    amp, cl = _amp_channels_last(lm.config, device)
    perm = torch.tensor(FLIP_PERM, dtype=torch.long)
    bs = batch_size or lm.config.training.batch_size
    if cl:
        lm.model.to(memory_format=torch.channels_last)
    out = []
    for b in range(0, len(arrays), bs):
        chunk = arrays[b:b + bs]
        xs = []
        for a in chunk:
            if s is not None and a.shape[:2] != (s, s):  # None: each image at its own size
                a = np.array(Image.fromarray(a).resize((s, s), Image.BILINEAR))
            xs.append(to_tensor(a))
        groups = [xs] if all(x.shape == xs[0].shape for x in xs) else [[x] for x in xs]
        logits, flipped = [], []
        for g in groups:
            x = torch.stack(g).to(device)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits += list(lm.model(x).float().split(1))
                flipped += list(lm.model(torch.flip(x, dims=[3])).float().split(1)) if tta else []
        for k, a in enumerate(chunk):
            size = a.shape[:2]
            one = [logits[k]] + ([torch.flip(flipped[k], dims=[3])[:, perm]] if tta else [])
            one = [F.interpolate(t, size=size, mode="bilinear", align_corners=False) if tuple(t.shape[2:]) != size
                   else t for t in one]
            out.append([t[0].cpu() for t in one])
    return out


def predict(models: list, images: list[Path], out: Path, device, tta: bool, log=print) -> tuple[list[dict], list[dict]]:
    """Write one mask per readable image; returns (written, unreadable)."""
    import numpy as np
    from PIL import Image

    written, unreadable = [], []
    step = max(m.config.training.batch_size for m in models)  # one model: exactly the trainer's val batches
    t0 = time.perf_counter()
    for b in range(0, len(images), step):
        arrays, paths = [], []
        for p in images[b:b + step]:
            try:
                arrays.append(read_rgb(p))
                paths.append(p)
            except Exception as e:  # noqa: BLE001 - reported by name, never skipped silently
                unreadable.append({"file": p.name, "error": f"{type(e).__name__}: {e}"})
                log(f"cannot read {p.name}: {type(e).__name__}: {e}", err=True)
        if not arrays:
            continue
        n_out = len(models) * (2 if tta else 1)
        acc: list = [None] * len(arrays)  # logits (one output) or the sum of softmaxes, per image
        for m in models:  # one model's outputs alive at a time, folded into acc
            for k, outs in enumerate(model_outputs(m, arrays, device, tta)):
                for t in outs:
                    t = t if n_out == 1 else t.softmax(0)
                    acc[k] = t if acc[k] is None else acc[k].add_(t)
        for k, (p, a) in enumerate(zip(paths, arrays)):
            pred = acc[k].argmax(0)  # argmax of the sum = argmax of the mean
            mask = pred.numpy().astype(np.uint8)
            Image.fromarray(mask, "L").save(out / f"{p.stem}.png")
            written.append({"stem": p.stem, "file": p.name, "size": [int(a.shape[1]), int(a.shape[0])]})
        log(f"{len(written)}/{len(images)} images ({time.perf_counter() - t0:.1f}s)")
    return written, unreadable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="RUN_OR_PT",
                   help="a run directory (its checkpoints/best.pt and config.yaml) or a checkpoint file; repeat for an ensemble")
    p.add_argument("--images", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tta", choices=("none", "flip"), default="none")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--config", default=None, metavar="FILE", help="config of a checkpoint file that has none (or a run's, to override)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = p.parse_args(argv)

    def log(msg: str, err: bool = False) -> None:
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)

    from trainer.core.config import ConfigError

    try:
        images, other = list_images(Path(args.images))
        if not images:
            raise ConfigError(f"--images {args.images}: no image files (allowed: {', '.join(IMAGE_EXTS)})"
                              + (f"; it holds {', '.join(other[:5])}" if other else ""))
        stems: dict[str, str] = {}
        for im in images:
            if im.stem in stems:
                raise ConfigError(f"--images {args.images}: {stems[im.stem]} and {im.name} share the stem "
                                  f"{im.stem!r}: both masks would be {im.stem}.png")
            stems[im.stem] = im.name
        from trainer.inference import load_model
        from trainer.build import resolve_device

        device = resolve_device(args.device)
        models = [load_model(m, checkpoint=args.checkpoint, config=args.config, device=device) for m in args.model]
    except (ConfigError, FileNotFoundError) as e:
        log(f"segwatch predict: error: {e}", err=True)
        return 2
    if other:
        log(f"not images (by extension), left alone: {', '.join(other)}", err=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for m in models:
        d = m.describe()
        log(f"model {d['name']}: {d['checkpoint']} (epoch {d['epoch']}, best val F {d['best_val_f']}), "
            f"{d['attention']}/w{d['width']}, at " + (f"{d['image_size']}px" if d['image_size'] else "each image's own size"))
    log(f"{len(images)} images, {len(models)} model(s){', TTA flip' if args.tta == 'flip' else ''}, device {device}")
    written, unreadable = predict(models, images, out, device, args.tta == "flip", log=log)
    manifest = {"v": 1, "models": [m.describe() for m in models], "tta": args.tta, "device": str(device),
                "images_dir": str(Path(args.images).resolve()), "images": written, "unreadable": unreadable,
                "not_images": other, "t": time.time()}
    tmp = out / ".predictions.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "predictions.json")
    log(f"wrote {len(written)} masks to {out}" + (f"; {len(unreadable)} images could not be read: "
                                                    + ", ".join(u["file"] for u in unreadable) if unreadable else ""))
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
