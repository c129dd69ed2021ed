"""Accuracy of long-tailed recognition: overall, per class, many/medium/few-shot,
the rarer half of the classes, MCC and NMI (Sec. 4 of the paper)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import matthews_corrcoef, normalized_mutual_info_score

from dlsa.metrics._checks import _counts, _pair

SHOT_GROUPS: tuple[str, str, str] = ("many", "medium", "few")
"""Names of the shot groups, from most to least frequent."""


def shot_groups(train_counts: np.ndarray, many: int = 100, few: int = 20) -> np.ndarray:
    """Shot group of each class from its number of training samples.

    ``"many"``: more than ``many`` samples; ``"few"``: fewer than ``few``; ``"medium"``:
    the rest (``few .. many`` inclusive), the split of Liu et al. (2019) used in Sec. 4.

    Args:
        train_counts: training samples per class, shape (C,).
        many: a class with more samples than this is many-shot.
        few: a class with fewer samples than this is few-shot.

    Returns:
        Group names of shape (C,), each one of ``"many"``, ``"medium"``, ``"few"``.

    Raises:
        ValueError: on a bad ``train_counts`` shape or when ``many <= few``.

    Example:
        >>> shot_groups(np.array([500, 100, 20, 19])).tolist()
        ['many', 'medium', 'medium', 'few']
    """
    counts = _counts(train_counts)
    if many <= few:
        raise ValueError(f"many must be greater than few, got many={many}, few={few}")
    groups = np.full(counts.shape, "medium", dtype="<U6")
    groups[counts > many] = "many"
    groups[counts < few] = "few"
    return groups


def per_class_accuracy(preds: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Top-1 accuracy of each class (recall), NaN for classes absent from ``target``.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).
        n_classes: number of classes C.

    Returns:
        Accuracies in [0, 1] of shape (C,), float64.

    Raises:
        ValueError: on bad shapes or labels outside ``0 .. C-1``.

    Example:
        >>> per_class_accuracy(np.array([0, 1, 1]), np.array([0, 0, 1]), 3).tolist()
        [0.5, 1.0, nan]
    """
    preds, target = _pair(preds, target, n_classes)
    correct = np.bincount(target, weights=preds == target, minlength=n_classes)
    total = np.bincount(target, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / total, np.nan)


def shot_accuracy(
    preds: np.ndarray,
    target: np.ndarray,
    train_counts: np.ndarray,
    many: int = 100,
    few: int = 20,
) -> dict[str, float | None]:
    """Overall and many/medium/few-shot top-1 accuracy.

    Each group's accuracy is the mean over the test samples whose true class is in the
    group (sample level, as in the long-tail literature, whose test sets are balanced).
    A group without any test sample (e.g. no class in it) is ``None``, never 0.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).
        train_counts: training samples per class, shape (C,).
        many: threshold of :func:`shot_groups`.
        few: threshold of :func:`shot_groups`.

    Returns:
        ``{"overall", "many", "medium", "few"}`` with accuracies in [0, 1] or ``None``.

    Raises:
        ValueError: on bad shapes, labels outside ``0 .. C-1`` or ``many <= few``.

    Example:
        >>> shot_accuracy(np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([200, 50]))
        {'overall': 0.6666666666666666, 'many': 1.0, 'medium': 0.5, 'few': None}
    """
    groups = shot_groups(train_counts, many, few)
    preds, target = _pair(preds, target, groups.shape[0])
    correct = preds == target
    sample_groups = groups[target]
    result: dict[str, float | None] = {"overall": float(correct.mean())}
    for name in SHOT_GROUPS:
        mask = sample_groups == name
        result[name] = float(correct[mask].mean()) if mask.any() else None
    return result


def mcc(preds: np.ndarray, target: np.ndarray) -> float:
    """Matthews correlation coefficient (multi-class), via scikit-learn.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).

    Returns:
        MCC in [-1, 1].

    Example:
        >>> mcc(np.array([0, 1, 2]), np.array([0, 1, 2]))
        1.0
    """
    preds, target = _pair(preds, target)
    return float(matthews_corrcoef(target, preds))


def nmi(preds: np.ndarray, target: np.ndarray) -> float:
    """Normalised mutual information between predictions and targets, via scikit-learn.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).

    Returns:
        NMI in [0, 1] (arithmetic normalisation, scikit-learn's default).

    Example:
        >>> nmi(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
        1.0
    """
    preds, target = _pair(preds, target)
    return float(normalized_mutual_info_score(target, preds))


def frequency_order(train_counts: np.ndarray) -> np.ndarray:
    """Class indices sorted by training frequency, descending, ties by class index.

    Args:
        train_counts: training samples per class, shape (C,).

    Returns:
        A permutation of ``0 .. C-1``, shape (C,).

    Example:
        >>> frequency_order(np.array([5, 50, 5, 500])).tolist()
        [3, 1, 0, 2]
    """
    counts = _counts(train_counts)
    return np.argsort(-counts, kind="stable")


def tail_half_accuracy(
    preds: np.ndarray, target: np.ndarray, train_counts: np.ndarray
) -> float | None:
    """Top-1 accuracy over the test samples of the rarer half of the classes.

    The ``C // 2`` classes with the fewest training samples (ties: the higher class
    index counts as rarer, as in :func:`frequency_order`) form the tail half; for sets
    whose rarest classes have more than 20 samples, where "few" is empty, this is the
    tail measure. ``None`` if no test sample belongs to it.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).
        train_counts: training samples per class, shape (C,).

    Example:
        >>> tail_half_accuracy(np.array([0, 1, 0, 3]), np.array([0, 1, 2, 3]),
        ...                    np.array([500, 400, 60, 50]))
        0.5
    """
    order = frequency_order(train_counts)
    preds, target = _pair(preds, target, order.shape[0])
    tail = np.zeros(order.shape[0], dtype=bool)
    tail[order[order.shape[0] - order.shape[0] // 2 :]] = True
    mask = tail[target]
    return float((preds[mask] == target[mask]).mean()) if mask.any() else None


def classification_report(
    preds: np.ndarray,
    target: np.ndarray,
    train_counts: np.ndarray,
    *,
    many: int = 100,
    few: int = 20,
) -> dict[str, float | None]:
    """All headline metrics of the paper's tables in one dict.

    Args:
        preds: predicted labels, shape (N,).
        target: true labels, shape (N,).
        train_counts: training samples per class, shape (C,).
        many: threshold of :func:`shot_groups`.
        few: threshold of :func:`shot_groups`.

    Returns:
        ``overall``, ``many``, ``medium``, ``few`` (accuracies in [0, 1], ``None`` for an
        empty group; see :func:`shot_accuracy`), ``mcc``, ``nmi`` and ``tail_half``
        (:func:`tail_half_accuracy`).

    Example:
        >>> r = classification_report(np.array([0, 1]), np.array([0, 1]), np.array([200, 5]))
        >>> r["overall"], r["medium"], r["mcc"]
        (1.0, None, 1.0)
    """
    report = shot_accuracy(preds, target, train_counts, many, few)
    report["mcc"] = mcc(preds, target)
    report["nmi"] = nmi(preds, target)
    report["tail_half"] = tail_half_accuracy(preds, target, train_counts)
    return report
