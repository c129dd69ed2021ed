"""Evaluation metrics of long-tailed recognition and of DLSA's flow filters.

Pure NumPy / scikit-learn functions over integer labels ``0 .. C-1`` (the caller maps
labels). Inputs are always called ``preds, target``. Nothing here plots, prints or
accepts a model.

References:
    Xu, Y., Li, Y.-L., Li, J., Lu, C. "Constructing Balance from Imbalance for
    Long-tailed Image Recognition", ECCV 2022 (https://arxiv.org/abs/2208.02567):
    many/medium/few-shot accuracy and MCC/NMI (Sec. 4), binned confusion matrices
    (Fig. 1), cluster sizes and purity (Fig. 5, 6), head-tail separation (Fig. 7),
    t-SNE of the cascade (Fig. 8).
"""

from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import matthews_corrcoef, normalized_mutual_info_score
from threadpoolctl import threadpool_limits

SHOT_GROUPS: tuple[str, str, str] = ("many", "medium", "few")
HEAD_THRESHOLD = 50
"""A class with more training samples than this is a head class, the rest are tail
(head-tail separation of the flow filters, Fig. 7)."""
"""Names of the shot groups, from most to least frequent."""


def _labels(x: np.ndarray, name: str) -> np.ndarray:
    """Check that ``x`` is a non-empty 1-D integer array and return it as int64."""
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x.astype(np.int64, copy=False)


def _same_length(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same length, got shapes {a.shape} and {b.shape}"
        )


def _in_range(x: np.ndarray, name: str, n: int) -> None:
    if x.min() < 0 or x.max() >= n:
        raise ValueError(f"{name} must lie in [0, {n - 1}], got values in [{x.min()}, {x.max()}]")


def _pair(
    preds: np.ndarray, target: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``preds`` and ``target`` (1-D, integer, same length, in range)."""
    preds, target = _labels(preds, "preds"), _labels(target, "target")
    _same_length(preds, "preds", target, "target")
    if n_classes is not None:
        _in_range(preds, "preds", n_classes)
        _in_range(target, "target", n_classes)
    return preds, target


def _counts(train_counts: np.ndarray) -> np.ndarray:
    """Check that ``train_counts`` is a non-empty 1-D array of non-negative numbers."""
    counts = np.asarray(train_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"train_counts must be a non-empty 1-D array, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("train_counts must be non-negative")
    return counts


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


def tsne_embedding(
    X: np.ndarray,
    *,
    random_state: int,
    perplexity: float = 30.0,
    max_samples: int = 5000,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE embedding of features, on a deterministic subsample (Fig. 8).

    When N exceeds ``max_samples``, ``max_samples`` rows are drawn without replacement
    by ``np.random.default_rng(random_state)``; the same seed gives the same subsample
    and embedding.

    Args:
        X: features of shape (N, D).
        random_state: seed of the subsample and of ``sklearn.manifold.TSNE``.
        perplexity: t-SNE perplexity; must be below the number of embedded samples.
        max_samples: most samples embedded (t-SNE is quadratic in time).
        n_threads: OpenMP threads of scikit-learn's t-SNE gradient; ``None`` keeps its
            default (all cores). On a busy shared machine, 1 avoids OpenMP barriers
            stalling for seconds while a thread waits to be scheduled.

    Returns:
        ``(embedding, indices)``: embedding of shape (M, 2) and the sorted rows of ``X``
        it embeds, shape (M,), with ``M = min(N, max_samples)``.

    Raises:
        ValueError: on a non 2-D ``X``, ``max_samples < 1`` or a too large perplexity.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(30, 4))
        >>> emb, idx = tsne_embedding(
        ...     X, random_state=0, perplexity=5.0, max_samples=20, n_threads=1
        ... )
        >>> emb.shape, idx.shape
        ((20, 2), (20,))
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, D), got shape {X.shape}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    indices = np.arange(X.shape[0])
    if X.shape[0] > max_samples:
        rng = np.random.default_rng(random_state)
        indices = np.sort(rng.choice(X.shape[0], size=max_samples, replace=False))
    if not 0 < perplexity < indices.shape[0]:
        raise ValueError(
            f"perplexity must lie in (0, {indices.shape[0]}) for {indices.shape[0]} samples, "
            f"got {perplexity}"
        )
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        embedding = tsne.fit_transform(X[indices])
    return embedding.astype(np.float64), indices
