"""Fold models of the selection, one fold at a time: fitted in this process or in
parallel worker processes, with candidates that the drop rule rules out dropped between
folds.

A selection round fits several configurations (a base method, a routed share of DLSA)
once per fold and scores each on its held-out fold. The folds are fitted in order; after
every fold but the last, ``drop_check`` may drop a configuration whose candidates are all
ruled out against the round's reference on the folds so far (the selection's
:class:`~dlsa.selection.rule.DropRule`): it is not fitted on the next
folds and keeps the predictions of the folds it saw (:attr:`Candidate.seen`). Within one
fold the (configuration) fits are independent, so :func:`fold_candidates` can run them in
a pool of ``n_jobs`` processes (:mod:`dlsa.engine.parallel`): the results are
bit-identical to fitting in this process at the same number of torch threads per fit
(tested), and can differ by float rounding only otherwise.

A configuration can reuse the fold model of another one of the same call (its
``parent``: same data, its filters and base); when the parent was not fitted on that fold
(dropped, or its training diverged), the parent's own donor is used, up to the
``donors`` given from outside. Reuse never changes a fit (tested against fits from
scratch); it saves the filter and base training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from dlsa.cascade import Cascade, CascadeSpec, fit_cascade
from dlsa.cascade.folds import FoldModel, Reencoded, fit_and_score
from dlsa.engine.parallel import run_jobs
from dlsa.engine.progress import Phase
from dlsa.errors import TrainingDivergedError
from dlsa.selection.rule import Candidate
from dlsa.stage2.bases import shared_phases

__all__ = ["DropCheck", "FoldSpec", "Variants", "fold_candidates", "out_of_fold"]

Variants = Callable[[Cascade], Iterator[tuple[str, dict[str, Any], Cascade]]]
"""Yields each post-hoc variant of a fitted fold cascade: ``(name, params, cascade)``
(:meth:`Cascade.with_base`)."""

DropCheck = Callable[[list[list[Candidate] | None]], list[int]]
"""``drop_check(pooled)``: given each configuration's candidates with the predictions of the
folds so far (``seen``; None for a configuration no longer fitted), the indices of the
configurations that are ruled out and dropped."""


@dataclass(frozen=True)
class FoldSpec:
    """One configuration to fit on every fold.

    Attributes:
        spec: the resolved configuration each fold fits (:func:`fit_cascade`), built by
            the selection from its round's spec, never resolved again per fold.
        name: the candidate's name when it is scored as fitted (``variants`` None).
        params: the parameters that candidate records (:attr:`Candidate.params`: what
            it overrides of the round's, e.g. ``{"depth": 1, "routed_share": 0.3}``).
        variants: post-hoc variants of each fitted fold model, each naming itself and
            its parameters; None scores it as is.
        donors: per fold, a cascade whose flow filters (and base) the fold cascade reuses
            when it has no fitted ``parent`` on that fold.
        parent: index of an earlier configuration of the same call whose fold cascade
            it reuses.
        group: configurations of one group are fitted in one job per fold, inside
            :func:`~dlsa.stage2.bases.shared_phases` (their common first phase is
            trained once); None: a job of its own.
    """

    spec: CascadeSpec
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    variants: Variants | None = None
    donors: Sequence[Cascade] | None = None
    parent: int | None = None
    group: str | None = None

    @property
    def scoring(self) -> Variants:
        """The variants each fitted fold model is scored as: ``variants``, or the fitted
        cascade itself under ``name`` and ``params``."""
        return self.variants or _AsFitted(self.name, self.params)


@dataclass(frozen=True)
class _AsFitted:
    """The fitted cascade itself as the one variant, named ``name`` with ``params``
    (a plain picklable object, for worker processes)."""

    name: str
    params: dict[str, Any]

    def __call__(self, cascade: Cascade) -> Iterator[tuple[str, dict[str, Any], Cascade]]:
        yield self.name, self.params, cascade


@dataclass
class _FoldResult:
    """A fitted fold cascade and the held-out (labels, stages, log-losses) of each of its
    variants, or the error that stopped its training."""

    model: Cascade | None
    scored: list[tuple[str, dict[str, Any], np.ndarray, np.ndarray, np.ndarray | None]]
    error: TrainingDivergedError | None = None


@dataclass
class _Track:
    """One configuration's fold results so far."""

    results: list[_FoldResult] = field(default_factory=list)
    error: TrainingDivergedError | None = None
    dropped: bool = False

    @property
    def alive(self) -> bool:
        return self.error is None and not self.dropped


def _fit_fold(
    spec: CascadeSpec,
    variants: Variants,
    donor: Cascade | None,
    X: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
) -> _FoldResult:
    """Fit the configuration ``spec`` on ``fit_idx`` (reusing ``donor``'s filters) and
    score each of ``variants`` (a :attr:`FoldSpec.scoring`) on ``val_idx``
    (:func:`dlsa.cascade.folds.fit_and_score`). The fold cascade knows the classes of
    its fit part only (:class:`Reencoded`: a class of one sample is missing from the
    fold that holds it out, for every candidate alike); its predictions are mapped back
    to the classes of y. A job gets only its own fold's donor, not the whole list."""
    fit = Reencoded(partial(_fit_spec, spec))
    score = partial(_score_variants, variants, spec.base.tunes_on_log_loss)
    return fit_and_score(fit, score, X, y, fit_idx, val_idx, donor, diverged=_diverged)


def _fit_spec(spec: CascadeSpec, X: np.ndarray, y: np.ndarray, donor: Cascade | None) -> Cascade:
    """The cascade of ``spec`` fitted on X (F, D), y (F,) class indices, reusing
    ``donor``."""
    return fit_cascade(spec, X, y, donor=donor)


def _diverged(err: TrainingDivergedError) -> _FoldResult:
    """The result of a fold whose training diverged."""
    return _FoldResult(None, [], err)


def _score_variants(
    variants: Variants, log_loss: bool, model: FoldModel, X: np.ndarray, y: np.ndarray
) -> _FoldResult:
    """The fold model and each variant's held-out (classes of y, stages, log-losses) of
    the rows X (V, D) of classes y (V,); the log-losses only with ``log_loss`` (a base
    that tunes on them), else None."""
    truth = model.indices(y) if log_loss else None
    scored = []
    for name, cand_params, variant in variants(model.cascade):
        pred, stage, nll = _score(variant, X, truth)
        scored.append((name, cand_params, model.labels(pred), stage, nll))
    return _FoldResult(model.cascade, scored)


def _score(
    cascade: Cascade, X: np.ndarray, truth: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Predicted classes (M,), stages (M,) and, given the true class indices ``truth``
    (M,) of the cascade's classes (-1: a class it never saw; NaN there), the negative
    log-likelihood of the true class (M,) under the softmax of the logits, of X (M, D);
    None without ``truth``. The predictions are :meth:`Cascade.predict_and_route`'s."""
    preds, stages, nlls = [], [], []
    start = 0
    for logits, stage in cascade.chunks(torch.from_numpy(X)):
        if truth is not None:
            t = torch.from_numpy(truth[start : start + logits.shape[0]]).to(logits.device)
            log_p = torch.log_softmax(logits.double(), dim=1).gather(1, t.clamp_min(0)[:, None])
            nlls.append((-log_p[:, 0]).masked_fill(t < 0, float("nan")).cpu())
        start += logits.shape[0]
        preds.append(logits.argmax(dim=1).cpu())
        stages.append(stage.cpu())
    nll = torch.cat(nlls).numpy() if truth is not None else None
    return torch.cat(preds).numpy(), torch.cat(stages).numpy(), nll


def _fit_together(
    items: list[tuple[CascadeSpec, Variants, Cascade | None]],
    X: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
) -> list[_FoldResult]:
    """:func:`_fit_fold` of each (spec, variants, donor), in one block of
    :func:`~dlsa.stage2.bases.shared_phases`."""
    with shared_phases():
        return [_fit_fold(*item, X, y, fit_idx, val_idx) for item in items]


def _jobs(specs: Sequence[FoldSpec], wave: list[int]) -> list[list[int]]:
    """The wave's configurations as jobs: one per group, one per ungrouped one."""
    jobs: dict[str | int, list[int]] = {}
    for i in wave:
        jobs.setdefault(specs[i].group or i, []).append(i)
    return list(jobs.values())


def _donor(specs: Sequence[FoldSpec], tracks: list[_Track], i: int, f: int) -> Cascade | None:
    """The cascade configuration ``i`` reuses on fold ``f``: its parent's fold model if
    fitted, else the parent's donor, else its own ``donors[f]``."""
    parent = specs[i].parent
    while parent is not None:
        done = tracks[parent].results
        if len(done) > f and done[f].model is not None:
            return done[f].model
        i, parent = parent, specs[parent].parent
    return None if specs[i].donors is None else specs[i].donors[f]


def _waves(specs: Sequence[FoldSpec], alive: list[int]) -> list[list[int]]:
    """The alive configurations in fitting order: a configuration comes in the wave
    after its nearest alive ancestor (the one whose fold model it will reuse)."""
    depth: dict[int, int] = {}
    for i in alive:  # parents come before their children
        parent = specs[i].parent
        while parent is not None and parent not in depth:
            parent = specs[parent].parent
        depth[i] = 0 if parent is None else depth[parent] + 1
    n_waves = max(depth.values(), default=-1) + 1
    return [[i for i in alive if depth[i] == d] for d in range(n_waves)]


def fold_candidates(
    specs: Sequence[FoldSpec],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    n_jobs: int | None = None,
    drop_check: DropCheck | None = None,
    phase: Phase | None = None,
) -> list[tuple[list[Candidate], list[Cascade]] | TrainingDivergedError]:
    """Fit every configuration on the folds in order and pool its held-out predictions.

    Args:
        specs: the configurations (a ``parent`` before its children).
        X: (N, D) features.
        y: (N,) class indices ``0 .. C-1``.
        folds: validation index arrays that cover ``0 .. N-1`` once.
        n_jobs: worker processes for the fits of a fold (of every fold at once without
            ``drop_check``; see :func:`dlsa.engine.parallel.worker_count`); None or 1 fits
            them here, one after the other.
        drop_check: after every fold but the last, drops the configurations it rules
            out; None fits every configuration on every fold.
        phase: counts the fold fits done (its total: configurations x folds, less the
            folds of dropped configurations) for the progress lines.

    Returns:
        Per configuration, its candidates (one per variant; a dropped configuration's
        hold the folds it saw in ``seen``) and fitted fold cascades, or the
        :class:`TrainingDivergedError` of its first fold whose training diverged.
    """
    tracks = [_Track() for _ in specs]
    # without dropping, every fold at once (the widest jobs for many workers)
    stages = [list(range(len(folds)))] if drop_check is None else [[f] for f in range(len(folds))]
    if phase is not None:
        phase.total = len(specs) * len(folds)
    for stage in stages:
        _fit_stage(specs, tracks, X, y, folds, stage, n_jobs, phase)
        if drop_check is not None and stage[-1] + 1 < len(folds):
            pooled = [
                _pool(t, folds, config, len(y))[0] if t.alive else None
                for t, config in zip(tracks, specs, strict=True)
            ]
            for i in drop_check(pooled):
                tracks[i].dropped = True
        if phase is not None:  # the folds left of the configurations still fitted
            phase.total = phase.done + sum(t.alive for t in tracks) * (len(folds) - stage[-1] - 1)
    return [
        t.error or _pool(t, folds, config, len(y)) for t, config in zip(tracks, specs, strict=True)
    ]


def _fit_stage(
    specs: Sequence[FoldSpec],
    tracks: list[_Track],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    stage: list[int],
    n_jobs: int | None,
    phase: Phase | None = None,
) -> None:
    """Fit the alive configurations on the folds ``stage``, wave after wave (a
    configuration after the parent it reuses), every (job, fold) of a wave at once;
    append each result to its track."""
    every = np.arange(len(y))
    for wave in _waves(specs, [i for i, t in enumerate(tracks) if t.alive]):
        groups = _jobs(specs, wave)
        jobs = [
            ([(specs[i].spec, specs[i].scoring, _donor(specs, tracks, i, f)) for i in group],
             X, y, np.setdiff1d(every, folds[f], assume_unique=True), folds[f])
            for f in stage
            for group in groups
        ]  # fmt: skip
        sizes = [len(group) for group in groups] * len(stage)  # per job, its fits
        done = None if phase is None else lambda j, n=sizes: phase.advance(n[j])
        results = iter(run_jobs(_fit_together, jobs, n_jobs, done))
        for _ in stage:
            for group in groups:
                for i, result in zip(group, next(results), strict=True):
                    if tracks[i].error is None:
                        tracks[i].results.append(result)
                        tracks[i].error = result.error


def _pool(
    track: _Track, folds: Sequence[np.ndarray], config: FoldSpec, n: int
) -> tuple[list[Candidate], list[Cascade]]:
    """One configuration's candidates from its fold results so far, in variant order."""
    preds: dict[str, np.ndarray] = {}
    stages: dict[str, np.ndarray] = {}
    nlls: dict[str, np.ndarray] = {}
    named: dict[str, dict[str, Any]] = {}
    for result, val_idx in zip(track.results, folds, strict=False):
        for name, cand_params, labels, stage, nll in result.scored:
            preds.setdefault(name, np.zeros(n, dtype=np.int64))[val_idx] = labels
            stages.setdefault(name, np.zeros(n, dtype=np.int64))[val_idx] = stage
            if nll is not None:
                nlls.setdefault(name, np.full(n, np.nan))[val_idx] = nll
            named[name] = cand_params
    seen = None
    if len(track.results) < len(folds):
        seen = np.zeros(n, dtype=bool)
        seen[np.concatenate(folds[: len(track.results)])] = True
    models = [r.model for r in track.results if r.model is not None]
    deep = config.spec.depth > 0
    out = [
        Candidate(k, named[k], preds[k], stages[k] if deep else None, models, seen, nlls.get(k))
        for k in named
    ]
    return out, models


def out_of_fold(
    spec: CascadeSpec,
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    *,
    name: str = "",
    params: dict[str, Any] | None = None,
    variants: Variants | None = None,
    donors: Sequence[Cascade] | None = None,
    n_jobs: int | None = None,
    phase: Phase | None = None,
) -> tuple[list[Candidate], list[Cascade]]:
    """Fit the fixed configuration ``spec`` once per fold and pool the held-out
    predictions (of every post-hoc variant, if given; else of one candidate named
    ``name`` with ``params``); see :func:`fold_candidates`.

    Raises:
        TrainingDivergedError: if the training of a fold diverged.
    """
    config = FoldSpec(spec, name, params or {}, variants, donors)
    found = fold_candidates([config], X, y, folds, n_jobs, phase=phase)[0]
    if isinstance(found, TrainingDivergedError):
        raise found
    return found
