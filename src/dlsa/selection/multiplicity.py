"""Departures judged over all candidates at once: the joint distribution of the paired
gains of m candidates over the reference, and the one-sided max-t threshold that bounds
the chance that *any* candidate that is no better than the reference clears it.

With m candidates each tested at "2 standard errors", the chance that at least one clears
the bar by luck grows with m (about 1 - 0.977^m for independent candidates: 32% at
m = 17). The max-t threshold is the ``level`` quantile of ``max_j Z_j`` for
``Z ~ N(0, R)``, R the correlation matrix of the candidates' gains; a candidate whose
gain exceeds that many standard errors is a departure whose family-wise false-departure
rate is ``1 - level`` (asymptotically; Hothorn, Bretz & Westfall 2008). Correlated
candidates (tau variants of one training) cost less than independent ones.

The gains are the paired balanced-accuracy gains of :func:`dlsa.selection.paired.paired_gain`;
their covariance treats the out-of-fold samples of each class as independent draws:
``Cov(g_j, g_k) = (1/C'^2) sum_c cov_c(d_j, d_k) / n_c`` with ``d_j = hit_j - hit_ref``.

References:
    Hothorn, Bretz & Westfall, "Simultaneous Inference in General Parametric Models",
    Biometrical Journal 50(3), 2008.
"""

from __future__ import annotations

import numpy as np


def gain_covariance(
    preds: np.ndarray, ref: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paired balanced-accuracy gains (m,) of m candidates over a reference and their
    covariance (m, m).

    Args:
        preds: (m, N) predictions of the candidates.
        ref: (N,) predictions of the reference.
        y: (N,) labels.
        n_classes: C.

    Example:
        >>> y = np.array([0, 0, 1, 1])
        >>> g, cov = gain_covariance(np.array([[0, 0, 1, 1]]), np.array([0, 1, 1, 0]), y, 2)
        >>> g.tolist(), round(float(np.sqrt(cov[0, 0])), 3)
        ([0.5], 0.354)
    """
    d = (preds == y).astype(np.float64) - (ref == y).astype(np.float64)  # (m, N)
    sizes = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = np.flatnonzero(sizes)
    n = sizes[present]
    m = d.shape[0]
    sums = np.stack([np.bincount(y, weights=row, minlength=n_classes) for row in d])[:, present]
    means = sums / n  # (m, C')
    cross = np.empty((m, m, present.size))
    for j in range(m):  # one (m, N) product at a time, never (m, m, N)
        prod = d[j] * d
        for k in range(m):
            cross[j, k] = np.bincount(y, weights=prod[k], minlength=n_classes)[present]
    centred = cross - n * means[:, None, :] * means[None, :, :]
    cov_c = np.where(n > 1, centred / np.maximum(n - 1, 1), 0.0)  # (m, m, C')
    c = float(present.size)
    return means.sum(axis=1) / c, (cov_c / n).sum(axis=2) / c**2


def nested_gain_correlation(
    preds: np.ndarray, seen: np.ndarray, ref: np.ndarray, y: np.ndarray, n_classes: int
) -> np.ndarray:
    """Correlation (m, m) of the paired gains of m candidates that predicted nested sets
    of samples (those dropped after a fold predicted that fold's samples only): each
    pair's correlation is estimated on the samples both predicted. The diagonal is 1, or
    0 for a candidate whose gain has no variance on its own samples (then
    :func:`max_t_threshold`, which takes it as a covariance, leaves it out).

    Args:
        preds: (m, N) predictions (any value where not seen).
        seen: (m, N) True where a candidate predicted; the rows are nested sets.
        ref: (N,) predictions of the reference (every sample).
        y: (N,) labels.
        n_classes: C.

    Raises:
        ValueError: if the sets are not nested.
    """
    sizes = seen.sum(axis=1)
    corr = np.zeros((len(preds), len(preds)))
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes >= size)
        rows = seen[np.flatnonzero(sizes == size)[0]]
        if not seen[np.ix_(members, rows)].all():
            raise ValueError("the candidates' predicted samples are not nested sets")
        _, cov = gain_covariance(preds[np.ix_(members, rows)], ref[rows], y[rows], n_classes)
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        scale = np.outer(sd, sd)
        level = np.divide(cov, scale, out=np.zeros_like(cov), where=scale > 0)
        pair = np.minimum.outer(sizes[members], sizes[members]) == size
        block = corr[np.ix_(members, members)]
        block[pair] = level[pair]
        corr[np.ix_(members, members)] = block
    return corr


def max_t_threshold(
    cov: np.ndarray, level: float = 0.95, n_draws: int = 20000, seed: int = 0
) -> float:
    """The ``level`` quantile of ``max_j Z_j / sd_j`` for ``Z ~ N(0, cov)`` (one-sided):
    the number of standard errors a gain must exceed for the family of m candidates.
    Candidates of zero variance (identical to the reference) are left out; with one
    candidate it is the normal quantile.

    Example:
        >>> round(max_t_threshold(np.eye(1)), 1), round(max_t_threshold(np.eye(17)), 1)
        (1.6, 2.7)
    """
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    keep = sd > 0
    if not keep.any():
        return float("inf")
    corr = cov[np.ix_(keep, keep)] / np.outer(sd[keep], sd[keep])
    vals, vecs = np.linalg.eigh(corr)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    draws = np.random.default_rng(seed).standard_normal((n_draws, root.shape[0])) @ root.T
    return float(np.quantile(draws.max(axis=1), level))
