"""Scoring PNG masks against ground truth with the organisers' F-measure (`segwatch evaluate`).

numpy + Pillow, no torch: the F-measure is trainer.core.fmeasure's, the one the trainer reports.
Predictions and ground truth are matched by file stem; missing and extra files, unreadable or
multi-channel masks and size mismatches are each reported by name, never skipped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Scored:
    result: dict | None  # trainer.core.fmeasure.f_measure_numpy's dict, over the scored pairs
    scored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ground truth without a prediction
    extra: list[str] = field(default_factory=list)  # predictions without ground truth
    unreadable: list[str] = field(default_factory=list)  # "file: why"
    size_mismatch: list[str] = field(default_factory=list)
    not_png: list[str] = field(default_factory=list)  # other files, in either folder

    @property
    def complete(self) -> bool:
        return not (self.missing or self.extra or self.unreadable or self.size_mismatch)


def _pngs(folder: Path, label: str, not_png: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{label} {folder}: no such folder")
    out = {}
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        if e.is_file() and e.name.lower().endswith(".png"):
            out[os.path.splitext(e.name)[0]] = Path(e.path)
        elif e.name != "predictions.json":  # the predictor's manifest is expected next to the masks
            not_png.append(f"{label} {e.name}")
    return out


def read_mask(path: Path):
    """A single-channel class-id mask as uint8 HxW; ValueError saying why it cannot be one."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P"):
                raise ValueError(f"mode {im.mode}: a class-id mask must be single-channel (mode L or P); "
                                 "an RGB colour mask is corrupted by the scorer's conversion")
            return np.array(im)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable: reported by name
        raise ValueError(f"unreadable: {type(e).__name__}: {e}") from None


def score(pred_dir: Path, gt_dir: Path) -> Scored:
    from trainer.core.classes import IGNORE_INDEX, NUM_CLASSES
    from trainer.core.fmeasure import f_measure_numpy

    s = Scored(result=None)
    preds = _pngs(pred_dir, "--pred", s.not_png)
    gts = _pngs(gt_dir, "--gt", s.not_png)
    s.missing = sorted(set(gts) - set(preds))
    s.extra = sorted(set(preds) - set(gts))
    P, G = [], []
    for stem in sorted(set(gts) & set(preds)):
        try:
            g = read_mask(gts[stem])
        except ValueError as e:
            s.unreadable.append(f"--gt {gts[stem].name}: {e}")
            continue
        try:
            p = read_mask(preds[stem])
        except ValueError as e:
            s.unreadable.append(f"--pred {preds[stem].name}: {e}")
            continue
        if p.shape != g.shape:
            s.size_mismatch.append(f"{stem}: prediction {p.shape[1]}x{p.shape[0]}, ground truth {g.shape[1]}x{g.shape[0]}")
            continue
        gbad = g[(g >= NUM_CLASSES) & (g != IGNORE_INDEX)]
        if gbad.size:
            s.unreadable.append(f"--gt {gts[stem].name}: values {sorted(set(gbad.tolist()))[:5]} are not class ids "
                                f"(0..{NUM_CLASSES - 1}, or {IGNORE_INDEX} = ignored)")
            continue
        bad = p[p >= NUM_CLASSES]
        if bad.size:
            s.unreadable.append(f"--pred {preds[stem].name}: values {sorted(set(bad.tolist()))[:5]} are not class ids "
                                f"(0..{NUM_CLASSES - 1})")
            continue
        P.append(p)
        G.append(g)
        s.scored.append(stem)
    if P:
        s.result = f_measure_numpy(P, G)
    return s
