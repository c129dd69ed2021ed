"""The estimator's last step: the chosen configuration fitted on all the data, with the
fallback to its base alone when a chosen DLSA diverges there."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dlsa.cascade import Cascade, fit_cascade, resolve
from dlsa.errors import TrainingDivergedError
from dlsa.selection import describe
from dlsa.stage2.bases import base_params

logger = logging.getLogger(__name__)


def fit_chosen(
    params: dict[str, Any],
    X: np.ndarray,
    y_enc: np.ndarray,
    n_classes: int,
    val: tuple[np.ndarray, np.ndarray] | None,
    donor: Cascade | None,
    selection: dict[str, Any] | None,
) -> tuple[Cascade, dict[str, Any]]:
    """Fit the concrete configuration ``params`` on all the data; returns the cascade and
    the parameters it was fitted with (the estimator's ``fitted_params_``).

    If a DLSA that the selection chose (``selection``, its evidence; None without one)
    diverges on all the data although it trained in every fold, its base is fitted alone
    instead, and ``selection`` records it (``final_fit_diverged``, the new ``chosen``).
    """
    spec = resolve(params | {"selection": None})
    try:
        cascade = fit_cascade(spec, X, y_enc, n_classes=n_classes, val=val, donor=donor)
    except TrainingDivergedError as err:
        if selection is None or spec.depth == 0:
            raise
        logger.warning("the chosen %s diverged on all the data: %s", selection["chosen"], err)
        selection["final_fit_diverged"] = str(err)
        params = params | {"depth": 0}
        selection["chosen"] = describe(params)
        spec = resolve(params | {"selection": None})
        cascade = fit_cascade(spec, X, y_enc, n_classes=n_classes, val=val)
    return cascade, params | {"selection": None, "base_params": base_params(spec.base)}
