"""Stand-ins of the real data in its exact formats (tests only): JPEG images, P-mode palette PNG
masks whose pixel value is the class id (the mini-challenge layout), and the original
CelebAMask-HQ layout with one binary PNG per part. Tiny, deterministic, face-like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: a CelebAMask-HQ-like colour table (only its existence matters: masks are read as indices)
PALETTE = [v for c in range(256) for v in ((c * 37) % 256, (c * 91) % 256, (c * 53) % 256)]
PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
         "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")


def face_mask(size: int, k: int) -> np.ndarray:
    """A face-like class-id mask, shifted a little per sample ``k``; fine parts a few px wide."""
    s, m = size, np.zeros((size, size), np.uint8)
    d = k % 4 - 2
    m[s // 8:s * 7 // 8, s // 5 + d:s * 4 // 5 + d] = 1          # skin
    m[: s // 6, :] = 13                                          # hair
    m[s * 5 // 6:, s // 3:s * 2 // 3] = 17                       # neck
    m[s * 7 // 8:, :] = 18                                       # cloth
    m[s * 3 // 8:s * 3 // 8 + 3, s * 5 // 8 + d:s * 5 // 8 + d + 5] = 4   # l_eye (image right)
    m[s * 3 // 8:s * 3 // 8 + 3, s * 2 // 8 + d:s * 2 // 8 + d + 5] = 5   # r_eye
    m[s // 2:s // 2 + 6, s // 2 - 2 + d:s // 2 + 2 + d] = 2      # nose
    m[s * 5 // 8 + 2:s * 5 // 8 + 4, s * 3 // 8 + d:s * 5 // 8 + d] = 11  # u_lip
    m[s * 5 // 8 + 4:s * 5 // 8 + 6, s * 3 // 8 + d:s * 5 // 8 + d] = 12  # l_lip
    return m


def face_image(mask: np.ndarray, k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    colours = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    colours[np.arange(19)] = (np.arange(19)[:, None] * np.array([13, 29, 47]) + 40) % 256
    img = colours[mask].astype(np.int16) + rng.integers(-25, 26, mask.shape + (3,), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_mini_pair(root: Path, split: str, stem: str, mask: np.ndarray, k: int = 0) -> None:
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(face_image(mask, k)).save(root / split / "images" / f"{stem}.jpg", quality=90)
    m = Image.fromarray(mask, "L").convert("P")
    m.putpalette(PALETTE)
    m.save(root / split / "masks" / f"{stem}.png")


def make_mini(root: Path, n_train: int = 6, n_val: int = 4, size: int = 64) -> Path:
    """``root/{train,val}/{images/<stem>.jpg, masks/<stem>.png}`` (P-mode palette masks)."""
    for split, n, off in (("train", n_train, 0), ("val", n_val, 1000)):
        for i in range(n):
            write_mini_pair(root, split, f"{split}{i:03d}", face_mask(size, i + off), i + off)
    return root


def make_celeb(root: Path, keys=range(10), size: int = 64, img_size: int = 128) -> Path:
    """``root/CelebA-HQ-img/<k>.jpg`` (img_size) + ``root/CelebAMask-HQ-mask-anno/<k//2000>/<%05d>_<part>.png``."""
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    for k in keys:
        mask = face_mask(size, k)
        img = Image.fromarray(face_image(mask, k)).resize((img_size, img_size), Image.BILINEAR)
        img.save(root / "CelebA-HQ-img" / f"{k}.jpg", quality=90)
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for cls in sorted(set(np.unique(mask).tolist()) - {0}):
            Image.fromarray(((mask == cls) * 255).astype(np.uint8), "L").save(folder / f"{k:05d}_{PARTS[cls - 1]}.png")
    return root


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
