"""Calibration of predicted probabilities: expected calibration error (ECE), negative
log-likelihood (NLL) and Brier score, whole or accumulated chunk by chunk.

With confidence ``conf_i = max_c p_ic`` and correctness ``hit_i``, the samples are put in
``B`` equal-width confidence bins; ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` (Guo et al.,
2017, Eq. 3). ``NLL = -(1/N) sum_i log p_{i, y_i}`` (probabilities clipped at 1e-12) and
``Brier = (1/N) sum_i sum_c (p_ic - 1[c = y_i])^2`` (the multi-class form, in [0, 2]).

References:
    Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks", ICML 2017.
    https://arxiv.org/abs/1706.04599
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_BINS = 15
"""Confidence bins of the ECE and the reliability diagram (Guo et al. use 15)."""
_TINY = 1e-12


class CalibrationCounts:
    """Sums behind ECE, NLL and Brier, accumulated with :meth:`update`.

    Example:
        >>> cal = CalibrationCounts()
        >>> cal.update(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]))
        >>> r = cal.compute()
        >>> round(r["ece"], 3), round(r["brier"], 3)
        (0.35, 0.37)
    """

    def __init__(self, n_bins: int = N_BINS) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.count = np.zeros(n_bins, dtype=np.int64)
        self.confidence = np.zeros(n_bins)
        self.hits = np.zeros(n_bins)
        self.nll = 0.0
        self.brier = 0.0

    def update(self, proba: np.ndarray, target: np.ndarray) -> None:
        """Add probabilities (N, C) (rows summing to 1) of samples with classes (N,)."""
        proba = np.asarray(proba, dtype=np.float64)
        target = np.asarray(target)
        if proba.ndim != 2 or proba.shape[0] != target.shape[0]:
            raise ValueError(f"proba must be (N, C) for N = {len(target)}, got {proba.shape}")
        rows = np.arange(len(target))
        conf = proba.max(axis=1)
        hit = (proba.argmax(axis=1) == target).astype(np.float64)
        bins = np.minimum((conf * self.n_bins).astype(np.int64), self.n_bins - 1)
        self.count += np.bincount(bins, minlength=self.n_bins)
        self.confidence += np.bincount(bins, weights=conf, minlength=self.n_bins)
        self.hits += np.bincount(bins, weights=hit, minlength=self.n_bins)
        p_true = proba[rows, target]
        self.nll += float(-np.log(np.maximum(p_true, _TINY)).sum())
        self.brier += float(((proba**2).sum(axis=1) - 2.0 * p_true + 1.0).sum())

    def compute(self) -> dict[str, Any]:
        """``ece``, ``nll``, ``brier`` (None without samples) and ``bins``: per
        non-empty bin its ``lower`` and ``upper`` edge, ``n``, mean ``confidence`` and
        ``accuracy`` (the reliability diagram's points)."""
        n = int(self.count.sum())
        if n == 0:
            return {"ece": None, "nll": None, "brier": None, "bins": []}
        used = self.count > 0
        conf = self.confidence[used] / self.count[used]
        acc = self.hits[used] / self.count[used]
        ece = float(np.sum(self.count[used] / n * np.abs(acc - conf)))
        edges = np.flatnonzero(used)
        bins = [
            {"lower": b / self.n_bins, "upper": (b + 1) / self.n_bins, "n": int(self.count[b]),
             "confidence": float(c), "accuracy": float(a)}
            for b, c, a in zip(edges, conf, acc, strict=True)
        ]  # fmt: skip
        return {"ece": ece, "nll": self.nll / n, "brier": self.brier / n, "bins": bins}


def calibration_report(
    proba: np.ndarray, target: np.ndarray, n_bins: int = N_BINS
) -> dict[str, Any]:
    """ECE, NLL, Brier score and reliability bins of probabilities (N, C) for classes
    (N,) (see :class:`CalibrationCounts`)."""
    counts = CalibrationCounts(n_bins)
    counts.update(proba, target)
    return counts.compute()
