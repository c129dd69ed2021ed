"""Photometric and geometric augmentation of PaCo's release (``--augment paco``).

PaCo (Cui et al., ICCV 2021) trains its ImageNet-LT / Places-LT / iNaturalist models with
two differently augmented views of each image ("randcls_sim" in the release): after the
random resized crop and the flip that every ``dlsa train`` view gets,

* the query view gets a colour jitter (brightness, contrast and saturation factors in
  [0.6, 1.4], in random order) and RandAugment with n = 2 operations of magnitude
  m = 10 (magnitude noise std 0.5; each chosen operation applied with probability 1/2;
  the 15 operations of timm's ``rand`` set with their level ranges);
* the key view gets the same colour jitter, grayscale with probability 0.2 and a
  Gaussian blur of sigma in [0.1, 2] with probability 0.5 (SimCLR's recipe).

Written from the papers' and timm's descriptions with PIL's image operations (no
torchvision). Every draw comes from the ``numpy.random.Generator`` passed in, which the
loader seeds per (seed, epoch, position), so views do not depend on workers or ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

__all__ = [
    "RAND_OPS",
    "RandOp",
    "apply_op",
    "color_jitter",
    "paco_view",
    "rand_augment",
    "rand_augment_plan",
]

MAX_LEVEL = 10.0
FILL = (124, 116, 104)  # ImageNet's mean colour, the fill of rotations / shears / shifts
RAND_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip
SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})


@dataclass(frozen=True)
class RandOp:
    """One drawn RandAugment operation: its name, level in [0, 10], the sign of a signed
    operation (+1 / -1) and whether bicubic (else bilinear) resampling is used."""

    name: str
    level: float
    sign: float
    bicubic: bool


def rand_augment_plan(
    g: np.random.Generator, n: int = 2, magnitude: float = 10.0, std: float = 0.5
) -> list[RandOp]:
    """The operations RandAugment applies to one image: n draws with replacement from
    :data:`RAND_OPS`, each kept with probability 1/2, its level ``N(magnitude, std)``
    clipped to [0, 10]."""
    plan = []
    for name in g.choice(RAND_OPS, size=n, replace=True):
        keep, level, sign, cubic = g.random(), g.normal(magnitude, std), g.random(), g.random()
        if keep < 0.5:
            level = float(np.clip(level, 0.0, MAX_LEVEL))
            plan.append(RandOp(str(name), level, -1.0 if sign < 0.5 else 1.0, cubic < 0.5))
    return plan


def _affine(img: Image.Image, op: RandOp, matrix: tuple[float, ...]) -> Image.Image:
    resample = Image.Resampling.BICUBIC if op.bicubic else Image.Resampling.BILINEAR
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample, fillcolor=_fill(img))


def _fill(img: Image.Image) -> int | tuple[int, ...]:
    return round(float(np.mean(FILL))) if img.mode == "L" else FILL


def _solarize_add(img: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < threshold else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _enhance(kind: type) -> Callable[[Image.Image, float], Image.Image]:
    return lambda img, factor: kind(img).enhance(factor)


_ENHANCE = {
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
}


def apply_op(img: Image.Image, op: RandOp) -> Image.Image:
    """Apply one operation at its level (timm's ``rand`` ranges: rotate +-30 degrees,
    shear +-0.3, shift +-45% of the side, enhancement factor 0.1 ... 1.9, posterize to
    0 ... 4 bits, solarize above 0 ... 256, add 0 ... 110 below 128)."""
    t = op.level / MAX_LEVEL
    if op.name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op.name == "Equalize":
        return ImageOps.equalize(img)
    if op.name == "Invert":
        return ImageOps.invert(img)
    if op.name == "Rotate":
        resample = Image.Resampling.BICUBIC if op.bicubic else Image.Resampling.BILINEAR
        return img.rotate(op.sign * 30.0 * t, resample, fillcolor=_fill(img))
    if op.name == "Posterize":
        bits = int(4 * t)
        return img if bits >= 8 else ImageOps.posterize(img, bits)
    if op.name == "Solarize":
        return ImageOps.solarize(img, int(256 * t))
    if op.name == "SolarizeAdd":
        return _solarize_add(img, int(110 * t))
    if op.name in _ENHANCE:
        return _ENHANCE[op.name](img, 1.8 * t + 0.1)
    if op.name == "ShearX":
        return _affine(img, op, (1, op.sign * 0.3 * t, 0, 0, 1, 0))
    if op.name == "ShearY":
        return _affine(img, op, (1, 0, 0, op.sign * 0.3 * t, 1, 0))
    if op.name == "TranslateXRel":
        return _affine(img, op, (1, 0, op.sign * 0.45 * t * img.width, 0, 1, 0))
    if op.name == "TranslateYRel":
        return _affine(img, op, (1, 0, 0, 0, 1, op.sign * 0.45 * t * img.height))
    raise ValueError(f"unknown RandAugment operation {op.name!r}")


def rand_augment(
    img: Image.Image, g: np.random.Generator, n: int = 2, magnitude: float = 10.0
) -> Image.Image:
    """RandAugment ``rand-n{n}-m{magnitude}-mstd0.5`` of one image."""
    for op in rand_augment_plan(g, n, magnitude):
        img = apply_op(img, op)
    return img


def color_jitter(img: Image.Image, g: np.random.Generator, strength: float = 0.4) -> Image.Image:
    """Brightness, contrast and saturation factors drawn from [1 - s, 1 + s], applied in
    a random order (no hue change, as in the release's ``ColorJitter(0.4, 0.4, 0.4, 0)``)."""
    factors = g.uniform(1.0 - strength, 1.0 + strength, size=3)
    kinds = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for i in g.permutation(3):
        img = kinds[i](img).enhance(float(factors[i]))
    return img


def paco_view(
    img: Image.Image, view: int, g: np.random.Generator, n: int = 2, magnitude: float = 10.0
) -> Image.Image:
    """The photometric part of PaCo's view ``view`` (0: query, jitter + RandAugment;
    1: key, jitter + grayscale p 0.2 + Gaussian blur p 0.5) of a cropped, flipped
    image."""
    img = color_jitter(img, g)
    if view == 0:
        return rand_augment(img, g, n, magnitude)
    gray, blur, sigma = g.random(), g.random(), g.uniform(0.1, 2.0)
    if gray < 0.2 and img.mode != "L":
        img = img.convert("L").convert(img.mode)
    if blur < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(sigma)))
    return img
