"""Metrics from a confusion matrix, so predictions can be counted chunk by chunk.

A (C, C) matrix of counts (rows: true class, columns: predicted class) holds everything
the headline metrics need: accuracies are sums over its diagonal, and MCC and NMI are
functions of it. The formulas follow scikit-learn's ``matthews_corrcoef`` and
``normalized_mutual_info_score`` (arithmetic normalisation) step by step, in the same
order of floating-point operations, so the results equal theirs on the same samples.
"""

from __future__ import annotations

from math import log

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from dlsa.metrics._checks import _counts, _pair
from dlsa.metrics.accuracy import SHOT_GROUPS, frequency_order, shot_groups


def confusion_counts(preds: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C), int64: entry (i, j) is the number of samples of class i predicted j.

    Args:
        preds: predicted labels, shape (N,), in ``0 .. C-1``.
        target: true labels, shape (N,), in ``0 .. C-1``.
        n_classes: number of classes C.

    Example:
        >>> confusion_counts(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    preds, target = _pair(preds, target, n_classes)
    flat = np.bincount(target * n_classes + preds, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def mcc_from_confusion(matrix: np.ndarray) -> float:
    """Multi-class Matthews correlation coefficient of a (C, C) count matrix.

    Equals ``sklearn.metrics.matthews_corrcoef`` on the samples counted; 0.0 when the
    predictions or the targets hold one class only.

    Example:
        >>> mcc_from_confusion(np.array([[2, 0], [0, 3]]))
        1.0
    """
    t_sum = matrix.sum(axis=1, dtype=np.float64)
    p_sum = matrix.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(matrix, dtype=np.float64)
    n_samples = p_sum.sum()
    cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_ypyp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n_samples**2 - np.dot(t_sum, t_sum)
    denominator = cov_ypyp * cov_ytyt
    if denominator == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(denominator))


def nmi_from_confusion(matrix: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean of the entropies) of a (C, C)
    count matrix, between the true classes (rows) and the predictions (columns).

    Equals ``sklearn.metrics.normalized_mutual_info_score(target, preds)`` on the samples
    counted; classes that occur in neither are dropped, as scikit-learn never sees them.

    Example:
        >>> nmi_from_confusion(np.array([[0, 2], [2, 0]]))
        1.0
    """
    matrix = matrix[matrix.sum(axis=1) > 0][:, matrix.sum(axis=0) > 0]
    if matrix.shape[0] == matrix.shape[1] and matrix.shape[0] <= 1:
        return 1.0  # a single class predicted as a single class: a perfect match
    contingency = matrix.astype(np.float64)
    mi = _mutual_info(contingency)
    if mi == 0:
        return 0.0
    h_true = _entropy(contingency.sum(axis=1))
    h_pred = _entropy(contingency.sum(axis=0))
    return float(mi / np.mean([h_true, h_pred]))


def _mutual_info(contingency: np.ndarray) -> float:
    """Mutual information of a (R, K) float64 contingency table without empty rows or
    columns; scikit-learn's ``mutual_info_score`` on the same table."""
    pi, pj = contingency.sum(axis=1), contingency.sum(axis=0)
    if pi.size == 1 or pj.size == 1:
        return 0.0
    nzx, nzy = np.nonzero(contingency)
    nz_val = contingency[nzx, nzy]
    total = contingency.sum()
    outer = pi.take(nzx).astype(np.int64) * pj.take(nzy).astype(np.int64)
    log_outer = -np.log(outer) + log(pi.sum()) + log(pj.sum())
    share = nz_val / total
    mi = share * (np.log(nz_val) - log(total)) + share * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a labelling given its positive class counts (K,), float64."""
    if counts.size == 1:
        return 0.0
    total = np.sum(counts)
    return float(-np.sum((counts / total) * (np.log(counts) - log(total))))


def report_from_confusion(
    matrix: np.ndarray, train_counts: np.ndarray, *, many: int = 100, few: int = 20
) -> dict[str, float | None]:
    """:func:`dlsa.metrics.classification_report` from a (C, C) count matrix.

    Args:
        matrix: counts (C, C), rows true classes, columns predictions.
        train_counts: training samples per class, shape (C,).
        many: threshold of :func:`dlsa.metrics.shot_groups`.
        few: threshold of :func:`dlsa.metrics.shot_groups`.

    Returns:
        The same keys and values as ``classification_report`` on the counted samples.

    Example:
        >>> r = report_from_confusion(np.array([[1, 0], [0, 1]]), np.array([200, 5]))
        >>> r["overall"], r["medium"], r["mcc"]
        (1.0, None, 1.0)
    """
    counts = _counts(train_counts)
    if matrix.shape != (counts.shape[0], counts.shape[0]):
        raise ValueError(f"matrix must have shape (C, C) = {counts.shape * 2}, got {matrix.shape}")
    correct = np.diagonal(matrix).astype(np.int64)
    total = matrix.sum(axis=1).astype(np.int64)
    groups = shot_groups(counts, many, few)
    report: dict[str, float | None] = {"overall": _rate(correct, total, total >= 0)}
    for name in SHOT_GROUPS:
        report[name] = _rate(correct, total, groups == name)
    report["mcc"] = mcc_from_confusion(matrix)
    report["nmi"] = nmi_from_confusion(matrix)
    order = frequency_order(counts)
    tail = np.zeros(order.shape[0], dtype=bool)
    tail[order[order.shape[0] - order.shape[0] // 2 :]] = True
    report["tail_half"] = _rate(correct, total, tail)
    return report


def _rate(correct: np.ndarray, total: np.ndarray, classes: np.ndarray) -> float | None:
    """Share of correct samples among those of the classes selected by ``classes`` (C,)
    (a mean of booleans, as the sample-level metrics compute it); None if none."""
    n = int(total[classes].sum())
    return int(correct[classes].sum()) / n if n else None


def confusion_matrix_binned(
    preds: np.ndarray,
    target: np.ndarray,
    train_counts: np.ndarray,
    n_bins: int = 20,
    *,
    exclude_correct: bool = False,
) -> np.ndarray:
    """Confusion matrix over frequency bins of classes (Fig. 1).

    Classes are sorted by :func:`frequency_order` and split into ``B = min(n_bins, C)``
    contiguous bins (``np.array_split``); bin 0 holds the most frequent classes. Entry
    ``(i, j)`` is the share of the test samples of true bin ``i`` predicted in bin ``j``.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).
        train_counts: training samples per class, shape (C,).
        n_bins: number of bins (>= 1).
        exclude_correct: drop correctly classified samples from the counts (but not from
            the row totals), as Fig. 1 does, so entries are error rates.

    Returns:
        Row-normalised rates of shape (B, B), float64; rows of bins without test samples
        are NaN. Without ``exclude_correct`` each other row sums to 1.

    Raises:
        ValueError: on bad shapes, labels outside ``0 .. C-1`` or ``n_bins < 1``.

    Example:
        >>> confusion_matrix_binned(
        ...     np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), np.array([10, 5]), n_bins=2
        ... ).tolist()
        [[0.5, 0.5], [0.0, 1.0]]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    order = frequency_order(train_counts)
    preds, target = _pair(preds, target, order.shape[0])
    n_merged = min(n_bins, order.shape[0])
    sizes = [len(part) for part in np.array_split(order, n_merged)]
    bin_of_class = np.empty_like(order)
    bin_of_class[order] = np.repeat(np.arange(n_merged), sizes)
    # Binning before counting keeps memory at B x B instead of C x C.
    rows_total = np.bincount(bin_of_class[target], minlength=n_merged)
    keep = preds != target if exclude_correct else np.ones_like(target, dtype=bool)
    counts = _sk_confusion_matrix(
        bin_of_class[target[keep]], bin_of_class[preds[keep]], labels=np.arange(n_merged)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows_total[:, None] > 0, counts / rows_total[:, None], np.nan)


