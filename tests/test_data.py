"""Tests of dlsa.engine.splits: long-tailed profiles, class counts, splits and the CBS sampler."""

import numpy as np
import pytest

from dlsa.engine.splits import (
    class_balanced_indices,
    class_counts,
    long_tailed_counts,
    stratified_folds,
    stratified_split,
)


def test_long_tailed_counts_profile():
    counts = long_tailed_counts(5000, 10, 100)
    assert counts[0] == 5000 and counts[-1] == 50
    assert np.all(np.diff(counts) <= 0)
    np.testing.assert_array_equal(long_tailed_counts(7, 4, 1), [7, 7, 7, 7])


@pytest.mark.parametrize(
    "args, match",
    [((0, 10, 10), "n_max"), ((10, 1, 10), "n_classes"), ((10, 10, 0.5), "imbalance")],
)
def test_long_tailed_counts_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        long_tailed_counts(*args)


def test_class_counts():
    np.testing.assert_array_equal(class_counts(np.array([2, 2, 0])), [1, 0, 2])
    np.testing.assert_array_equal(class_counts(np.array([1]), 3), [0, 1, 0])


def test_stratified_split_keeps_one_per_class():
    y = np.array([0] * 20 + [1] * 1 + [2] * 2)
    fit, val = stratified_split(y, 0.5, seed=0)
    assert np.bincount(y[val], minlength=3).tolist() == [10, 0, 1]
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(len(y)))


def test_class_balanced_indices_uniform_over_classes():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = class_balanced_indices(y, 30000, rng=np.random.default_rng(0))
    assert idx.shape == (30000,) and idx.dtype == np.int64
    share = np.bincount(y[idx], minlength=3) / len(idx)
    np.testing.assert_allclose(share, 1 / 3, atol=0.02)
    # within a class every sample is used, uniformly
    tail = np.bincount(idx[y[idx] == 2] - 990, minlength=10)
    assert tail.min() > 0.7 * tail.mean()


def test_class_balanced_indices_skips_absent_classes_and_is_seeded():
    y = np.array([5, 5, 5, 9])
    a = class_balanced_indices(y, 2000, rng=np.random.default_rng(1))
    b = class_balanced_indices(y, 2000, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert set(y[a]) == {5, 9}
    assert abs((y[a] == 9).mean() - 0.5) < 0.05


def test_class_balanced_indices_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="non-empty"):
        class_balanced_indices(np.array([], dtype=int), 3, rng=rng)
    with pytest.raises(ValueError, match="n_samples"):
        class_balanced_indices(np.array([0, 1]), -1, rng=rng)
    assert class_balanced_indices(np.array([0, 1]), 0, rng=rng).shape == (0,)


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_stratified_folds_partition_every_class_evenly(n_folds):
    y = np.repeat(np.arange(6), [2, 3, 7, 11, 40, 101])
    folds = stratified_folds(y, n_folds, seed=3)
    assert len(folds) == n_folds
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(y)))
    for c, n_c in enumerate(np.bincount(y)):
        per_fold = [int((y[f] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
        assert all(n_c - k >= 1 for k in per_fold)  # every fit part keeps the class


def test_stratified_folds_rejects_fewer_than_two():
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        stratified_folds(np.zeros(4), 1, seed=0)
