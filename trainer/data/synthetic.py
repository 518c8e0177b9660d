"""Procedural synthetic face-parsing data: the built-in default when no data
root is configured.

Each sample is a stylised face drawn with vectorised numpy on a coordinate
grid: shapes are defined in a head frame (rolled, scaled, shifted; yaw shifts
and foreshortens the features) and painted into the mask in class-id order,
exactly as the official CelebAMask-HQ merge does (later ids over earlier ones:
hair over skin and ears, hat over hair, neck and cloth over the necklace...).
Colours deliberately overlap between neighbours (lips near skin tone, brows
near hair colour, nose = skin, ears = skin, background sometimes near hair),
plus texture, lighting, noise, blur, glasses and occluders (a hand or object
over the lower face, labelled background as in the real annotation), so a
model has to use shape and context and scores climb over tens of epochs.

``l_*`` is the SUBJECT's left, drawn on the IMAGE's right (larger x).

Deterministic per (seed, split, index): every sample has its own
``np.random.Generator`` seeded from those three values.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np
from PIL import Image, ImageFilter

from trainer.core.classes import NUM_CLASSES, REAL_SHARES, SMALL_CLASSES

GENERATOR_VERSION = 4  # bump when the drawing changes (invalidates freq caches)
TARGET_SHARES = REAL_SHARES

_HAIR_COLOURS = np.array([
    (22, 18, 16), (45, 32, 25), (75, 50, 35), (110, 78, 52), (150, 110, 70),
    (200, 165, 110), (225, 200, 150), (140, 60, 35), (150, 150, 150), (60, 55, 55),
], np.float32)
_SKIN_LIGHT = np.array((238, 205, 180), np.float32)
_SKIN_DARK = np.array((90, 58, 42), np.float32)
_LIP_RED = np.array((185, 65, 80), np.float32)


@functools.lru_cache(maxsize=8)
def _grid(size: int):
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return c[None, :], c[:, None]


def _frame(X, Y, cx, cy, angle, unit):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = X - cx, Y - cy
    return (c * dx + s * dy) / unit, (c * dy - s * dx) / unit


def _r2(u, v, cu, cv, a, b, ang=0.0):
    """Squared elliptic radius of (u, v) around (cu, cv); < 1 is inside."""
    du, dv = u - cu, v - cv
    if ang:
        c, s = math.cos(ang), math.sin(ang)
        du, dv = c * du + s * dv, c * dv - s * du
    return (du / a) ** 2 + (dv / b) ** 2


def _lowfreq(rng, size, cells):
    """Smooth noise field in roughly [-1, 1] (bicubic upsampled random grid)."""
    g = rng.standard_normal((cells, cells), dtype=np.float32)
    im = Image.fromarray(g, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32)


def generate_face(rng: np.random.Generator, size: int):
    """Draw one (image uint8 HxWx3, mask uint8 HxW) sample."""
    U = rng.uniform
    X, Y = _grid(size)
    S = size

    # ---------------------------------------------------------------- pose
    F = 0.57 * U(0.88, 1.12)                      # face half-width, image units
    cx, cy = U(-0.09, 0.09), U(-0.08, 0.06)
    roll = math.radians(float(np.clip(rng.normal(0, 8), -22, 22)))
    yaw = U(-0.35, 0.35)
    u, v = _frame(X, Y, cx, cy, roll, F)                 # head frame
    bu, bv = _frame(X, Y, cx, cy, 0.25 * roll, F)         # body frame

    fa, fb = U(0.95, 1.09), U(1.28, 1.42)                # face half axes
    jaw = U(0.18, 0.32)
    uf = u - 0.08 * yaw
    vn = np.clip(v / fb, 0.0, 1.0)
    face_r = np.abs(uf / (fa * (1.0 - jaw * vn * vn))) ** 2.3 + np.abs(v / fb) ** 2.3
    face = face_r < 1.0

    fs = 0.35 * yaw                                      # feature shift
    k = {s: float(np.clip(1.0 - 0.9 * yaw * s, 0.5, 1.3)) for s in (1, -1)}
    regions = {}

    # ------------------------------------------------------------ features
    ey, sep = U(-0.16, -0.06), U(0.37, 0.44)
    ea, eb_ratio = U(0.125, 0.16), U(0.34, 0.52)
    eye_c = {s: (fs + s * sep * k[s], ey + U(-0.015, 0.015)) for s in (1, -1)}
    eye_r = {}
    for s, cls in ((1, 4), (-1, 5)):
        a = ea * k[s]
        eye_r[s] = _r2(u, v, *eye_c[s], a, ea * eb_ratio, s * U(-0.12, 0.12))
        regions[cls] = eye_r[s] < 1.0

    by, ba, bb, bend = ey - U(0.21, 0.28), U(0.23, 0.29), U(0.055, 0.08), U(0.8, 2.0)
    for s, cls in ((1, 6), (-1, 7)):
        du = (u - (fs + s * (sep + 0.03) * k[s])) / k[s]
        dv = v - by - bend * du * du + s * U(-0.08, 0.08) * du
        regions[cls] = (du / ba) ** 2 + (dv / bb) ** 2 < 1.0

    nt, nb = ey - U(0.0, 0.06), U(0.40, 0.50)
    t = np.clip((v - nt) / (nb - nt), 0.0, 1.0)
    nose_u = fs + 0.18 * yaw * t
    nose_w = 0.12 + U(0.13, 0.18) * t ** 1.3
    nose = (v > nt) & (v < nb) & (np.abs(u - nose_u) < nose_w)
    nostril_r = _r2(u, v, fs + 0.18 * yaw, nb - 0.05, U(0.24, 0.30), U(0.09, 0.13))
    regions[2] = nose | (nostril_r < 1.0)

    mv, la = U(0.74, 0.84), U(0.28, 0.34)
    opening = U(0.06, 0.12) if U() < 0.8 else (U(0.14, 0.24) if U() < 0.6 else 0.0)
    mu = u - fs
    lw = np.clip(1.0 - (mu / la) ** 2, 0.0, None)           # 0 outside the lips
    half_open = 0.5 * opening * np.sqrt(np.clip(1.0 - (mu / (0.85 * la)) ** 2, 0, None))
    regions[10] = np.abs(v - mv) < half_open
    regions[11] = (v < mv - half_open) & (v > mv - U(0.1, 0.135) * lw - half_open) & (lw > 0)
    regions[12] = (v > mv + half_open) & (v < mv + U(0.17, 0.21) * lw + half_open) & (lw > 0)

    ear_v, ea_, eb_ = U(-0.02, 0.10), U(0.085, 0.11), U(0.19, 0.23)
    ear_r = {}
    for s, cls in ((1, 8), (-1, 9)):
        w = float(np.clip(1.0 - 2.0 * yaw * s, 0.3, 1.5))
        cu = 0.08 * yaw + s * (fa + 0.02 - 0.12 * (1 - w))
        ear_r[s] = _r2(u, v, cu, ear_v, ea_ * w, eb_, s * 0.15)
        regions[cls] = ear_r[s] < 1.0

    # ------------------------------------------------------------- glasses
    glasses = U() < 0.11
    if glasses:
        ga, gb = U(0.27, 0.33), U(0.19, 0.25)
        lens = [_r2(u, v, eye_c[s][0], ey + 0.02, ga * k[s], gb) for s in (1, -1)]
        bridge = (np.abs(v - ey + 0.03) < 0.03) & (np.abs(u - fs) < sep * 0.6)
        glass_r = np.minimum(lens[0], lens[1])
        regions[3] = (glass_r < 1.0) | bridge

    # ---------------------------------------------------------------- hair
    vol = U(0.15, 0.7)
    ha, hb, hv = fa * (1.0 + vol), fb * (1.0 + 0.5 * vol), -0.30 - U(0.0, 0.2)
    hair = _r2(u, v, 0.05 * yaw, hv, ha, hb) < 1.0
    if U() < 0.6:                                           # long hair
        hl = U(0.9, 2.6)
        hair |= (np.abs(u - 0.05 * yaw) < ha * U(0.85, 1.0)) & (v > hv) & (
            v < hl - 0.35 * (u / ha) ** 2)
    bangs = U() < 0.12
    h0 = U(-0.62, -0.40) if bangs else U(-1.05, -0.70)
    hairline = h0 + U(0.1, 0.4) * uf * uf + U(-0.15, 0.15) * uf
    hair &= ~(face & (v > hairline))
    if U() < 0.9:                                           # ears left uncovered
        hair &= ~((ear_r[1] < 1.5) | (ear_r[-1] < 1.5))
    regions[13] = hair
    regions[1] = face

    if U() < 0.07:                                          # hat
        brim = -U(0.75, 1.0) + U(-0.15, 0.15) * u
        regions[14] = (_r2(u, v, 0.0, -1.3, fa * 1.45, 1.2) < 1.0) & (v < brim)

    if U() < 0.4:                                           # earrings
        ring = np.zeros_like(face)
        for s in (1, -1):
            if U() < 0.85:
                cu = 0.08 * yaw + s * (fa + 0.02)
                ring |= _r2(u, v, cu, ear_v + eb_ + 0.06, U(0.06, 0.1), U(0.09, 0.18)) < 1.0
        regions[15] = ring

    # ---------------------------------------------------------- neck, body
    nw = U(0.5, 0.64)
    neck = (np.abs(bu) < nw + 0.35 * np.clip(bv - 1.6, 0, None)) & (bv > 0.5) & ~face
    if U() < 0.12:                                          # necklace
        nl = np.abs(bv - (U(1.5, 1.8) + 0.5 * bu * bu)) < 0.12
        regions[16] = nl & (np.abs(bu) < nw + 0.25)
        neck = neck & ~regions[16]                           # worn over the neck (v4)
    regions[17] = neck
    shoulder = U(1.3, 1.9)
    neckline = U(0.1, 0.35)
    top = np.where(np.abs(bu) < nw + 0.1, shoulder + neckline,
                   shoulder + 0.15 * np.clip(np.abs(bu) - nw, 0, None))
    cloth = bv > top
    cloth &= np.abs(bu) < U(1.5, 2.6)
    if 16 in regions:                                       # a necklace lies over the neckline (v4)
        cloth &= ~regions[16]
    regions[18] = cloth

    # ------------------------------------------------------- paint the mask
    mask = np.zeros((S, S), np.uint8)
    for cls in range(1, NUM_CLASSES):
        r = regions.get(cls)
        if r is not None:
            mask[r] = cls

    # ------------------------------------------------------------- colours
    # Colour image = palette[appearance codes] * gain field + noise. Codes
    # 0..18 are the classes; 19+ are looks that do not follow the labels.
    IRIS, TEETH, FRAME, OCC, NOSTRIL = 19, 20, 21, 22, 23
    tone = U()
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * tone + rng.normal(0, 8, 3)
    hair_c = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 10, 3)
    pal = np.empty((24, 3), np.float32)
    pal[1] = skin
    pal[2] = skin * U(0.95, 1.04)
    pal[3] = skin
    pal[4] = pal[5] = skin + (np.float32(228) - skin) * U(0.5, 0.9)
    pal[6] = pal[7] = skin + (hair_c * 0.8 - skin) * U(0.6, 1.0)
    pal[8] = pal[9] = skin * U(0.88, 1.0)
    pal[10] = (70, 25, 30)
    lip = skin + (_LIP_RED - skin) * U(0.35, 0.75)
    pal[11] = lip * U(0.9, 1.0)
    pal[12] = lip * U(1.0, 1.08)
    pal[13] = hair_c
    pal[14] = rng.uniform(20, 235, 3)
    pal[15] = pal[16] = (215, 185, 90) if U() < 0.5 else (200, 200, 205)
    pal[17] = skin * U(0.72, 0.92)
    pal[18] = rng.uniform(15, 240, 3) if U() < 0.75 else hair_c + rng.normal(0, 20, 3)
    pal[0] = rng.uniform(10, 245, 3)
    if U() < 0.12:                                  # background near hair / skin
        pal[0] = (hair_c if U() < 0.7 else skin) + rng.normal(0, 18, 3)
    pal[IRIS] = rng.uniform(20, 120, 3)
    pal[TEETH] = (225, 220, 205)
    pal[FRAME] = rng.uniform(0, 120, 3)
    pal[OCC] = skin * U(0.85, 1.15) if U() < 0.6 else rng.uniform(0, 255, 3)
    pal[NOSTRIL] = skin * 0.55
    code = mask.copy()

    tex = _lowfreq(rng, S, 5)
    amp = np.full(24, 0.05, np.float32)
    amp[[0, 14, 18]] = U(0.1, 0.35), 0.15, U(0.05, 0.3)
    amp[13] = 0.2
    gain = 1.0 + amp[mask] * tex
    bg = mask == 0
    ang = U(0, 2 * math.pi)
    gain = np.where(bg, gain * (1.0 + (math.cos(ang) * X + math.sin(ang) * Y) * U(0, 0.35)), gain)
    theta = np.arctan2(u - 0.05 * yaw, hv - 1.2 - v)        # hair strands
    strands = np.sin(theta * U(12, 30) + 2.5 * _lowfreq(rng, S, 6))
    hairish = (mask == 13) | (mask == 6) | (mask == 7)
    gain = np.where(hairish, gain * (1.0 + U(0.08, 0.25) * strands), gain)
    gain = np.where(face, gain * (1.0 - U(0.1, 0.25) * np.clip(face_r, 0, 1) ** 2), gain)
    side = np.tanh((u - nose_u) / 0.06) * U(-0.22, 0.22)       # nose side light
    gain = np.where(mask == 2, gain * (1.0 + side), gain)
    for s in (1, -1):                                       # nostrils
        code[(_r2(u, v, fs + 0.18 * yaw + s * 0.09, nb - 0.04, 0.05, 0.025) < 1)
             & (mask == 2)] = NOSTRIL
    for s, cls in ((1, 8), (-1, 9)):                        # ear rim and inner fold shading
        er = ear_r[s]
        gain = np.where((mask == cls) & (((er > 0.25) & (er < 0.55)) | (er > 0.8)), gain * U(0.72, 0.85), gain)
    jaw_shadow = np.clip((bv - 0.5) / 0.6, 0.0, 1.0)        # neck: shadow under the chin
    gain = np.where(mask == 17, gain * (0.7 + 0.3 * jaw_shadow), gain)
    if U() < 0.5:                                           # cloth: fabric stripes
        gain = np.where(mask == 18, gain * (1.0 + U(0.08, 0.2) * np.sin(bu * U(12, 30) + bv * U(-8, 8))), gain)
    gaze = U(-0.4, 0.4)
    for s, cls in ((1, 4), (-1, 5)):
        cu, cv = eye_c[s]
        iris = _r2(u, v, cu + gaze * ea * k[s], cv, ea * 0.45 * k[s], ea * 0.45) < 1
        code[iris & (mask == cls)] = IRIS
        lash = (eye_r[s] > 0.8) & (eye_r[s] < 1.7) & (v < cv)
        gain = np.where(lash, gain * U(0.35, 0.75), gain)
    if opening > 0.08:
        code[(mask == 10) & (v < mv)] = TEETH
    if glasses:
        gain = np.where(glass_r < 1.0, gain * (U(0.2, 0.5) if U() < 0.3 else U(0.85, 1.0)), gain)
        code[(glass_r > 0.8) & (glass_r < 1.0) | bridge] = FRAME

    if U() < 0.08:                                          # occluder: hand/object
        ox, oy = U(-0.7, 0.7), U(0.4, 1.3)
        occ = _r2(u, v, ox, oy, U(0.25, 0.45), U(0.2, 0.4), U(-1, 1)) < 1.0
        if U() < 0.6:
            for j in range(4):
                occ |= _r2(u, v, ox - 0.3 + 0.2 * j, oy - 0.4, 0.07, 0.3) < 1.0
        mask[occ] = 0
        code[occ] = OCC

    # ------------------------------------------------- camera: light, noise
    ang = U(0, 2 * math.pi)
    gain *= (1.0 + U(0, 0.35) * (math.cos(ang) * X + math.sin(ang) * Y)) * U(0.7, 1.2)
    img = pal[code] * gain[..., None] * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    img += (rng.random((S, S, 3), dtype=np.float32) - 0.5) * U(3.0, 15.0)
    out = np.clip(img, 0, 255).astype(np.uint8)
    radius = U(0.3, 0.8) * S / 128
    out = np.array(Image.fromarray(out).filter(ImageFilter.BoxBlur(radius)))
    return out, mask


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode("utf-8"))


class SyntheticFaces:
    """``n`` procedural faces of ``size`` px, deterministic per (seed, split, i).

    ``cache=True`` keeps generated samples in memory. Each process has its own copy: call
    :meth:`prefill` before DataLoader workers fork, so they inherit every sample (copy on
    write) instead of each generating the ones it serves.
    """

    def __init__(self, n: int, size: int = 128, seed: int = 0, split: str = "train",
                 cache: bool = False):
        if n <= 0 or size < 16:
            raise ValueError(f"SyntheticFaces needs n > 0 and size >= 16 (got {n}, {size})")
        self.n, self.size, self.seed, self.split = int(n), int(size), int(seed), split
        self.cache = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def prefill(self) -> int:
        """Generate every sample not yet cached (no-op without a cache); returns how many."""
        if self.cache is None:
            return 0
        todo = [i for i in range(self.n) if i not in self.cache]
        for i in todo:
            self.get_raw(i)
        return len(todo)

    def get_raw(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} synthetic samples")
        if self.cache is not None and i in self.cache:
            img, mask = self.cache[i]
            return img.copy(), mask.copy()
        rng = np.random.default_rng([self.seed, _split_code(self.split), int(i)])
        img, mask = generate_face(rng, self.size)
        if self.cache is not None:
            self.cache[i] = (img, mask)
            return img.copy(), mask.copy()
        return img, mask

    @property
    def cache_key(self) -> str:
        return (f"synthetic-v{GENERATOR_VERSION}:n={self.n}:size={self.size}:"
                f"seed={self.seed}:split={self.split}")

    def describe(self) -> dict:
        return {"kind": "synthetic", "split": self.split, "count": self.n,
                "image_size": self.size, "seed": self.seed}


def measure_class_shares(ds, n: int | None = None) -> dict:
    """Pixel shares and presence rates over the first ``n`` samples of ``ds``.

    Returns ``{"n", "shares": [19 pooled pixel fractions, ignore excluded],
    "presence": [19 fractions of images containing the class]}``.
    """
    n = len(ds) if n is None else min(n, len(ds))
    counts = np.zeros(256, np.int64)
    present = np.zeros(NUM_CLASSES, np.int64)
    for i in range(n):
        _, mask = ds.get_raw(i)
        c = np.bincount(mask.ravel(), minlength=256)
        counts += c
        present += c[:NUM_CLASSES] > 0
    total = max(int(counts[:NUM_CLASSES].sum()), 1)
    return {"n": n,
            "shares": (counts[:NUM_CLASSES] / total).tolist(),
            "presence": (present / max(n, 1)).tolist()}


__all__ = ["SyntheticFaces", "generate_face", "measure_class_shares", "TARGET_SHARES",
           "SMALL_CLASSES", "GENERATOR_VERSION"]
