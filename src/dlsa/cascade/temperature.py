"""Temperature scaling: one scalar T > 0 that divides every logit, fitted by minimising
the negative log-likelihood of held-out samples (never the test set). It changes the
probabilities, not the predicted class (``argmax`` is invariant to a positive scale)
unless a deployment prior is added after it.

Bias-corrected temperature scaling (BCTS) adds a per-class bias b (C,) to the scaled
logits: ``softmax(logits / T + offset + b)``. Only the EM estimate of the deployment
prior uses it (:mod:`dlsa.estimator.prior_estimate`): EM needs posteriors calibrated per
class, which one scalar cannot give when a long tail biases the tail classes' scores.

References:
    Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks", ICML 2017,
    Sec. 4.2. https://arxiv.org/abs/1706.04599
    Alexandari, Kundaje, Shrikumar. "Maximum Likelihood with Bias-Corrected Calibration
    is Hard-To-Beat at Label Shift Adaptation", ICML 2020. https://arxiv.org/abs/1901.06852
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp

from dlsa.errors import DLSAInputError

LOG_T_RANGE = (-4.0, 4.0)
"""Bounds of log T searched (T from 0.018 to 55)."""

BIAS_PRIOR_SD = 1.0
"""Standard deviation of the zero-mean Gaussian prior on each bias of BCTS: the
penalty ``|b|^2 / (2 BIAS_PRIOR_SD^2)`` on the summed NLL weighs about as much as a
few held-out rows of a class, so a class with many rows is barely held back, one with
none keeps ``b = 0`` (never -inf), and ``b`` has mean 0 (softmax ignores a constant)."""

CHUNK_CELLS = 1 << 22
"""Logits (rows x classes) BCTS holds in float64 at a time, whatever the held-out size."""

MIN_SAMPLES = 2
"""Fewest held-out samples a temperature is fitted on (one sample's NLL has no
interior minimum)."""


@dataclass(frozen=True)
class BiasCorrection:
    """A fitted BCTS map (:func:`fit_bias_corrected_temperature`): the temperature and
    the biases (C,) added to the scaled logits; ``null_weights`` (C - 1,), if computed,
    what the biases' uncertainty adds to the null of the no-shift test
    (:func:`dlsa.cascade.shift_detection.null_weights`)."""

    temperature: float
    bias: np.ndarray
    null_weights: np.ndarray | None = None


def nll_at(log_t: float, logits: np.ndarray, target: np.ndarray) -> float:
    """Mean NLL of logits (N, C) divided by ``exp(log_t)`` for classes (N,)."""
    z = logits / np.exp(log_t)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(target)), target]))


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The temperature T minimising the mean NLL of ``softmax(logits / T)`` (N, C) for
    classes ``target`` (N,), searched over :data:`LOG_T_RANGE` (bounded Brent).

    Samples whose true class has a logit of -inf (a class the stage that handled them
    never saw) do not depend on T and are left out.

    Raises:
        DLSAInputError: with fewer than 2 usable samples.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 4000)
        >>> x = 2.0 * np.eye(3)[y] + rng.normal(size=(4000, 3))
        >>> logits = 2.0 * x  # the Bayes posterior of this mixture: calibrated at T = 1
        >>> t1, t3 = fit_temperature(logits, y), fit_temperature(3.0 * logits, y)
        >>> round(t1, 1), round(t3 / t1, 2)  # over-confident by 3: T three times larger
        (1.0, 3.0)
    """
    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(target)
    usable = np.isfinite(logits[np.arange(len(target)), target])
    _check_count(int(usable.sum()))
    logits, target = logits[usable], target[usable]
    result = minimize_scalar(
        nll_at, bounds=LOG_T_RANGE, args=(logits, target), method="bounded",
        options={"xatol": 1e-4},
    )  # fmt: skip
    return float(np.exp(result.x))


def fit_bias_corrected_temperature(
    logits: np.ndarray, target: np.ndarray, offset: np.ndarray | None = None
) -> BiasCorrection:
    """BCTS: the temperature T and the biases b (C,) minimising the summed NLL of
    ``softmax(logits / T + offset + b)`` (logits (N, C)) for classes ``target`` (N,),
    plus ``|b|^2 / (2 BIAS_PRIOR_SD^2)`` (L-BFGS-B over ``log T`` in
    :data:`LOG_T_RANGE` and b, analytic gradient). ``offset`` (C,; default 0) is what
    ``b = 0`` means: the known part of the calibration map (the frame of the logits and
    the held-out prior), which b corrects; a class at ``-inf`` in it, or in a row's
    logits, gets no probability there. b has mean 0.

    Samples whose true class has a logit (or offset) of -inf are left out, as in
    :func:`fit_temperature`. Memory: the logits as given, plus a few float64 chunks of
    :data:`CHUNK_CELLS` cells.

    Raises:
        DLSAInputError: with fewer than 2 usable samples.

    Example:
        >>> from scipy.special import softmax
        >>> rng = np.random.default_rng(0)
        >>> logits = 2.0 * rng.normal(size=(4000, 3))  # a calibrated model ...
        >>> y = (rng.random((4000, 1)) > softmax(logits, 1).cumsum(1)).sum(1)
        >>> fit = fit_bias_corrected_temperature(logits + [1.0, 0.0, -1.0], y)
        >>> round(fit.temperature, 1), fit.bias.round(1)  # ... shifted: b takes it back
        (1.0, array([-1.,  0.,  1.]))
    """
    logits, target = np.asarray(logits), np.asarray(target)
    n, c = logits.shape
    shift = np.zeros(c) if offset is None else np.asarray(offset, dtype=np.float64)
    usable = np.isfinite(logits[np.arange(n), target]) & np.isfinite(shift[target])
    _check_count(int(usable.sum()))
    if not usable.all():
        logits, target = logits[usable], target[usable]
    step = max(1, CHUNK_CELLS // c)
    precision = 1.0 / BIAS_PRIOR_SD**2

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t, bias = float(np.exp(theta[0])), theta[1:]
        nll, grad_log_t = 0.5 * precision * float(bias @ bias), 0.0
        grad_b = precision * bias
        for start in range(0, len(target), step):
            x = logits[start : start + step].astype(np.float64)
            y = target[start : start + step]
            rows = np.arange(len(y))
            closed = ~np.isfinite(x)  # a class the stage never saw: no probability
            x[closed] = 0.0
            z = x / t + shift + bias
            z[closed] = -np.inf
            lse = logsumexp(z, axis=1)
            nll += float(np.sum(lse - z[rows, y]))
            residual = np.exp(z - lse[:, None])  # d NLL / d z = softmax - onehot, (B, C)
            residual[rows, y] -= 1.0
            grad_b = grad_b + residual.sum(axis=0)
            grad_log_t -= float(np.sum(residual * x)) / t
        return nll, np.r_[grad_log_t, grad_b]

    result = minimize(
        objective, np.zeros(c + 1), jac=True, method="L-BFGS-B",
        bounds=[LOG_T_RANGE] + [(None, None)] * c, options={"maxiter": 500},
    )  # fmt: skip
    return BiasCorrection(float(np.exp(result.x[0])), result.x[1:] - result.x[1:].mean())


def _check_count(usable: int) -> None:
    if usable < MIN_SAMPLES:
        raise DLSAInputError(
            f"temperature scaling needs at least {MIN_SAMPLES} held-out samples, got {usable}"
        )
