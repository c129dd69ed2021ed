"""Fold models of the selection: fitted in this process, or in parallel worker processes.

A selection round fits several configurations (a base method, a routed share of DLSA)
once per fold and scores each on its held-out fold. Every (configuration, fold) fit is
independent of the others of its round, so :func:`fold_candidates` can run them in a pool
of ``n_jobs`` processes (:mod:`dlsa.engine.parallel`): the results are bit-identical to fitting
in this process at the same number of torch threads per fit (tested), and can differ by
float rounding only otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlsa.cascade import Cascade, fit_cascade, resolve
from dlsa.engine.parallel import run_jobs
from dlsa.errors import TrainingDivergedError
from dlsa.selection.rule import Candidate, describe

__all__ = ["FoldSpec", "Variants", "fold_candidates", "out_of_fold"]

Variants = Callable[[Cascade], Iterator[tuple[str, dict[str, Any], Cascade]]]
"""Yields each post-hoc variant of a fitted fold cascade: ``(name, params, cascade)``
(:meth:`Cascade.with_base`)."""


@dataclass(frozen=True)
class FoldSpec:
    """One configuration to fit on every fold.

    Attributes:
        params: estimator parameters (``selection`` None, a concrete base).
        variants: post-hoc variants of each fitted fold model; None scores it as is.
        donors: per fold, a cascade whose flow filters (and base) the fold cascade reuses.
    """

    params: dict[str, Any]
    variants: Variants | None = None
    donors: Sequence[Cascade] | None = None


@dataclass
class _FoldResult:
    """A fitted fold cascade and the held-out (labels, stages) of each of its variants,
    or the error that stopped its training."""

    model: Cascade | None
    scored: list[tuple[str, dict[str, Any], np.ndarray, np.ndarray]]
    error: TrainingDivergedError | None = None


def _fit_fold(
    params: dict[str, Any],
    variants: Variants | None,
    donor: Cascade | None,
    X: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
) -> _FoldResult:
    """Fit the configuration ``params`` on ``fit_idx`` (reusing ``donor``'s filters) and
    score each variant on ``val_idx``. The fold cascade knows the classes of its fit
    part only (a class of one sample is missing from the fold that holds it out, for
    every candidate alike); its predictions are mapped back to the classes of y. A job
    gets only its own fold's donor, not the whole list."""
    classes, y_fit = np.unique(y[fit_idx], return_inverse=True)
    try:
        cascade = fit_cascade(resolve(params), X[fit_idx], y_fit, donor=donor)
    except TrainingDivergedError as err:
        return _FoldResult(None, [], err)
    scored = []
    for name, cand_params, variant in (variants or _as_fitted(params))(cascade):
        pred, stage = variant.predict_and_route(X[val_idx])
        scored.append((name, cand_params, classes[pred], stage))
    return _FoldResult(cascade, scored)


def _as_fitted(params: dict[str, Any]) -> Variants:
    """The fitted cascade itself as the one variant."""

    def one(cascade: Cascade) -> Iterator[tuple[str, dict[str, Any], Cascade]]:
        yield describe(params), {}, cascade

    return one


def fold_candidates(
    specs: Sequence[FoldSpec],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    n_jobs: int | None = None,
) -> list[tuple[list[Candidate], list[Cascade]] | TrainingDivergedError]:
    """Fit every configuration once per fold and pool its held-out predictions.

    Args:
        specs: the configurations.
        X: (N, D) features.
        y: (N,) class indices ``0 .. C-1``.
        folds: validation index arrays that cover ``0 .. N-1`` once.
        n_jobs: worker processes for the (configuration, fold) fits (see
            :func:`dlsa.engine.parallel.worker_count`); None or 1 fits them here, one after
            the other.

    Returns:
        Per configuration, its candidates (one per variant) and fitted fold cascades, or
        the :class:`TrainingDivergedError` of its first fold whose training diverged.
    """
    every = np.arange(len(y))
    jobs = [
        (
            spec.params,
            spec.variants,
            None if spec.donors is None else spec.donors[f],
            X,
            y,
            np.setdiff1d(every, val_idx, assume_unique=True),
            val_idx,
        )
        for spec in specs
        for f, val_idx in enumerate(folds)
    ]
    results = run_jobs(_fit_fold, jobs, n_jobs)
    n = len(folds)
    per_spec = [results[i * n : (i + 1) * n] for i in range(len(specs))]
    return [_pool(r, folds, spec, len(y)) for r, spec in zip(per_spec, specs, strict=True)]


def _pool(
    results: list[_FoldResult], folds: Sequence[np.ndarray], spec: FoldSpec, n: int
) -> tuple[list[Candidate], list[Cascade]] | TrainingDivergedError:
    """One configuration's candidates from its fold results, in variant order."""
    for result in results:
        if result.error is not None:
            return result.error
    preds: dict[str, np.ndarray] = {}
    stages: dict[str, np.ndarray] = {}
    named: dict[str, dict[str, Any]] = {}
    for result, val_idx in zip(results, folds, strict=True):
        for name, cand_params, labels, stage in result.scored:
            preds.setdefault(name, np.zeros(n, dtype=np.int64))[val_idx] = labels
            stages.setdefault(name, np.zeros(n, dtype=np.int64))[val_idx] = stage
            named[name] = cand_params
    models = [r.model for r in results if r.model is not None]
    deep = spec.params["depth"] > 0
    out = [Candidate(k, named[k], preds[k], stages[k] if deep else None, models) for k in named]
    return out, models


def out_of_fold(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    *,
    variants: Variants | None = None,
    donors: Sequence[Cascade] | None = None,
    n_jobs: int | None = None,
) -> tuple[list[Candidate], list[Cascade]]:
    """Fit the fixed configuration ``params`` once per fold and pool the held-out
    predictions (of every post-hoc variant, if given); see :func:`fold_candidates`.

    Raises:
        TrainingDivergedError: if the training of a fold diverged.
    """
    found = fold_candidates([FoldSpec(params, variants, donors)], X, y, folds, n_jobs)[0]
    if isinstance(found, TrainingDivergedError):
        raise found
    return found
