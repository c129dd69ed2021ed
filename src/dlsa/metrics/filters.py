"""What the flow filters do: head-tail separation of the samples a filter routes
(Fig. 7; one formula, from counts or from arrays) and the sizes and purity of its
clusters (Fig. 5, 6)."""

from __future__ import annotations

import numpy as np

from dlsa.metrics._checks import _counts, _in_range, _labels, _same_length

HEAD_THRESHOLD = 50
"""A class with more training samples than this is a head class, the rest are tail
(head-tail separation of the flow filters, Fig. 7)."""


def separation_from_counts(
    n_routed: int, tail_routed: int, n_input: int, tail_input: int
) -> dict[str, float | int | None]:
    """Head-tail separation accuracy of one flow filter from counts (Fig. 7).

    The filter's accuracy is the share of tail samples among those it routes to its
    cluster-aided classifier; compare it with ``tail_share_input``, the share a random
    filter would reach. Counts add up over chunks of samples, so accumulated counts
    (:class:`dlsa.metrics.evaluation_counts.EvaluationCounts`) and arrays in memory
    (:func:`head_tail_separation`) give the same numbers.

    Args:
        n_routed: samples the filter routed, out of the ``n_input`` that reached it.
        tail_routed: tail-class samples among the routed ones.
        n_input: samples that reached the filter.
        tail_input: tail-class samples among those that reached it.

    Returns:
        ``accuracy`` (= ``tail_share_routed``; ``None`` when nothing is routed),
        ``tail_share_routed``, ``tail_share_input`` (``None`` when nothing reached the
        filter), ``n_routed``, ``n_input``.

    Example:
        >>> s = separation_from_counts(n_routed=2, tail_routed=2, n_input=4, tail_input=3)
        >>> s["accuracy"], s["tail_share_routed"], s["tail_share_input"], s["n_routed"]
        (1.0, 1.0, 0.75, 2)
    """
    share = tail_routed / n_routed if n_routed else None
    return {
        "accuracy": share,
        "tail_share_routed": share,
        "tail_share_input": tail_input / n_input if n_input else None,
        "n_routed": n_routed,
        "n_input": n_input,
    }


def head_tail_separation(
    routed: np.ndarray,
    target: np.ndarray,
    train_counts: np.ndarray,
    head_threshold: int = HEAD_THRESHOLD,
) -> dict[str, float | int | None]:
    """Head-tail separation accuracy of one flow filter (Fig. 7) on samples in memory:
    :func:`separation_from_counts` of their counts.

    A head class has more than ``head_threshold`` training samples, the rest are tail.

    Args:
        routed: boolean mask of shape (N,), the samples the filter routed to its
            cluster-aided classifier, out of the N samples that reached it.
        target: true labels of those samples, shape (N,).
        train_counts: training samples per class, shape (C,).
        head_threshold: a class with more training samples than this is head.

    Returns:
        :func:`separation_from_counts`'s ``accuracy``, ``tail_share_routed``,
        ``tail_share_input``, ``n_routed``, ``n_input``.

    Raises:
        ValueError: on bad shapes, a non-boolean ``routed`` or labels out of range.

    Example:
        >>> r = head_tail_separation(
        ...     np.array([True, True, False, False]), np.array([1, 1, 0, 1]), np.array([90, 10])
        ... )
        >>> r["accuracy"], r["tail_share_input"]
        (1.0, 0.75)
    """
    routed = np.asarray(routed)
    target = _labels(target, "target")
    if routed.dtype != np.bool_:
        raise ValueError(f"routed must be a boolean mask, got dtype {routed.dtype}")
    if routed.shape != target.shape:
        raise ValueError(
            f"routed must have the shape of target {target.shape}, got {routed.shape}"
        )
    counts = _counts(train_counts)
    _in_range(target, "target", counts.shape[0])
    is_tail = counts[target] <= head_threshold
    return separation_from_counts(
        n_routed=int(routed.sum()),
        tail_routed=int(is_tail[routed].sum()),
        n_input=int(target.shape[0]),
        tail_input=int(is_tail.sum()),
    )


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
