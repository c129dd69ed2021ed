"""Synthetic long-tailed feature sets for tests, benchmarks and quick trials.

Each class is a mixture of a few Gaussian modes in feature space; train counts follow the
exponential long-tailed profile and the test set is balanced, as in the long-tail
benchmarks. Everything is drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlsa.engine.splits import imagenet_lt_counts, long_tailed_counts


@dataclass(frozen=True)
class SyntheticSplit:
    """Train and test features of a synthetic long-tailed problem.

    Attributes:
        X_train: (N_train, D) float32.
        y_train: (N_train,) int64; class 0 is the largest.
        X_test: (N_test, D) float32, ``n_test_per_class`` samples per class.
        y_test: (N_test,) int64.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _train_counts(
    counts: np.ndarray | None, n_max: int, n_classes: int, imbalance: float
) -> np.ndarray:
    """``counts`` (C,) checked, or the exponential profile when it is None."""
    if counts is None:
        return long_tailed_counts(n_max, n_classes, imbalance)
    counts = np.asarray(counts)
    if counts.shape != (n_classes,) or counts.min() < 1:
        raise ValueError(f"counts must be {n_classes} positive integers, got shape {counts.shape}")
    return counts.astype(np.int64)


def make_long_tailed_features(
    *,
    n_classes: int = 100,
    n_features: int = 32,
    n_max: int = 500,
    imbalance: float = 100.0,
    n_test_per_class: int = 20,
    modes_per_class: int = 2,
    separation: float = 2.0,
    noise: float = 1.0,
    seed: int = 0,
    counts: np.ndarray | None = None,
) -> SyntheticSplit:
    """Draw a long-tailed train set and a balanced test set.

    Class ``c`` has ``modes_per_class`` modes with centres ``~ N(0, separation^2 I)``;
    samples are a uniformly chosen mode plus ``N(0, noise^2 I)``. Train counts follow
    :func:`dlsa.engine.splits.long_tailed_counts`, or ``counts`` when given.

    Args:
        n_classes: C.
        n_features: D.
        n_max: train samples of the largest class.
        imbalance: n_max / n_min.
        n_test_per_class: test samples per class.
        modes_per_class: Gaussian modes per class.
        separation: std of the mode centres (larger is easier).
        noise: within-mode std.
        seed: seed of the generator.
        counts: (C,) train samples per class, replacing the profile of ``n_max`` and
            ``imbalance``.

    Example:
        >>> split = make_long_tailed_features(n_classes=5, n_features=3, n_max=40, seed=0)
        >>> np.bincount(split.y_train).tolist(), split.X_test.shape
        ([40, 12, 4, 1, 1], (100, 3))
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, modes_per_class, n_features))
    counts = _train_counts(counts, n_max, n_classes, imbalance)

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), per_class)
        modes = rng.integers(0, modes_per_class, size=y.shape[0])
        X = centres[y, modes] + rng.normal(0.0, noise, size=(y.shape[0], n_features))
        return X.astype(np.float32), y.astype(np.int64)

    X_train, y_train = draw(counts)
    X_test, y_test = draw(np.full(n_classes, n_test_per_class))
    return SyntheticSplit(X_train, y_train, X_test, y_test)


def make_embedding_like_features(
    *,
    n_classes: int = 100,
    n_features: int = 512,
    n_max: int = 300,
    imbalance: float = 100.0,
    n_test_per_class: int = 20,
    rank: int = 48,
    n_super: int | None = None,
    max_modes: int = 3,
    separation: float = 1.0,
    noise: float = 10.0,
    seed: int = 0,
    counts: np.ndarray | None = None,
) -> SyntheticSplit:
    """A long-tailed set shaped like pooled CNN embeddings rather than isotropic blobs.

    Structure (all in a ``rank``-dimensional subspace mapped to D by a random matrix,
    plus a small isotropic residual):

    * class means = super-class mean + class offset (classes of one super-class are
      confused with each other, as fine-grained categories are);
    * 1 ... ``max_modes`` sub-clusters per class (poses, backgrounds);
    * anisotropic within-class noise whose variance decays as 1 / i over the subspace;
    * non-negative features, ``relu(h)``, as after a ReLU and average pooling.

    Train counts follow :func:`dlsa.engine.splits.long_tailed_counts`, or ``counts`` (C,) when
    given (then ``n_max`` and ``imbalance`` are unused); the test set is balanced.
    ``separation`` scales the class and mode offsets, ``noise`` the within-class spread.

    Example:
        >>> s = make_embedding_like_features(n_classes=8, n_features=16, n_max=30, seed=0)
        >>> s.X_train.shape[1], bool((s.X_train >= 0).all()), s.X_test.shape[0]
        (16, True, 160)
    """
    rng = np.random.default_rng(seed)
    rank = min(rank, n_features)
    n_super = n_super or max(2, n_classes // 10)
    basis = rng.normal(0.0, 1.0 / np.sqrt(rank), size=(rank, n_features))
    spectrum = 1.0 / np.sqrt(np.arange(1, rank + 1))
    supers = rng.normal(0.0, 1.5 * separation, size=(n_super, rank))
    parent = rng.integers(0, n_super, size=n_classes)
    means = supers[parent] + rng.normal(0.0, separation, size=(n_classes, rank))
    n_modes = rng.integers(1, max_modes + 1, size=n_classes)
    modes = rng.normal(0.0, 0.5 * separation, size=(n_classes, max_modes, rank))
    counts = _train_counts(counts, n_max, n_classes, imbalance)

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), per_class)
        mode = (rng.random(y.shape[0]) * n_modes[y]).astype(np.int64)
        h = means[y] + modes[y, mode] + rng.normal(size=(y.shape[0], rank)) * (noise * spectrum)
        x = h @ basis + rng.normal(0.0, 0.05, size=(y.shape[0], n_features))
        return np.maximum(x, 0.0).astype(np.float32), y.astype(np.int64)

    X_train, y_train = draw(counts)
    X_test, y_test = draw(np.full(n_classes, n_test_per_class))
    return SyntheticSplit(X_train, y_train, X_test, y_test)


def make_imagenet_lt_like(
    *,
    n_features: int = 2048,
    n_val_per_class: int = 20,
    n_test_per_class: int = 50,
    seed: int = 0,
) -> tuple[SyntheticSplit, np.ndarray, np.ndarray]:
    """Embedding-like features with ImageNet-LT's shape: 1,000 classes with the counts of
    :func:`dlsa.engine.splits.imagenet_lt_counts` (115,846 training rows), a balanced
    validation split and a balanced test set, as ImageNet-LT's (20 and 50 per class).

    The structure is :func:`make_embedding_like_features` in a 128-dimensional subspace
    with within-class noise 30: a Balanced Softmax head reaches 63% test accuracy at
    D = 2,048 (13% on the few-shot classes; docs/speed.md), far from saturated, so
    methods differ.

    Returns:
        The split (train, test) and the validation rows X_val (1000 n_val, D) float32,
        y_val (1000 n_val,) int64.
    """
    per_class = n_val_per_class + n_test_per_class
    split = make_embedding_like_features(
        n_classes=1000, n_features=n_features, counts=imagenet_lt_counts(),
        n_test_per_class=per_class, rank=128, noise=30.0, separation=1.0, seed=seed,
    )  # fmt: skip
    is_val = np.tile(np.arange(per_class) < n_val_per_class, 1000)
    X_test, y_test = split.X_test[~is_val], split.y_test[~is_val]
    test = SyntheticSplit(split.X_train, split.y_train, X_test, y_test)
    return test, split.X_test[is_val], split.y_test[is_val]
