"""Fitting one configuration, the public entry (:func:`fit_cascade`): the safeguard's
decisions (on held-out training samples or a validation set), the donor checked, then
the cascade's parts trained on all the data (:func:`dlsa.cascade.levels.fit_levels`).
What the estimator does without selection, and what the selection does for every
candidate and fold."""

from __future__ import annotations

import numpy as np

from dlsa.cascade.levels import check_donor, fit_levels
from dlsa.cascade.model import Cascade
from dlsa.cascade.safeguard import validate
from dlsa.cascade.spec import CascadeSpec


def fit_cascade(
    spec: CascadeSpec,
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    donor: Cascade | None = None,
) -> Cascade:
    """Fit the configuration ``spec`` on features X (N, D) and class indices y (N,).

    Seeds: ``SeedSequence(spec.random_state)`` spawns the safeguard's split seed and the
    cascade's seed, so the same spec on the same data gives the same cascade.

    Args:
        spec: the configuration (:func:`dlsa.cascade.spec.resolve`).
        X: (N, D) float32 features.
        y: (N,) class indices ``0 .. C-1``.
        n_classes: C (default ``y.max() + 1``).
        val: optional (X_val (M, D), y_val (M,) class indices) the safeguard decides on.
        donor: a cascade fitted on the same X, y with the same filter config (up to the
            routed share) and seed, whose filters are reused.

    Returns:
        The fitted :class:`Cascade`, with the safeguard's ``stage_enabled`` and evidence.
    """
    class_counts = np.bincount(y, minlength=n_classes or int(y.max()) + 1)
    split_seed, cascade_seed = np.random.SeedSequence(spec.random_state).spawn(2)
    enabled, evidence = [True] * (spec.depth + 1), None
    if spec.safeguarded:
        enabled, evidence = validate(spec, X, y, class_counts, split_seed, cascade_seed, val)
    donor = check_donor(donor, spec, X.shape[1], class_counts)
    cascade = fit_levels(spec, X, y, class_counts, cascade_seed, donor)
    cascade.stage_enabled, cascade.validation = enabled, evidence
    return cascade
