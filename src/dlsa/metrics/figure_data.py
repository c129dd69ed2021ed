"""The data behind the paper's figures: classes by training frequency, binned
confusion matrices (Fig. 1) and the t-SNE of the cascade (Fig. 8)."""

from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from threadpoolctl import threadpool_limits

from dlsa.metrics._checks import _pair
from dlsa.metrics.accuracy import frequency_order


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
