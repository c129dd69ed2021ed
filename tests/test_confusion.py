"""Metrics from confusion counts equal scikit-learn's and the per-sample metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef, normalized_mutual_info_score

from dlsa.metrics import classification_report, confusion_matrix_binned
from dlsa.metrics.confusion import (
    binned_from_confusion,
    confusion_counts,
    mcc_from_confusion,
    nmi_from_confusion,
    report_from_confusion,
)


def _cases():
    rng = np.random.default_rng(7)
    for seed in range(12):
        n_classes = int(rng.integers(2, 40))
        n = int(rng.integers(1, 400))
        target = rng.integers(0, n_classes, n)
        noisy = rng.random(n) < rng.random()
        preds = np.where(noisy, rng.integers(0, n_classes, n), target)
        yield pytest.param(preds, target, n_classes, id=f"random{seed}")
    yield pytest.param(np.zeros(5, int), np.zeros(5, int), 3, id="one-class")
    yield pytest.param(np.zeros(5, int), np.arange(5), 5, id="constant-preds")
    yield pytest.param(np.array([1, 0]), np.array([0, 1]), 2, id="all-wrong")


@pytest.mark.parametrize(("preds", "target", "n_classes"), _cases())
def test_equal_to_sklearn_and_classification_report(preds, target, n_classes):
    matrix = confusion_counts(preds, target, n_classes)
    assert mcc_from_confusion(matrix) == matthews_corrcoef(target, preds)
    assert nmi_from_confusion(matrix) == normalized_mutual_info_score(target, preds)
    counts = np.random.default_rng(n_classes).integers(1, 300, n_classes)
    want = classification_report(preds, target, counts, many=100, few=20)
    assert report_from_confusion(matrix, counts, many=100, few=20) == want
    # confusion_matrix_binned fails on exclude_correct with no error to count (sklearn
    # refuses empty input); the count-based version returns zeros there.
    for exclude in (False, True) if (preds != target).any() else (False,):
        np.testing.assert_array_equal(
            binned_from_confusion(matrix, counts, 4, exclude_correct=exclude),
            confusion_matrix_binned(preds, target, counts, 4, exclude_correct=exclude),
        )


def test_confusion_counts_add_up_over_chunks():
    rng = np.random.default_rng(0)
    preds, target = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
    parts = sum(confusion_counts(preds[i : i + 7], target[i : i + 7], 5) for i in range(0, 50, 7))
    np.testing.assert_array_equal(parts, confusion_counts(preds, target, 5))
    assert parts.sum() == 50 and parts.dtype == np.int64
