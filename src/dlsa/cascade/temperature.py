"""Temperature scaling: one scalar T > 0 that divides every logit, fitted by minimising
the negative log-likelihood of held-out samples (never the test set). It changes the
probabilities, not the predicted class (``argmax`` is invariant to a positive scale)
unless a deployment prior is added after it.

References:
    Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks", ICML 2017,
    Sec. 4.2. https://arxiv.org/abs/1706.04599
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from dlsa.errors import DLSAInputError

LOG_T_RANGE = (-4.0, 4.0)
"""Bounds of log T searched (T from 0.018 to 55)."""

MIN_SAMPLES = 2
"""Fewest held-out samples a temperature is fitted on (one sample's NLL has no
interior minimum)."""


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
    if usable.sum() < MIN_SAMPLES:
        raise DLSAInputError(
            f"temperature scaling needs at least {MIN_SAMPLES} held-out samples, "
            f"got {int(usable.sum())}"
        )
    logits, target = logits[usable], target[usable]
    result = minimize_scalar(
        nll_at, bounds=LOG_T_RANGE, args=(logits, target), method="bounded",
        options={"xatol": 1e-4},
    )  # fmt: skip
    return float(np.exp(result.x))