def binned_from_confusion(
    matrix: np.ndarray,
    train_counts: np.ndarray,
    n_bins: int = 20,
    *,
    exclude_correct: bool = False,
) -> np.ndarray:
    """:func:`confusion_matrix_binned` from a (C, C) count matrix.

    Returns:
        Row-normalised rates (B, B), ``B = min(n_bins, C)``; NaN rows for bins without
        samples.

    Example:
        >>> binned_from_confusion(np.array([[1, 1], [0, 2]]), np.array([10, 5]), 2).tolist()
        [[0.5, 0.5], [0.0, 1.0]]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    order = frequency_order(train_counts)
    n_merged = min(n_bins, order.shape[0])
    sizes = [len(part) for part in np.array_split(order, n_merged)]
    bin_of_class = np.empty_like(order)
    bin_of_class[order] = np.repeat(np.arange(n_merged), sizes)
    rows_total = np.bincount(bin_of_class, weights=matrix.sum(axis=1), minlength=n_merged)
    kept = matrix - np.diag(np.diagonal(matrix)) if exclude_correct else matrix
    binned = np.zeros((n_merged, n_merged), dtype=np.int64)
    np.add.at(binned, (bin_of_class[:, None], bin_of_class[None, :]), kept)
    rows_total = rows_total.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows_total[:, None] > 0, binned / rows_total[:, None], np.nan)
