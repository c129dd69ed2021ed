"""PaCo's augmentation (``dlsa train --augment paco``): each RandAugment operation against
its definition on pixel arrays, the drawn plan's frequencies, and the two views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlsa.backbones.augment import (
    FILL,
    RAND_OPS,
    RandOp,
    apply_op,
    color_jitter,
    paco_view,
    rand_augment_plan,
)
from dlsa.backbones.stream import TrainViews, read_source


@pytest.fixture
def img() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def op(name: str, level: float, sign: float = 1.0) -> RandOp:
    return RandOp(name, level, sign, bicubic=False)


def arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int64)


def test_pixel_operations_follow_their_definitions(img):
    x = arr(img)
    assert np.array_equal(arr(apply_op(img, op("Invert", 3))), 255 - x)
    solarized = np.where(x >= 128, 255 - x, x)  # level 5: threshold 256 * 0.5
    assert np.array_equal(arr(apply_op(img, op("Solarize", 5))), solarized)
    assert np.array_equal(arr(apply_op(img, op("Posterize", 5))), x & 0b11000000)  # 2 bits
    added = np.where(x < 128, np.minimum(x + 110, 255), x)
    assert np.array_equal(arr(apply_op(img, op("SolarizeAdd", 10))), added)
    assert np.array_equal(arr(apply_op(img, op("Rotate", 0))), x)
    assert np.array_equal(arr(apply_op(img, op("Brightness", 5))), x)  # factor 1.0


def test_translation_shifts_by_45_percent_and_fills_with_the_mean_colour(img):
    x = arr(img)  # width 20: level 10 shifts by 9 columns
    left = arr(apply_op(img, op("TranslateXRel", 10, sign=1.0)))
    assert np.array_equal(left[:, :11], x[:, 9:])
    assert (left[:, 11:] == np.array(FILL)).all()
    right = arr(apply_op(img, op("TranslateXRel", 10, sign=-1.0)))
    assert np.array_equal(right[:, 9:], x[:, :11])


def test_every_operation_keeps_size_and_mode(img):
    gray = img.convert("L")
    for name in RAND_OPS:
        for image in (img, gray):
            out = apply_op(image, op(name, 7.3, sign=-1.0))
            assert out.size == image.size and out.mode == image.mode, name
    with pytest.raises(ValueError, match="unknown"):
        apply_op(img, op("Cutout", 5))


def test_the_plan_keeps_half_the_draws_at_a_noisy_magnitude():
    g = np.random.default_rng(1)
    plans = [rand_augment_plan(g, n=2, magnitude=10.0, std=0.5) for _ in range(4000)]
    ops = [o for plan in plans for o in plan]
    assert abs(len(ops) / 8000 - 0.5) < 0.03  # each of the 2 draws kept with p 1/2
    assert {o.name for o in ops} == set(RAND_OPS)
    levels = np.array([o.level for o in ops])
    assert levels.min() >= 0 and levels.max() <= 10
    assert abs(levels.mean() - (10 - 0.5 * 0.3989)) < 0.05  # N(10, 0.5) clipped at 10
    assert abs(np.mean([o.sign > 0 for o in ops]) - 0.5) < 0.04


def test_colour_jitter_of_strength_zero_changes_nothing(img):
    g = np.random.default_rng(2)
    assert np.array_equal(arr(color_jitter(img, g, strength=0.0)), arr(img))
    assert not np.array_equal(arr(color_jitter(img, g)), arr(img))


def test_the_key_view_is_grayscale_a_fifth_of_the_time(img):
    g = np.random.default_rng(3)
    gray = [np.ptp(arr(paco_view(img, 1, g)), axis=2).max() == 0 for _ in range(600)]
    assert abs(np.mean(gray) - 0.2) < 0.06
    query = [np.ptp(arr(paco_view(img, 0, g)), axis=2).max() == 0 for _ in range(200)]
    assert not any(query)  # the query view is never turned gray


def test_train_views_with_paco_augmentation_are_seeded_per_position(tmp_path: Path, img):
    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        img.save(tmp_path / f"c{c}" / "a.png")
    source = read_source(tmp_path, None, skip_missing=False, flag="--images")
    kw = {"size": 12, "mode": "RGB", "views": 2, "scale": (0.5, 1.0), "flip": True, "seed": 0}
    paco = TrainViews(source, augment="paco", **kw)
    plain = TrainViews(source, **kw)
    a, b = paco[(1, 0, 0)][0], paco[(1, 0, 0)][0]
    assert a.shape == (2, 3, 12, 12) and np.array_equal(a, b)
    assert not np.array_equal(a, paco[(2, 0, 0)][0])
    assert not np.array_equal(a, plain[(1, 0, 0)][0])  # same crops, photometric changes
