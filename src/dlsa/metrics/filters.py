"""What the flow filters do: head-tail separation of the samples a filter routes
(Fig. 7) and the sizes and purity of its clusters (Fig. 5, 6)."""

from __future__ import annotations

import numpy as np

from dlsa.metrics._checks import _counts, _in_range, _labels, _same_length

HEAD_THRESHOLD = 50
"""A class with more training samples than this is a head class, the rest are tail
(head-tail separation of the flow filters, Fig. 7)."""


def head_tail_separation(
    selected: np.ndarray,
    target: np.ndarray,
    train_counts: np.ndarray,
    head_threshold: int = HEAD_THRESHOLD,
) -> dict[str, float | int | None]:
    """Head-tail separation accuracy of one flow filter (Fig. 7).

    A head class has more than ``head_threshold`` training samples, the rest are tail.
    The filter's accuracy is the share of tail samples among those it sends to its
    cluster-aided classifier; compare it with ``tail_share_input``, the share a random
    filter would reach.

    Args:
        selected: boolean mask of shape (N,), the samples the filter selected, out of
            the N samples that reached it.
        target: true labels of those samples, shape (N,).
        train_counts: training samples per class, shape (C,).
        head_threshold: a class with more training samples than this is head.

    Returns:
        ``accuracy`` (= ``tail_share_selected``; ``None`` when nothing is selected),
        ``tail_share_selected``, ``tail_share_input``, ``n_selected``, ``n_input``.

    Raises:
        ValueError: on bad shapes, a non-boolean ``selected`` or labels out of range.

    Example:
        >>> r = head_tail_separation(
        ...     np.array([True, True, False, False]), np.array([1, 1, 0, 1]), np.array([90, 10])
        ... )
        >>> r["accuracy"], r["tail_share_input"]
        (1.0, 0.75)
    """
    selected = np.asarray(selected)
    target = _labels(target, "target")
    if selected.dtype != np.bool_:
        raise ValueError(f"selected must be a boolean mask, got dtype {selected.dtype}")
    if selected.shape != target.shape:
        raise ValueError(
            f"selected must have the shape of target {target.shape}, got {selected.shape}"
        )
    counts = _counts(train_counts)
    _in_range(target, "target", counts.shape[0])
    is_tail = counts[target] <= head_threshold
    n_selected = int(selected.sum())
    share = float(is_tail[selected].mean()) if n_selected else None
    return {
        "accuracy": share,
        "tail_share_selected": share,
        "tail_share_input": float(is_tail.mean()),
        "n_selected": n_selected,
        "n_input": int(target.shape[0]),
    }


def good_clusters(
    sizes: np.ndarray, purity: np.ndarray, min_purity: float = 0.7, min_size: int = 10
) -> int:
    """Number of clusters purer than ``min_purity`` and larger than ``min_size``.

    The flow filter's epoch selection (on training statistics only) counts these clusters.

    Args:
        sizes: samples per cluster, shape (K,).
        purity: purity per cluster, shape (K,); NaN (empty cluster) never counts.
        min_purity: purity a cluster must exceed.
        min_size: size a cluster must exceed.

    Returns:
        The count of good clusters.

    Example:
        >>> good_clusters(np.array([20, 20, 5]), np.array([0.9, 0.5, 1.0]))
        1
    """
    sizes, purity = np.asarray(sizes), np.asarray(purity, dtype=np.float64)
    if sizes.ndim != 1 or sizes.shape != purity.shape:
        raise ValueError(
            f"sizes and purity must be 1-D of equal shape, got {sizes.shape} and {purity.shape}"
        )
    with np.errstate(invalid="ignore"):
        return int(np.sum((purity > min_purity) & (sizes > min_size)))


def histogram_purity(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes (K,) and purities (K,) (NaN for empty clusters) of a cluster-by-class count
    table (K, C); the purity of a cluster is the share of its largest class.

    Example:
        >>> sizes, purity = histogram_purity(np.array([[2, 1], [0, 0]]))
        >>> sizes.tolist(), purity.round(2).tolist()
        ([3, 0], [0.67, nan])
    """
    counts = np.asarray(counts)
    sizes = counts.sum(axis=1)
    largest = counts.max(axis=1) if counts.shape[1] else np.zeros_like(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(sizes > 0, largest / np.maximum(sizes, 1), np.nan)
    return sizes, purity


def cluster_statistics(
    clusters: np.ndarray,
    target: np.ndarray,
    n_clusters: int,
    *,
    min_purity: float = 0.7,
    min_size: int = 10,
) -> dict[str, np.ndarray | int | float]:
    """Sizes and purities of the clusters of a flow filter (Fig. 5, 6).

    The purity of a cluster is the share of its largest class.

    Args:
        clusters: cluster index of each sample, shape (N,), in ``0 .. K-1``.
        target: true labels, shape (N,), non-negative.
        n_clusters: number of clusters K.
        min_purity: bar of :func:`good_clusters`.
        min_size: bar of :func:`good_clusters`.

    Returns:
        ``sizes`` (K,) int64, ``purity`` (K,) float64 (NaN for empty clusters),
        ``n_nonempty``, ``n_good`` (:func:`good_clusters`) and ``largest_share`` (share
        of the samples held by the largest cluster; near 1 means collapse).

    Raises:
        ValueError: on bad shapes or indices out of range.

    Example:
        >>> s = cluster_statistics(np.array([0, 0, 0, 2]), np.array([1, 1, 0, 3]), 3)
        >>> s["sizes"].tolist(), s["purity"].round(2).tolist()
        ([3, 0, 1], [0.67, nan, 1.0])
    """
    clusters, target = _labels(clusters, "clusters"), _labels(target, "target")
    _same_length(clusters, "clusters", target, "target")
    _in_range(clusters, "clusters", n_clusters)
    n_labels = int(target.max()) + 1
    _in_range(target, "target", n_labels)
    sizes = np.bincount(clusters, minlength=n_clusters)
    # Sparse (cluster, class) counts: a dense K x C table is too big for iNat's 8142 classes.
    keys, counts = np.unique(clusters * n_labels + target, return_counts=True)
    largest = np.zeros(n_clusters, dtype=np.int64)
    np.maximum.at(largest, keys // n_labels, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(sizes > 0, largest / sizes, np.nan)
    return {
        "sizes": sizes,
        "purity": purity,
        "n_nonempty": int(np.count_nonzero(sizes)),
        "n_good": good_clusters(sizes, purity, min_purity, min_size),
        "largest_share": float(sizes.max() / sizes.sum()),
    }
