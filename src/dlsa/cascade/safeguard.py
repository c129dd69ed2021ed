"""The safeguard: decide, on held-out training samples, which stages of the cascade to keep.

A cascade is fitted on a stratified part of the training data (``validation_fraction``)
or on each of ``validation_folds`` stratified folds' complements; every stage whose
classifier is less accurate on the held-out samples it handles than the base method
trained on the same data is switched off (its samples go to the base method trained on
all data). Accuracies are class-balanced. The fold cascades are fitted on fresh
cascades of the same configuration, never on the one being fitted.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dlsa.cascade.folds import AsGiven, FoldModel, run_folds
from dlsa.cascade.levels import fit_levels
from dlsa.cascade.model import Cascade
from dlsa.cascade.spec import CascadeSpec
from dlsa.engine.splits import append_validation, stratified_folds, stratified_split


def validation_splits(
    spec: CascadeSpec, y: np.ndarray, split_seed: np.random.SeedSequence
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, validation) index pairs of the safeguard: one stratified split of
    ``validation_fraction``, or the folds of ``validation_folds``."""
    seed = int(split_seed.generate_state(1)[0])
    if spec.validation_folds >= 2:
        folds = stratified_folds(y, spec.validation_folds, seed=seed)
        every = np.arange(len(y))
        return [(np.setdiff1d(every, f, assume_unique=True), f) for f in folds]
    return [stratified_split(y, spec.validation_fraction, seed=seed, min_per_class=2)]


def _fit_fold(
    spec: CascadeSpec,
    class_counts: np.ndarray,
    cascade_seed: np.random.SeedSequence,
    X: np.ndarray,
    y: np.ndarray,
    donor: Cascade | None,
) -> Cascade:
    """A cascade of ``spec`` fitted on a fit part X (F, D), y (F,) (class indices of all
    the data: ``class_counts`` (C,) are the full data's) with the cascade's seed; never
    a donor."""
    return fit_levels(spec, X, y, class_counts, cascade_seed)


def _score_fold(
    model: FoldModel, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the held-out rows X (V, D): the fold cascade's predicted classes, stages and
    the base method's predicted classes (each (V,))."""
    pred, stage = model.cascade.predict_and_route(X)
    return pred, stage, model.cascade.base_predictions(X)


def validate(
    spec: CascadeSpec,
    X: np.ndarray,
    y: np.ndarray,
    class_counts: np.ndarray,
    split_seed: np.random.SeedSequence,
    cascade_seed: np.random.SeedSequence,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[bool], dict[str, Any]]:
    """Fit fold cascades on the fit parts of X (N, D), y (N,) and decide on the held-out
    samples which stages to keep.

    With folds, every training sample is held out once: its stage and logits come from
    the cascade fitted without its fold, and the decision pools all folds. With ``val``
    = (X_val (M, D), y_val (M,) class indices), one cascade is fitted on all of X and
    the decision is made on the validation set.

    Returns:
        Per stage whether it is kept (filters + 1 entries), and the evidence
        (``n_fit``, ``n_val``, ``n_folds``, ``source``, per-stage accuracies).
    """
    if val is None:
        splits = validation_splits(spec, y, split_seed)
    else:
        n = len(y)
        X, y, rows = append_validation(X, y, val)
        splits = [(np.arange(n), rows)]
    fit = AsGiven(partial(_fit_fold, spec, class_counts, cascade_seed))
    # the fold cascades are independent
    scored = run_folds(fit, _score_fold, X, y, splits, n_jobs=spec.n_jobs, label="safeguard")
    pred, stage, base_pred = (
        torch.from_numpy(np.concatenate(c)) for c in zip(*scored, strict=True)
    )
    target = torch.from_numpy(np.concatenate([y[v] for _, v in splits]))
    rows = stage_decisions(
        pred, stage, base_pred, target, n_classes=len(class_counts), n_stages=spec.depth + 1
    )
    evidence = {
        "n_fit": int(np.mean([len(f) for f, _ in splits])),
        "n_val": int(sum(len(v) for _, v in splits)),
        "n_folds": len(splits) if len(splits) > 1 else None,
        "source": "held-out training samples" if val is None else "validation set",
        "stages": rows,
    }
    return [bool(r["kept"]) for r in rows], evidence


def stage_decisions(
    pred: Tensor,
    stage: Tensor,
    base_pred: Tensor,
    target: Tensor,
    *,
    n_classes: int,
    n_stages: int,
) -> list[dict[str, Any]]:
    """Per stage, class-balanced accuracy of the cascade and of the base method on the
    held-out samples (N,) the stage handles, and whether to keep the stage (ties and
    stages without samples are kept).

    Args:
        pred: (N,) the cascade's predicted classes.
        stage: (N,) the stage of each sample.
        base_pred: (N,) the base method's predicted classes.
        target: (N,) classes.
        n_classes: C.
        n_stages: number of stages (filters + 1).
    """
    # Long-tail benchmarks test on balanced sets: weigh each validation class equally.
    weight = 1.0 / torch.bincount(target, minlength=n_classes).double()[target]
    rows = []
    for s in range(n_stages):
        mask = stage == s
        n = int(mask.sum())
        acc = _weighted_accuracy(pred[mask], target[mask], weight[mask]) if n else None
        acc_base = _weighted_accuracy(base_pred[mask], target[mask], weight[mask]) if n else None
        keep = acc is None or acc_base is None or acc >= acc_base
        rows.append({"stage": s, "n": n, "accuracy": acc, "base_accuracy": acc_base, "kept": keep})
    return rows


def _weighted_accuracy(pred: Tensor, target: Tensor, weight: Tensor) -> float:
    """Accuracy of predictions (N,) of targets (N,) with sample weights (N,)."""
    correct = (pred == target).to(weight)
    return float((weight * correct).sum() / weight.sum())
