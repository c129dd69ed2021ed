"""Shared pieces of the image data sets: the error type, the splits record and the
long-tailed subset builders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlsa.engine.splits import long_tailed_counts, stratified_split


class DataFileError(ValueError):
    """A data file (idx file, pickle batch, split list) that is corrupt or malformed."""


@dataclass(frozen=True)
class ImageSplits:
    """Train/validation/test images and labels of one benchmark.

    Attributes:
        name: benchmark id, e.g. ``"fashion-mnist-lt-r100"``.
        train_images: uint8 images of shape (N, H, W) or (N, H, W, 3).
        train_labels: int64 labels of shape (N,).
        val_images: uint8 images of shape (M, H, W) or (M, H, W, 3).
        val_labels: int64 labels of shape (M,).
        test_images: uint8 images of shape (T, H, W) or (T, H, W, 3).
        test_labels: int64 labels of shape (T,).
        class_names: C names in label order.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def make_long_tailed(
    labels: np.ndarray, imbalance: float = 100, n_max: int | None = None, seed: int = 0
) -> np.ndarray:
    """Indices of a long-tailed subset with the exponential profile.

    Class ``c`` keeps ``long_tailed_counts(n_max, C, imbalance)[c]`` samples drawn
    without replacement, so class 0 is the largest (class order = label order).

    Args:
        labels: labels of shape (N,) in ``0 .. C-1``.
        imbalance: rho = n_max / n_min (>= 1).
        n_max: samples of class 0; None means the size of the smallest class.
        seed: seed of the draw; the same seed gives the same subset.

    Returns:
        Sorted int64 indices into ``labels``.

    Raises:
        ValueError: if a class has fewer samples than its profile asks for.

    Example:
        >>> idx = make_long_tailed(np.repeat(np.arange(3), 10), imbalance=4, n_max=8)
        >>> np.bincount(np.repeat(np.arange(3), 10)[idx]).tolist()
        [8, 4, 2]
    """
    labels = np.asarray(labels, dtype=np.int64)
    available = np.bincount(labels)
    size = int(available.min()) if n_max is None else n_max
    counts = long_tailed_counts(size, len(available), imbalance)
    short = np.flatnonzero(counts > available)
    if short.size:
        c = int(short[0])
        raise ValueError(
            f"class {c} has {available[c]} samples but the profile (n_max={size}, "
            f"imbalance={imbalance}) needs {counts[c]}"
        )
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def split_long_tailed(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    name: str,
    class_names: Sequence[str],
    imbalance: float,
    n_max: int | None,
    val_fraction: float,
    seed: int,
) -> ImageSplits:
    """Make a long-tailed train subset and carve a validation split from it.

    The validation split takes ``round(val_fraction * n_c)`` samples of each class of the
    long-tailed subset (:func:`dlsa.engine.splits.stratified_split`, at least one sample of each
    class stays in train), so it has the same long-tailed profile as train. The test set
    is passed through unchanged.

    Args:
        images: full train images of shape (N, ...).
        labels: their labels of shape (N,).
        test_images: test images of shape (T, ...).
        test_labels: test labels of shape (T,).
        name: benchmark id stored in the result.
        class_names: C names in label order.
        imbalance: rho of the profile.
        n_max: samples of class 0 before the validation split (None: smallest class).
        val_fraction: share of each class moved to validation, in [0, 1).
        seed: seed of the subset and of the split.

    Returns:
        The :class:`ImageSplits`.
    """
    subset = make_long_tailed(labels, imbalance=imbalance, n_max=n_max, seed=seed)
    split_seed = int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1)[0])
    fit, val = stratified_split(labels[subset], val_fraction, seed=split_seed, min_per_class=1)
    return ImageSplits(
        name=name,
        train_images=images[subset[fit]],
        train_labels=labels[subset[fit]].astype(np.int64),
        val_images=images[subset[val]],
        val_labels=labels[subset[val]].astype(np.int64),
        test_images=test_images,
        test_labels=np.asarray(test_labels, dtype=np.int64),
        class_names=tuple(class_names),
    )
