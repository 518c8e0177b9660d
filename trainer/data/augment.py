"""Training augmentation on numpy arrays (no torch import).

Geometry: one affine warp (rotation + isotropic scale about the image centre)
done with Pillow: the image is resampled BILINEAR, the mask NEAREST, so no new
label values appear. Pixels that come from outside the frame are filled with a
constant: ``FILL_COLOUR`` (the normalisation mean, so they become ~0 after
normalisation) in the image and background (0) in the mask. Constant rather
than reflect padding, because a reflected border would mirror face parts and
their labels without swapping left/right.

Horizontal flip applies ``FLIP_PERM`` to the mask (l_eye <-> r_eye, brows, ears).

Random draws are made in a fixed order and always all made, so changing one
parameter (e.g. turning ``hflip`` off) does not change the other draws for the
same rng.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from trainer.core.classes import FLIP_PERM

# Fixed normalisation constants (ImageNet statistics; any fixed values work
# when training from scratch, these just need to be the same everywhere).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
FILL_COLOUR = tuple(int(round(m * 255)) for m in IMAGE_MEAN)

FLIP_LUT = np.arange(256, dtype=np.uint8)
FLIP_LUT[: len(FLIP_PERM)] = FLIP_PERM

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def hflip(image: np.ndarray, mask: np.ndarray):
    """Mirror left-right and swap the left/right labels."""
    return (np.ascontiguousarray(image[:, ::-1]),
            np.ascontiguousarray(FLIP_LUT[mask[:, ::-1]]))


def _affine_coeffs(w: int, h: int, angle_deg: float, scale: float):
    """Pillow AFFINE coefficients mapping output pixel -> input pixel for a
    rotation by ``angle_deg`` (counter-clockwise on screen) and zoom ``scale``
    about the image centre."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) / scale, math.sin(a) / scale
    cx, cy = w / 2.0, h / 2.0
    # in = R(-a) (out - centre) / scale + centre, with y pointing down.
    return (c, -s, cx - c * cx + s * cy,
            s, c, cy - s * cx - c * cy)


class Augment:
    """Random flip, rotation, scale and colour jitter.

    Attributes are plain and mutable so a running trainer can change them
    between epochs: ``rotation`` (max abs degrees), ``scale_range`` (lo, hi;
    >1 zooms in), ``hflip`` (bool, p=0.5), ``color_jitter`` (strength s:
    brightness, contrast and saturation factors in [max(1-s, 0.1), 1+s], per-channel
    gains in [1-s/4, 1+s/4]).
    """

    def __init__(self, rotation: float = 15.0, scale_range=(0.85, 1.15),
                 hflip: bool = True, color_jitter: float = 0.2):
        self.rotation = rotation
        self.scale_range = scale_range
        self.hflip = hflip
        self.color_jitter = color_jitter

    def __repr__(self):
        return (f"Augment(rotation={self.rotation}, scale_range={tuple(self.scale_range)}, "
                f"hflip={self.hflip}, color_jitter={self.color_jitter})")

    def params(self) -> dict:
        return {"rotation": float(self.rotation), "scale_range": list(self.scale_range),
                "hflip": bool(self.hflip), "color_jitter": float(self.color_jitter)}

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape} and mask {mask.shape} differ in size")
        draws = rng.random(10)                      # fixed order, always drawn
        if self.hflip and draws[0] < 0.5:
            image, mask = hflip(image, mask)

        rot = abs(float(self.rotation))
        lo, hi = (float(x) for x in self.scale_range)
        angle = (2.0 * draws[1] - 1.0) * rot
        scale = lo + (hi - lo) * draws[2]
        if angle != 0.0 or scale != 1.0:
            h, w = mask.shape
            coeffs = _affine_coeffs(w, h, angle, scale)
            image = np.array(Image.fromarray(image).transform(
                (w, h), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=FILL_COLOUR))
            mask = np.array(Image.fromarray(mask).transform(
                (w, h), Image.AFFINE, coeffs, resample=Image.NEAREST, fillcolor=0))

        s = float(self.color_jitter)
        if s > 0:
            b, c, sat = np.maximum(1.0 + s * (2.0 * draws[3:6] - 1.0), 0.1)
            gains = (1.0 + 0.25 * s * (2.0 * draws[6:9] - 1.0)).astype(np.float32)
            x = image.astype(np.float32) * np.float32(b)
            m = x.mean()
            x = (x - m) * np.float32(c) + m
            grey = (x @ _LUMA)[..., None]
            x = grey + (x - grey) * np.float32(sat)
            x *= gains
            image = np.clip(x, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)
