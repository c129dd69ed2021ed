"""One fold runner: fit a cascade on the complement of each held-out part and score
the held-out rows, as scikit-learn's ``_fit_and_score`` serves ``cross_validate`` and
every ``*SearchCV``.

Three loops of the package go through it: the selection's fold fits
(:mod:`dlsa.selection.folds`, one :func:`fit_and_score` per configuration and fold, in
its own jobs), the safeguard's fold cascades (:mod:`dlsa.cascade.safeguard`) and the
out-of-fold logits of calibration (:mod:`dlsa.estimator.calibration`), both through
:func:`run_folds`. What is fitted and what is recorded of the held-out rows are the
caller's (a fit and a score function); so is whether the fit part's classes are
re-encoded (:class:`Reencoded`: a fit part may miss a class that the data holds, and
its cascade then knows only the classes it saw).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from dlsa.cascade.model import Cascade
from dlsa.engine.parallel import run_jobs
from dlsa.errors import TrainingDivergedError

__all__ = [
    "AsGiven",
    "CascadeFit",
    "FoldFit",
    "FoldModel",
    "FoldScore",
    "Reencoded",
    "fit_and_score",
    "run_folds",
]

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class FoldModel:
    """A cascade fitted on a fit part, and which classes of y its class indices are.

    Attributes:
        cascade: the fitted cascade.
        classes: (K,) the classes of y (sorted) that the cascade's indices ``0 .. K-1``
            stand for; None: its indices are y's classes themselves.
    """

    cascade: Cascade
    classes: np.ndarray | None = None

    def labels(self, pred: np.ndarray) -> np.ndarray:
        """The classes of y (M,) of the cascade's predicted class indices ``pred`` (M,)."""
        return pred if self.classes is None else self.classes[pred]

    def indices(self, y: np.ndarray) -> np.ndarray:
        """The cascade's class indices (M,) of classes y (M,); -1 for a class it never
        saw."""
        if self.classes is None:
            return y
        pos = np.minimum(np.searchsorted(self.classes, y), len(self.classes) - 1)
        return np.where(self.classes[pos] == y, pos, -1)

    def columns(self, logits: np.ndarray, n_classes: int) -> np.ndarray:
        """The cascade's logits (M, K) as logits (M, ``n_classes``) of y's classes:
        ``-inf`` in the columns of classes it never saw (float32)."""
        if self.classes is None:
            return logits
        out = np.full((len(logits), n_classes), -np.inf, dtype=np.float32)
        out[:, self.classes] = logits
        return out


CascadeFit = Callable[[np.ndarray, np.ndarray, Cascade | None], Cascade]
"""``fit(X_fit (F, D), y_fit (F,) class indices, donor)`` -> the fitted cascade."""

FoldFit = Callable[[np.ndarray, np.ndarray, Cascade | None], FoldModel]
"""``fit(X_fit (F, D), y_fit (F,) classes of y, donor)`` -> the fold model
(:class:`Reencoded` or :class:`AsGiven` of a :data:`CascadeFit`)."""

FoldScore = Callable[[FoldModel, np.ndarray, np.ndarray], R]
"""``score(model, X_val (V, D), y_val (V,))`` -> the split's record."""


@dataclass(frozen=True)
class Reencoded:
    """A :data:`FoldFit` that fits ``fit`` on the fit part's classes re-encoded as
    ``0 .. K-1`` (:func:`numpy.unique`); the fold model maps them back. Picklable when
    ``fit`` is, for worker processes."""

    fit: CascadeFit

    def __call__(self, X: np.ndarray, y: np.ndarray, donor: Cascade | None) -> FoldModel:
        classes, y_fit = np.unique(y, return_inverse=True)
        return FoldModel(self.fit(X, y_fit, donor), classes)


@dataclass(frozen=True)
class AsGiven:
    """A :data:`FoldFit` that fits ``fit`` on the fit part's class indices as they are
    (the cascade knows every class of y, also one its fit part misses)."""

    fit: CascadeFit

    def __call__(self, X: np.ndarray, y: np.ndarray, donor: Cascade | None) -> FoldModel:
        return FoldModel(self.fit(X, y, donor))


def fit_and_score(
    fit: FoldFit,
    score: FoldScore[R],
    X: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    donor: Cascade | None = None,
    diverged: Callable[[TrainingDivergedError], R] | None = None,
    label: str | None = None,
) -> R:
    """Fit on the rows ``fit_idx`` of X (N, D), y (N,) and score the rows ``val_idx``.

    Args:
        fit: the fit part (F rows) -> the fold model.
        score: (fold model, X_val (V, D), y_val (V,)) -> the record.
        X: (N, D) features.
        y: (N,) classes.
        fit_idx: (F,) the rows fitted on.
        val_idx: (V,) the held-out rows scored.
        donor: a cascade whose filters (and base) the fit reuses, or None.
        diverged: if given, the record of a split whose fit raised
            :class:`TrainingDivergedError` (else the error is raised); errors of
            ``score`` are always raised.
        label: if given, a log line "``label``: fitting on F samples, validating on V".

    Returns:
        ``score``'s record.
    """
    if label is not None:
        logger.info(
            "%s: fitting on %d samples, validating on %d", label, len(fit_idx), len(val_idx)
        )
    try:
        model = fit(X[fit_idx], y[fit_idx], donor)
    except TrainingDivergedError as err:
        if diverged is None:
            raise
        return diverged(err)
    return score(model, X[val_idx], y[val_idx])


def run_folds(
    fit: FoldFit,
    score: FoldScore[R],
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    donors: Sequence[Cascade | None] | None = None,
    n_jobs: int | None = None,
    label: str | None = None,
) -> list[R]:
    """:func:`fit_and_score` of every (fit_idx, val_idx) of ``splits``: in a pool of
    worker processes (:func:`dlsa.engine.parallel.run_jobs`; ``fit`` and ``score`` must
    then be picklable) or, with ``n_jobs`` None or 1, here in split order.

    Args:
        fit, score, X, y, label: as :func:`fit_and_score`'s.
        splits: (fit_idx, val_idx) index pairs.
        donors: per split, the cascade its fit reuses; None: none.
        n_jobs: worker processes (:func:`dlsa.engine.parallel.worker_count`).

    Returns:
        The records, in the order of ``splits``.
    """
    donors = [None] * len(splits) if donors is None else donors
    jobs = [
        (fit, score, X, y, fit_idx, val_idx, donor, None, label)
        for (fit_idx, val_idx), donor in zip(splits, donors, strict=True)
    ]
    return run_jobs(fit_and_score, jobs, n_jobs)
