"""A test of "no label shift" before an EM estimate of the deployment prior is used.

EM (:mod:`dlsa.cascade.prior_estimate`) returns the maximum-likelihood prior of the
mixture likelihood ``L(pi) = prod_i sum_y q(y | x_i) pi(y) / u(y)`` of N unlabelled rows
(``q`` the posteriors under the uniform prior ``u``, the balanced frame). Whether it
is any better than the reference prior ``pi_ref`` (the one the model predicts with when
no test prior is set) is tested with the likelihood ratio

    ``Lambda = 2 (log L(pi_hat) - log L(pi_ref))``.

On calibrated posteriors and data drawn at ``pi_ref``, ``Lambda`` is asymptotically
chi-square with C - 1 degrees of freedom (Wilks). The posteriors are calibrated on
held-out rows, by bias-corrected temperature scaling (BCTS: a bias b (C,) on the
scores), and b is only known to within ``Sigma_b = H^-1`` (H the Hessian of BCTS's
penalised NLL in b: the Laplace covariance). A bias error ``delta`` moves the mean score
``g = mean_i r_i / pi_ref`` (``r`` the posteriors under ``pi_ref``) by ``J delta``, a
shift that does not shrink with N. On the simplex's tangent space, ``sqrt(N) g ~ N(0,
F + N J Sigma_b J^T)`` (F the Fisher information per row at ``pi_ref``), so

    ``Lambda ~ sum_j (1 + N mu_j) chi2_1``,   ``mu_j`` the eigenvalues of
    ``F^-1/2 J Sigma_b J^T F^-1/2`` (:func:`null_weights`),

and the shift is taken as real when ``Lambda`` passes the ``1 - level`` quantile of that
null (:func:`lr_threshold`, matched in mean and variance by a scaled chi-square:
Welch-Satterthwaite). The weights ``mu`` are properties of the model and its held-out
rows, computed once at calibration; without them (a model calibrated by a temperature
alone, or none) the null is Wilks' chi-square. H comes from the held-out rows as BCTS
saw them, F and J from the same rows reweighted to ``pi_ref``; all three are C x C, or
only their diagonals above :data:`EXACT_MAX_CLASSES` classes (classes taken as
independent). The temperature's own uncertainty is left out (on the study's models it
moves the threshold by under 1 %).

``H^-1`` is b's covariance when the held-out labels are drawn at random. With their
class counts fixed (stratified folds, a validation split) b's sampling spread is smaller
(the sandwich ``H^-1 S H^-1``), and where BCTS's family is right the test is then
conservative; but it is only roughly right, and the bias that calibrates a balanced
deployment is not the one that calibrates the long-tailed held-out rows. On the
study's models (docs/method.md) the realised bias errors against a balanced pool's own
BCTS (rms 0.08-0.21 over 12 seeds) are of the size of ``H^-1`` (0.10-0.14), above the
sandwich's (0.06-0.11), which would take 4 of the 12 balanced pools for shifts.

References:
    Wilks, "The large-sample distribution of the likelihood ratio for testing composite
    hypotheses", Annals of Mathematical Statistics 9(1), 1938.
    Satterthwaite, "An approximate distribution of estimates of variance components",
    Biometrics Bulletin 2(6), 1946.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import null_space
from scipy.special import log_softmax
from scipy.stats import chi2

from dlsa.cascade.temperature import CHUNK_CELLS

LEVEL = 0.05
"""Probability of taking a no-shift sample for a shift (when the null is right)."""

EXACT_MAX_CLASSES = 1024
"""Most classes :func:`null_weights` builds the C x C matrices for (M C^2 operations
on M held-out rows); above it, their diagonals."""


def log_likelihood_ratio(
    posteriors: np.ndarray, prior: np.ndarray, reference: np.ndarray
) -> float:
    """``Lambda = 2 sum_i log(q_i . prior / q_i . reference)`` for posteriors q (N, C)
    under the uniform prior, priors (C,); in float64 chunks.

    Example:
        >>> q = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
        >>> round(log_likelihood_ratio(q, np.array([0.64, 0.36]), np.array([0.5, 0.5])), 3)
        0.109
    """
    q = np.asarray(posteriors)
    prior, reference = np.asarray(prior, np.float64), np.asarray(reference, np.float64)
    tiny = np.finfo(np.float64).tiny
    total, step = 0.0, max(1, CHUNK_CELLS // max(1, q.shape[1]))
    for start in range(0, len(q), step):
        x = q[start : start + step].astype(np.float64)
        total += float(
            np.sum(np.log(np.maximum(x @ prior, tiny) / np.maximum(x @ reference, tiny)))
        )
    return 2.0 * total


def null_weights(
    logits: np.ndarray,
    target: np.ndarray,
    temperature: float,
    offset: np.ndarray,
    held_prior: np.ndarray,
    reference: np.ndarray,
    bias_precision: float,
) -> np.ndarray:
    """The weights ``mu`` (C - 1,) of the likelihood ratio's null, per test row, from
    held-out logits (M, C) of classes ``target`` (M,) whose calibrated scores are
    ``logits / temperature + offset`` (C,) (BCTS: the balanced frame and its bias) and
    whose BCTS posteriors are those scores plus ``log held_prior`` (C,; the classes'
    frequencies among the held-out rows), ``reference`` (C,) the prior tested, and
    ``bias_precision`` the Gaussian prior's precision on b in the BCTS fit.

    Rows whose own class scores -inf are left out (as BCTS leaves them out); the rest
    are weighted so that each class weighs ``reference`` (renormalised over the classes
    with rows). Directions of the prior the rows carry no information on (F singular:
    fewer rows than classes) get weight 0. Memory: three C x C float64 matrices (their
    diagonals above :data:`EXACT_MAX_CLASSES` classes) and float64 chunks of the logits;
    time: about 1.6 s for 5000 rows of 1000 classes on one core (M C^2).
    """
    logits, target = np.asarray(logits), np.asarray(target)
    n, c = logits.shape
    shift = np.asarray(offset, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64) / np.sum(reference)
    with np.errstate(divide="ignore"):
        log_held, log_ref = np.log(held_prior), np.log(reference)
    usable = np.isfinite(logits[np.arange(n), target]) & np.isfinite(shift[target])
    counts = np.bincount(target[usable], minlength=c).astype(np.float64)
    row_weight = np.divide(reference, counts, out=np.zeros(c), where=counts > 0)
    row_weight /= np.sum(row_weight * counts)
    exact = c <= EXACT_MAX_CLASSES
    shape = (c, c) if exact else (c,)
    hessian, fisher, jacobian = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    step = max(1, CHUNK_CELLS // c)
    rows = np.flatnonzero(usable)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        z = logits[part].astype(np.float64) / temperature + shift
        p = np.exp(log_softmax(z + log_held, axis=1))  # BCTS posteriors: H
        r = np.exp(log_softmax(z + log_ref, axis=1))  # under pi_ref: F and J
        w = row_weight[target[part]][:, None]
        g = r / reference
        if exact:
            hessian += np.diag(p.sum(axis=0)) - p.T @ p
            fisher += (w * g).T @ g
            jacobian += (np.diag((w * r).sum(axis=0)) - (w * r).T @ r) / reference[:, None]
        else:
            hessian += np.sum(p * (1.0 - p), axis=0)
            fisher += np.sum(w * g * g, axis=0)
            jacobian += np.sum(w * r * (1.0 - r), axis=0) / reference
    if not exact:  # independent classes; the smallest weight goes for sum(pi) = 1
        variance = fisher - 1.0
        weights = np.divide(
            jacobian**2, (hessian + bias_precision) * variance,
            out=np.zeros(c), where=variance > 0,
        )  # fmt: skip
        return _saveable(np.sort(weights)[1:])
    hessian += bias_precision * np.eye(c)
    basis = null_space(np.ones((1, c)))  # (C, C - 1): directions with sum 0
    sensitivity = basis.T @ jacobian  # (C - 1, C)
    calibration = sensitivity @ np.linalg.solve(hessian, sensitivity.T)
    values, vectors = np.linalg.eigh(basis.T @ fisher @ basis)
    keep = values > 1e-10 * max(float(values.max()), np.finfo(np.float64).tiny)
    whiten = vectors[:, keep] / np.sqrt(values[keep])  # F^-1/2 where the rows inform F
    weights = np.zeros(c - 1)
    weights[: int(keep.sum())] = np.linalg.eigvalsh(whiten.T @ calibration @ whiten)
    return _saveable(weights)


def _saveable(weights: np.ndarray) -> np.ndarray:
    """Weights (K,) >= 0, those below float32's smallest normal number set to 0 (a
    model.json number float32 turns to 0 is refused at load)."""
    return np.where(weights < np.finfo(np.float32).tiny, 0.0, weights)


def lr_threshold(weights: np.ndarray | None, n_rows: int, n_classes: int, level: float) -> float:
    """The ``1 - level`` quantile of ``sum_j (1 + n_rows mu_j) chi2_1`` over C - 1 terms
    (``weights`` mu, missing ones 0; None: all 0, Wilks' chi-square with C - 1 degrees
    of freedom) by a scaled chi-square of the same mean and variance.

    Example:
        >>> round(lr_threshold(None, 1000, 10, 0.05), 2)  # chi2 with 9 d.o.f.
        16.92
        >>> round(lr_threshold(np.full(9, 0.001), 1000, 10, 0.05), 2)  # each term doubled
        33.84
    """
    dof = n_classes - 1
    mu = np.zeros(dof)
    if weights is not None:
        top = np.sort(np.asarray(weights, dtype=np.float64))[::-1][:dof]
        mu[: len(top)] = top
    scale = 1.0 + n_rows * mu
    mean, variance = scale.sum(), 2.0 * np.sum(scale**2)
    factor, df = variance / (2.0 * mean), 2.0 * mean**2 / variance
    return float(factor * chi2.ppf(1.0 - level, df))


def shift_test(
    posteriors: np.ndarray,
    prior: np.ndarray,
    reference: np.ndarray,
    weights: np.ndarray | None,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Whether posteriors (N, C) under the uniform prior give evidence that their rows'
    prior is not ``reference`` (C,), given EM's ``prior`` (C,) and the null's weights
    (:func:`null_weights`; None: Wilks' chi-square): the statistic, its threshold, the
    level, the null and the decision (``shift_detected``), as saved with the estimate.
    """
    n, c = np.shape(posteriors)
    value = log_likelihood_ratio(posteriors, prior, reference)
    threshold = lr_threshold(weights, n, c, level)
    return {
        "statistic": "likelihood ratio",
        "value": value,
        "threshold": threshold,
        "level": level,
        "null": "chi2" if weights is None else "chi2 + BCTS bias uncertainty",
        "shift_detected": bool(value > threshold),
    }
