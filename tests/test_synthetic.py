"""Synthetic long-tailed features."""

from __future__ import annotations

import numpy as np

from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine.splits import long_tailed_counts


def test_profile_balanced_test_and_seed():
    d = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=1)
    np.testing.assert_array_equal(np.bincount(d.y_train), long_tailed_counts(200, 12, 50))
    assert np.all(np.bincount(d.y_test) == 20)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    again = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=1)
    np.testing.assert_array_equal(d.X_train, again.X_train)
    other = make_long_tailed_features(n_classes=12, n_features=5, n_max=200, imbalance=50, seed=2)
    assert not np.array_equal(d.X_train, other.X_train)
