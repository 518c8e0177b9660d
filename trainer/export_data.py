"""``python -m trainer.export_data SOURCE --split val --out DIR``: a split as PNG files.

SOURCE is a config file (with ``--set`` overrides) or a run directory (its config.yaml). Writes
``DIR/images/<stem>.png`` (RGB) and ``DIR/masks/<stem>.png`` (mode "L", pixel = class id)
as the trainer scores the split: never augmented, at the data's own size (the synthetic data is
generated at ``data.image_size``). With the
built-in synthetic data this is the only way to look at the images, and it lets ``segwatch
predict`` + ``segwatch evaluate`` reproduce the val F a run reported. Stems: the dataset's own
(mini challenge) or ``<split>_<index>`` (synthetic, CelebAMask-HQ), in the trainer's order.
Exit 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.core.config import ConfigError, from_dict, load_config, read_yaml
from trainer.data.errors import DataError


def config_of(source: str, overrides: list[str]):
    p = Path(source)
    if p.is_dir():
        if not (p / "config.yaml").is_file():
            raise ConfigError(f"{source}: a folder without config.yaml (expected a run directory or a config file)")
        if overrides:
            raise ConfigError(f"{source}: --set applies to config files, not to a run's recorded config")
        return from_dict(read_yaml(p / "config.yaml"), source=str(p / "config.yaml"))
    return load_config(p, overrides)


def stem_of(source, split: str, i: int, n: int) -> str:
    inner = getattr(source, "source", source)  # Resized wraps the folder dataset
    samples = getattr(inner, "samples", None)
    if isinstance(samples, list) and i < len(samples) and isinstance(samples[i], tuple) and isinstance(samples[i][0], str):
        return samples[i][0]
    return f"{split}_{i:0{max(4, len(str(n - 1)))}d}"


def export(cfg, split: str, out: Path, limit: int | None = None) -> int:
    import numpy as np
    from PIL import Image

    from trainer.data import build_datasets

    d = cfg.data
    train, val, desc = build_datasets(root=d.root, format=d.format, image_size=d.image_size,
                                   synthetic_train=d.synthetic_train, synthetic_val=d.synthetic_val,
                                   seed=cfg.seed, augment=None)
    d.image_size = desc["image_size"]
    src = (val if split == "val" else train).source
    src = getattr(src, "source", src)  # real data: the files' own size (Resized wraps the folder dataset)
    n = len(src) if limit is None else min(limit, len(src))
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = src.get_raw(i)
        stem = stem_of(src, split, i, len(src))
        Image.fromarray(np.ascontiguousarray(image), "RGB").save(out / "images" / f"{stem}.png")
        Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8)), "L").save(out / "masks" / f"{stem}.png")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.export_data", description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="CONFIG_OR_RUN")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N samples")
    args = p.parse_args(argv)
    try:
        cfg = config_of(args.source, args.overrides)
        n = export(cfg, args.split, Path(args.out), args.limit)
    except (ConfigError, DataError) as e:
        print(f"segwatch export: error: {e}", file=sys.stderr)
        return 2
    kind = "synthetic" if cfg.data.root is None else cfg.data.root
    print(f"wrote {n} {args.split} samples ({kind}, {cfg.data.image_size}px) to {args.out}/images and {args.out}/masks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
