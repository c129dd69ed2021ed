"""Synthetic long-tailed features."""

from __future__ import annotations

import numpy as np

from dlsa.datasets.synthetic import make_imagenet_lt_like, make_long_tailed_features
from dlsa.engine.splits import imagenet_lt_counts, long_tailed_counts


def test_profile_balanced_test_and_seed():
    d = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=1)
    np.testing.assert_array_equal(np.bincount(d.y_train), long_tailed_counts(200, 12, 50))
    assert np.all(np.bincount(d.y_test) == 20)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    again = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=1)
    np.testing.assert_array_equal(d.X_train, again.X_train)
    other = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=2)
    assert not np.array_equal(d.X_train, other.X_train)


def test_imagenet_lt_counts_have_its_groups_and_total() -> None:
    counts = imagenet_lt_counts()
    assert counts.shape == (1000,) and int(counts.sum()) == 115_846
    assert (np.diff(counts) <= 0).all() and counts.max() == 1280 and counts.min() == 5
    many, few = counts > 100, counts < 20
    assert (many.sum(), (~many & ~few).sum(), few.sum()) == (385, 479, 136)


def test_imagenet_lt_like_splits_are_balanced_and_disjoint_draws() -> None:
    split, X_val, y_val = make_imagenet_lt_like(
        n_features=8, n_val_per_class=2, n_test_per_class=3
    )
    assert split.X_train.shape == (115_846, 8) and split.X_test.shape == (3000, 8)
    assert np.bincount(y_val).tolist() == [2] * 1000
    assert np.bincount(split.y_test).tolist() == [3] * 1000
    assert np.array_equal(np.bincount(split.y_train), imagenet_lt_counts())

    def rows(X: np.ndarray) -> set[bytes]:  # rows relu left mostly nonzero: distinct draws
        return {r.tobytes() for r in X if np.count_nonzero(r) >= 4}

    assert rows(X_val) and not rows(X_val) & rows(split.X_test)
