"""Long-tailed data set helpers: class-count profiles, class counts, validation splits and
the class-balanced sampler.

This module is NumPy-only: randomness comes from an explicit ``np.random.Generator`` or an
int seed, never from a global RNG. It never touches models or a test split.
"""

from __future__ import annotations

import numpy as np


def long_tailed_counts(n_max: int, n_classes: int, imbalance: float) -> np.ndarray:
    """Per-class sample counts of the exponential long-tailed profile.

    ``n_c = floor(n_max * imbalance ** (-c / (C - 1)))`` for ``c = 0 .. C-1``, the profile
    of CIFAR-LT (Cao et al., 2019), also used for Fashion-MNIST-LT.

    Args:
        n_max: samples of the largest class (class 0).
        n_classes: number of classes C (>= 2).
        imbalance: ratio rho = n_max / n_min (>= 1).

    Returns:
        Counts of shape (C,), int64, non-increasing, each >= 1.

    Raises:
        ValueError: on a non-positive ``n_max``, fewer than 2 classes or ``imbalance < 1``.

    Example:
        >>> long_tailed_counts(5000, 10, 100).tolist()
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1, got {imbalance}")
    c = np.arange(n_classes, dtype=np.float64)
    counts = np.floor(n_max * imbalance ** (-c / (n_classes - 1)) + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


IMAGENET_LT_GROUPS = ((385, 1280, 101), (479, 100, 20), (136, 19, 5))
"""ImageNet-LT's training classes (Liu et al., CVPR 2019) by shot group: (classes, most,
fewest images of a class) for many (> 100), medium (20 ... 100) and few (< 20) shots."""

IMAGENET_LT_TRAIN = 115_846
"""Training images of ImageNet-LT."""


def _log_ramp(first: float, last: float, n: int, power: float) -> np.ndarray:
    """(n,) values from ``first`` to ``last``, log-spaced along ``t ** power``."""
    t = np.linspace(0.0, 1.0, n) ** power
    return np.exp(np.log(first) + (np.log(last) - np.log(first)) * t)


def imagenet_lt_counts() -> np.ndarray:
    """Per-class training counts (1000,) shaped like ImageNet-LT's: its shot groups
    exactly (385 classes of 101 ... 1,280 images, 479 of 20 ... 100, 136 of 5 ... 19) and
    its 115,846 images in all. Within the medium and few groups the counts are
    log-spaced; within the many group log-spaced along ``t ** p``, with ``p`` chosen so
    that the total is exact (ImageNet-LT's own list of images is not shipped here, so
    the counts of single classes are not its).

    Example:
        >>> counts = imagenet_lt_counts()
        >>> int(counts.sum()), int(counts.max()), int(counts.min())
        (115846, 1280, 5)
        >>> [int((counts > 100).sum()), int(((counts >= 20) & (counts <= 100)).sum())]
        [385, 479]
    """
    (n_many, top, bottom), *rest = IMAGENET_LT_GROUPS
    tail = np.concatenate([np.round(_log_ramp(a, b, n, 1.0)) for n, a, b in rest])
    target = IMAGENET_LT_TRAIN - tail.sum()
    low, high = 0.05, 1.0  # the many group's sum falls as the power falls
    for _ in range(60):
        power = 0.5 * (low + high)
        if np.round(_log_ramp(top, bottom, n_many, power)).sum() > target:
            high = power
        else:
            low = power
    many = np.round(_log_ramp(top, bottom, n_many, low))
    many[1 : 1 + int(target - many.sum())] += 1  # the rounding's remainder, below the top
    return np.concatenate([many, tail]).astype(np.int64)


def class_counts(y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Number of samples per class of integer labels ``0 .. C-1``.

    Args:
        y: labels of shape (N,).
        n_classes: C; defaults to ``y.max() + 1``.

    Returns:
        Counts of shape (C,), int64.

    Example:
        >>> class_counts(np.array([0, 2, 2]), 4).tolist()
        [1, 0, 2, 0]
    """
    y = np.asarray(y, dtype=np.int64)
    size = int(y.max()) + 1 if n_classes is None else n_classes
    return np.bincount(y, minlength=size).astype(np.int64)


