"""Synthetic long-tailed feature sets for tests, benchmarks and quick trials.

Each class is a mixture of a few Gaussian modes in feature space; train counts follow the
exponential long-tailed profile and the test set is balanced, as in the long-tail
benchmarks. Everything is drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlsa.data import long_tailed_counts


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
) -> SyntheticSplit:
    """Draw a long-tailed train set and a balanced test set.

    Class ``c`` has ``modes_per_class`` modes with centres ``~ N(0, separation^2 I)``;
    samples are a uniformly chosen mode plus ``N(0, noise^2 I)``. Train counts follow
    :func:`dlsa.data.long_tailed_counts`.

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

    Example:
        >>> split = make_long_tailed_features(n_classes=5, n_features=3, n_max=40, seed=0)
        >>> np.bincount(split.y_train).tolist(), split.X_test.shape
        ([40, 12, 4, 1, 1], (100, 3))
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, modes_per_class, n_features))
    counts = long_tailed_counts(n_max, n_classes, imbalance)

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), per_class)
        modes = rng.integers(0, modes_per_class, size=y.shape[0])
        X = centres[y, modes] + rng.normal(0.0, noise, size=(y.shape[0], n_features))
        return X.astype(np.float32), y.astype(np.int64)

    X_train, y_train = draw(counts)
    X_test, y_test = draw(np.full(n_classes, n_test_per_class))
    return SyntheticSplit(X_train, y_train, X_test, y_test)
