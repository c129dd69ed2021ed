"""The t-SNE of the cascade (Fig. 8): which rows are embedded and their 2-D embedding,
the figure's preparation (:mod:`dlsa.analysis.figures` draws it)."""

from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits


def tsne_rows(n_rows: int, max_samples: int, random_state: int) -> np.ndarray:
    """The sorted rows (M,), ``M = min(n_rows, max_samples)``, that :func:`tsne_embedding`
    embeds out of ``n_rows``: all of them, or ``max_samples`` drawn without replacement
    by ``np.random.default_rng(random_state)``.

    Example:
        >>> tsne_rows(5, 10, random_state=0).tolist()
        [0, 1, 2, 3, 4]
        >>> tsne_rows(100, 3, random_state=0).shape
        (3,)
    """
    if n_rows <= max_samples:
        return np.arange(n_rows)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_rows, size=max_samples, replace=False))


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
    by ``np.random.default_rng(random_state)`` (:func:`tsne_rows`); the same seed gives
    the same subsample and embedding.

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
    indices = tsne_rows(X.shape[0], max_samples, random_state)
    if not 0 < perplexity < indices.shape[0]:
        raise ValueError(
            f"perplexity must lie in (0, {indices.shape[0]}) for {indices.shape[0]} samples, "
            f"got {perplexity}"
        )
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        embedding = tsne.fit_transform(X[indices])
    return embedding.astype(np.float64), indices
