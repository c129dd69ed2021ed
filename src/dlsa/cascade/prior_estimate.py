"""Estimating the deployment prior from unlabelled rows (label shift: ``p(x | y)`` as in
training, class frequencies unknown).

* **EM** (Saerens, Latinne & Decaestecker 2002): from posteriors ``q(y | x_i)`` under a
  reference prior ``pi_0``, iterate ``pi <- mean_i p_pi(y | x_i)`` with
  ``p_pi(y | x) ∝ q(y | x) pi(y) / pi_0(y)``; the fixed point is the maximum-likelihood
  prior. dlsa's reference frame is the balanced one (``pi_0`` uniform: the logits of
  every balanced base, and those of plain CE with ``log pi_train`` taken out), on
  calibrated posteriors when the model has a temperature.
* **BBSE** (Lipton, Wang & Smola, ICML 2018): from a held-out joint confusion matrix
  ``C[i, j] = P(y_hat = i, y = j)`` and the predicted-class frequencies ``mu`` of the
  deployment rows, solve ``C w = mu`` (least squares), clip ``w >= 0``; the prior is
  ``w * p_held(y)`` renormalised. Needs only the argmax, so no calibration.

Both are shrunk toward the training prior, as if :data:`SHRINK_PER_CLASS` pseudo-rows
per class had been drawn from it: ``(n pi_hat + m pi_train) / (n + m)`` with
``m = SHRINK_PER_CLASS * C``. With few rows the estimate stays near the training prior
(the only frequencies known of the deployment's source) instead of following the noise
of a handful of posteriors; at ``n = m`` (10 rows a class) the data weigh half.

References:
    Saerens, Latinne, Decaestecker, "Adjusting the outputs of a classifier to new a
    priori probabilities: a simple procedure", Neural Computation 14(1), 2002.
    Lipton, Wang, Smola, "Detecting and correcting for label shift with black box
    predictors", ICML 2018. https://arxiv.org/abs/1802.03916
"""

from __future__ import annotations

import numpy as np

from dlsa.errors import DLSAInputError

METHODS = {"estimate": "em", "estimate-bbse": "bbse"}
"""``--test-prior`` names of the estimators and their method."""

MIN_ROWS = 2
"""Fewest rows a prior is estimated on (one row has no frequencies, only a posterior)."""

SHRINK_PER_CLASS = 10
"""Pseudo-rows per class drawn from the training prior in the shrinkage."""

EM_TOL = 1e-6
"""EM stops when the L1 change of the prior falls below this..."""

EM_MAX_ITER = 1000
"""... or after this many iterations."""


def em_prior(
    posteriors: np.ndarray, tol: float = EM_TOL, max_iter: int = EM_MAX_ITER
) -> tuple[np.ndarray, int]:
    """The EM prior (C,) of posteriors (N, C) under the uniform prior, and the number of
    iterations run (``max_iter`` when it did not converge).

    Example:
        >>> q = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
        >>> em_prior(q)[0].round(2)  # more decided than the mean posterior (0.55, 0.45)
        array([0.64, 0.36])
    """
    q = np.asarray(posteriors, dtype=np.float64)
    q = q / q.sum(axis=1, keepdims=True)
    pi = np.full(q.shape[1], 1.0 / q.shape[1])
    for iteration in range(1, max_iter + 1):
        p = q * pi
        p /= np.maximum(p.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        new = p.mean(axis=0)
        new /= new.sum()
        change = float(np.abs(new - pi).sum())
        pi = new
        if change < tol:
            return pi, iteration
    return pi, max_iter


def confusion_counts(predicted: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Held-out counts (C, C): ``[i, j]`` = rows of class j predicted as i."""
    flat = np.asarray(predicted, dtype=np.int64) * n_classes + np.asarray(target)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def bbse_prior(confusion: np.ndarray, predicted_counts: np.ndarray) -> np.ndarray:
    """The BBSE prior (C,) from held-out counts (C, C) (:func:`confusion_counts`) and the
    predicted-class counts (C,) of the deployment rows.

    Example:
        >>> conf = np.array([[40, 10], [10, 40]])  # 80% accurate, balanced held-out
        >>> bbse_prior(conf, np.array([65, 35])).round(2)  # true prior (0.75, 0.25)
        array([0.75, 0.25])
    """
    joint = np.asarray(confusion, dtype=np.float64)
    joint = joint / joint.sum()
    mu = np.asarray(predicted_counts, dtype=np.float64)
    mu = mu / mu.sum()
    w = np.linalg.lstsq(joint, mu, rcond=None)[0]
    prior = np.clip(w, 0.0, None) * joint.sum(axis=0)
    if prior.sum() <= 0:  # nothing left after clipping: no evidence beyond the counts
        return mu
    return prior / prior.sum()


def shrink(prior: np.ndarray, n_rows: int, target: np.ndarray) -> np.ndarray:
    """``(n pi + m target) / (n + m)`` (C,), ``m = SHRINK_PER_CLASS * C``."""
    m = SHRINK_PER_CLASS * len(prior)
    target = np.asarray(target, dtype=np.float64) / np.sum(target)
    return (n_rows * prior + m * target) / (n_rows + m)


def check_rows(n_rows: int) -> None:
    """Refuse fewer than :data:`MIN_ROWS` rows.

    Raises:
        DLSAInputError: one line naming the minimum.
    """
    if n_rows < MIN_ROWS:
        raise DLSAInputError(
            f"estimating the test prior needs at least {MIN_ROWS} rows, got {n_rows}"
        )
