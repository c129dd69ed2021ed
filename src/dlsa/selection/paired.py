"""Paired statistics of candidates' predictions on the same samples, what the selection
rule (:mod:`dlsa.selection.rule`) decides on: per-class hits, balanced accuracy, the
paired balanced-accuracy gain of one candidate over another with its standard error,
and the rarer half of the classes.

The paired gain of a over b is ``g = (1/C) sum_c mean_{i in c} (hit_a(i) - hit_b(i))``,
the difference of balanced accuracies over the same samples; its standard error treats
the out-of-fold samples of each class as independent draws:
``se^2 = (1/C^2) sum_c var_c(hit_a - hit_b) / n_c``.
"""

from __future__ import annotations

import numpy as np

from dlsa.selection.shift import rarer_classes


def class_hits(pred: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class hit sums (C,) and class sizes (C,) of predictions (N,) for labels (N,)."""
    hits = np.bincount(y, weights=(pred == y).astype(np.float64), minlength=n_classes)
    return hits, np.bincount(y, minlength=n_classes).astype(np.float64)


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """Mean over the classes present in ``y`` (N,) of the accuracy of ``pred`` (N,).

    Example:
        >>> balanced_accuracy(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), 2)
        0.75
    """
    hits, sizes = class_hits(pred, y, n_classes)
    present = sizes > 0
    return float(np.mean(hits[present] / sizes[present]))


def paired_gain(
    pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray, n_classes: int, *, floor: bool = True
) -> tuple[float, float]:
    """Balanced-accuracy gain of a over b on the same samples, and its standard error.

    Args:
        pred_a: (N,) predictions of a.
        pred_b: (N,) predictions of b.
        y: (N,) labels.
        n_classes: C.
        floor: apply the per-class floor below (False: the plain sample variance, as
            :func:`~dlsa.selection.multiplicity.gain_covariance` computes it).

    Returns:
        ``(gain, se)`` with ``gain = (1/C') sum_c mean_{i in c} d_i`` for
        ``d_i = hit_a(i) - hit_b(i)`` over the C' classes present, and
        ``se = sqrt(sum_c max(var_c(d) / n_c, f_c)) / C'`` (sample variance within each
        class), floored per class at ``f_c``, the variance of the mean of the class's
        differences with one pseudo-pair (+1, -1) added: ``f_c = (sum d^2 + 2 -
        (sum d)^2 / (n_c + 2)) / ((n_c + 1)(n_c + 2))``. Without discordant samples a class
        of 6 gets ``f_c = 2 / 56``, as if it might still hide a loss; a class of 1,000,
        ``2e-6``.

    Example:
        >>> y = np.array([0, 0, 1, 1])
        >>> g, se = paired_gain(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), y, 2)
        >>> g, round(se, 3)
        (0.5, 0.354)
    """
    d = (pred_a == y).astype(np.float64) - (pred_b == y).astype(np.float64)
    sizes = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = sizes > 0
    total = np.bincount(y, weights=d, minlength=n_classes)[present]
    sq = np.bincount(y, weights=d * d, minlength=n_classes)[present]
    n = sizes[present]
    mean = total / n
    var = np.where(n > 1, (sq - n * mean**2) / np.maximum(n - 1, 1), 0.0)
    # Floor: the variance of the class's differences with one more discordant pair each
    # way (+1, -1), so that a rare class without a discordant sample never reads as a
    # class whose gain is known exactly.
    var_mean = np.maximum(var, 0.0) / n
    if floor:
        var_mean = np.maximum(var_mean, (sq + 2.0 - total**2 / (n + 2.0)) / (n + 1.0) / (n + 2.0))
    c = float(present.sum())
    return float(mean.sum() / c), float(np.sqrt(np.sum(var_mean)) / c)


def rarer_half(y: np.ndarray, n_classes: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Mask (N,) of the samples whose class is in the rarer half of the classes present
    in ``y`` (N,) (``ceil(C' / 2)`` classes, ties by class index), rarer by ``counts``
    (C,) (the training counts, when ``y`` is a validation set), else by their count in
    ``y``.

    Example:
        >>> rarer_half(np.array([0, 0, 0, 1, 2, 2]), 3).tolist()
        [False, False, False, True, True, True]
        >>> rarer_half(np.array([0, 1, 2]), 3, counts=np.array([5, 90, 1])).tolist()
        [True, False, True]
    """
    in_y = np.bincount(y, minlength=n_classes)
    by = in_y if counts is None else np.asarray(counts)
    return rarer_classes(by, present=in_y > 0)[y]
