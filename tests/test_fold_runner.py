"""The one fold runner (dlsa.cascade.folds): the fit part's classes re-encoded and mapped
back, records in split order (also from worker processes), a diverged fit as a record."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from dlsa.cascade.folds import AsGiven, Reencoded, fit_and_score, run_folds
from dlsa.errors import TrainingDivergedError


def _fit(X, y, donor):
    """A stand-in for a cascade: what it was fitted on."""
    return {"n": len(X), "y": y.copy(), "donor": donor}


def _score(model, X, y):
    return model.cascade["n"], model.indices(y), model.cascade["donor"]


def test_reencoded_classes_map_back_and_miss_a_class_of_the_held_out_part():
    y = np.array([0, 2, 2, 5, 5, 5, 7])
    X = np.arange(len(y), dtype=np.float32)[:, None]
    model = Reencoded(_fit)(X[:6], y[:6], None)
    np.testing.assert_array_equal(model.classes, [0, 2, 5])
    np.testing.assert_array_equal(model.cascade["y"], [0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(model.labels(np.array([2, 0, 1])), [5, 0, 2])
    np.testing.assert_array_equal(model.indices(np.array([7, 5, 1, 0])), [-1, 2, -1, 0])
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    wide = model.columns(logits, 8)
    assert wide.dtype == np.float32 and wide.shape == (1, 8)
    np.testing.assert_array_equal(wide[0, [0, 2, 5]], logits[0])
    assert np.isneginf(np.delete(wide[0], [0, 2, 5])).all()
    same = AsGiven(_fit)(X[:6], y[:6], None)
    assert same.classes is None and same.labels(np.array([3]))[0] == 3
    np.testing.assert_array_equal(same.indices(y), y)
    assert same.columns(logits, 8) is logits


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_records_come_in_split_order_with_each_splits_donor(n_jobs):
    y = np.repeat(np.arange(3), 4)
    X = np.zeros((len(y), 2), dtype=np.float32)
    every = np.arange(len(y))
    held = [every[::3], every[1::3], every[2::3]]
    splits = [(np.setdiff1d(every, v), v) for v in held]
    donors = ["a", "b", "c"]
    got = run_folds(Reencoded(_fit), _score, X, y, splits, donors=donors, n_jobs=n_jobs)
    want = [
        fit_and_score(Reencoded(_fit), _score, X, y, f, v, d)
        for (f, v), d in zip(splits, donors, strict=True)
    ]
    for (n, idx, donor), (n2, idx2, donor2), (_, v), d in zip(
        got, want, splits, donors, strict=True
    ):
        assert n == n2 == len(y) - len(v) and donor == donor2 == d
        np.testing.assert_array_equal(idx, idx2)
        np.testing.assert_array_equal(idx, y[v])


def _diverge(X, y, donor):
    raise TrainingDivergedError("went to nan")


def test_a_diverged_fit_is_a_record_only_when_asked():
    X, y = np.zeros((4, 1), dtype=np.float32), np.array([0, 0, 1, 1])
    fit_idx, val_idx = np.array([0, 2]), np.array([1, 3])
    with pytest.raises(TrainingDivergedError):
        fit_and_score(AsGiven(_diverge), _score, X, y, fit_idx, val_idx)
    record = fit_and_score(
        AsGiven(_diverge), _score, X, y, fit_idx, val_idx, diverged=partial(str)
    )
    assert record == "went to nan"