def stratified_split(
    y: np.ndarray, fraction: float, *, seed: int, min_per_class: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (fit, validation), stratified by class.

    Each class gives ``round(fraction * n_c)`` samples to validation, but never so many
    that fewer than ``min_per_class`` stay for fitting; a class with ``n_c <=
    min_per_class`` gives none.

    Args:
        y: labels of shape (N,).
        fraction: share of each class held out, in [0, 1).
        seed: seed of the shuffle.
        min_per_class: samples of each class always kept for fitting.

    Returns:
        Sorted index arrays ``(fit_idx, val_idx)``, disjoint, covering ``0 .. N-1``.

    Raises:
        ValueError: if ``fraction`` is outside [0, 1).

    Example:
        >>> fit, val = stratified_split(np.array([0] * 10 + [1] * 3), 0.2, seed=0)
        >>> len(fit), len(val)
        (10, 3)
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for idx in _class_indices(y):
        n_val = min(int(round(fraction * len(idx))), max(len(idx) - min_per_class, 0))
        if n_val > 0:
            val.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def _class_indices(y: np.ndarray) -> list[np.ndarray]:
    """The indices of each class (ascending), classes in sorted order: what
    ``[np.flatnonzero(y == c) for c in np.unique(y)]`` gives, in O(N log N) rather than
    O(C N).

    Example:
        >>> [i.tolist() for i in _class_indices(np.array([2, 0, 2, 1]))]
        [[1], [3], [0, 2]]
    """
    order = np.argsort(y, kind="stable")
    _, starts = np.unique(y[order], return_index=True)
    return np.split(order, starts[1:])


def stratified_folds(y: np.ndarray, n_folds: int, *, seed: int) -> list[np.ndarray]:
    """Split indices into ``n_folds`` disjoint validation folds, stratified by class.

    Each class is shuffled and dealt round-robin to the folds, starting at a random fold,
    so every fold gets ``floor`` or ``ceil`` of ``n_c / n_folds`` of its samples and a
    class with at least 2 samples keeps at least one outside every fold.

    Args:
        y: labels of shape (N,).
        n_folds: number of folds, >= 2.
        seed: seed of the shuffles.

    Returns:
        ``n_folds`` sorted index arrays that together cover ``0 .. N-1`` once.

    Raises:
        ValueError: if ``n_folds < 2``.

    Example:
        >>> folds = stratified_folds(np.array([0] * 6 + [1] * 3), 3, seed=0)
        >>> [len(f) for f in folds], sorted(np.concatenate(folds).tolist()) == list(range(9))
        ([3, 3, 3], True)
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in range(n_folds)]
    for members in _class_indices(y):
        idx = rng.permutation(members)
        start = int(rng.integers(n_folds))
        for k in range(n_folds):
            folds[(start + k) % n_folds].append(idx[k::n_folds])
    return [np.sort(np.concatenate(f)) for f in folds]


def class_balanced_indices(
    y: np.ndarray, n_samples: int, *, rng: np.random.Generator
) -> np.ndarray:
    """Draw indices with the class-balanced sampler (CBS).

    Each draw picks a class uniformly among the classes present in ``y``, then one of its
    samples uniformly (with replacement), so every class is equally likely per draw
    whatever its size.

    Args:
        y: labels of shape (N,).
        n_samples: number of draws (>= 0).
        rng: the generator to draw from, e.g. ``np.random.default_rng(seed)``.

    Returns:
        int64 indices into ``y`` of shape (n_samples,).

    Raises:
        ValueError: if ``y`` is empty or ``n_samples`` is negative.

    References:
        Kang et al., "Decoupling Representation and Classifier for Long-Tailed
        Recognition", ICLR 2020. https://arxiv.org/abs/1910.09217

    Example:
        >>> y = np.array([0] * 98 + [1, 2])
        >>> idx = class_balanced_indices(y, 3000, rng=np.random.default_rng(0))
        >>> np.round(np.bincount(y[idx]) / 3000, 1).tolist()
        [0.3, 0.3, 0.3]
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y must be a non-empty array of shape (N,), got shape {y.shape}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    order = np.argsort(y, kind="stable")
    _, starts, sizes = np.unique(y[order], return_index=True, return_counts=True)
    cls = rng.integers(len(sizes), size=n_samples)
    offset = np.floor(rng.random(n_samples) * sizes[cls]).astype(np.int64)
    return order[starts[cls] + offset].astype(np.int64)


def append_validation(
    X: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows X (N, D), y (N,) followed by the validation rows ``val`` =
    (X_val (M, D), y_val (M,)), and the indices (M,) of the validation rows, so that one
    (fit = ``0 .. N-1``, held out = those indices) split serves code written for folds.

    Example:
        >>> X_all, y_all, rows = append_validation(np.zeros((3, 2)), np.arange(3),
        ...                                        (np.ones((2, 2)), np.array([0, 2])))
        >>> X_all.shape, y_all.tolist(), rows.tolist()
        ((5, 2), [0, 1, 2, 0, 2], [3, 4])
    """
    rows = np.arange(len(y), len(y) + len(val[1]))
    return np.concatenate([X, val[0]]), np.concatenate([y, val[1]]), rows
