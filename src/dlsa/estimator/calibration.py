"""Held-out logits of a fitted model for temperature scaling
(:mod:`dlsa.cascade.temperature`): on a validation set, or out of fold on the training
data by refitting the model's configuration without each fold. Raw logits: temperature
1 and the uniform prior. What is fitted on them: :func:`set_calibration`."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from dlsa.cascade import Cascade, CascadeSpec, fit_cascade
from dlsa.cascade.folds import FoldModel, Reencoded, run_folds
from dlsa.cascade.temperature import fit_temperature
from dlsa.engine.splits import stratified_folds
from dlsa.estimator.fitted import FittedModel
from dlsa.estimator.inputs import encoded_validation
from dlsa.estimator.prior_estimate import fit_bcts, held_out_confusion


def cascade_logits(cascade: Cascade, X: np.ndarray) -> np.ndarray:
    """Raw logits (N, C) of checked float32 features X (N, D), scored in chunks."""
    parts = [logits.cpu() for logits, _ in cascade.chunks(torch.from_numpy(X))]
    return torch.cat(parts).numpy()


def held_out_logits(
    clf: FittedModel, X: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (M, C) of ``clf`` on labelled features X (M, D), y (M,), and the class
    indices (M,) of y in ``clf.classes_``.

    Raises:
        DLSAInputError: on features of another width or a label not among the classes.
    """
    val = encoded_validation(X, y, clf.classes_, clf.n_features_in_, names=("X", "y"))
    assert val is not None
    return cascade_logits(clf.cascade_, val[0]), val[1]


def out_of_fold_logits(
    clf: FittedModel, X: np.ndarray, y: np.ndarray, folds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw logits (N, C) of the training data X (N, D), y (N,): for each of
    ``folds`` stratified folds, a cascade of ``clf``'s configuration fitted on the other
    folds scores it (classes missing from a fit part get -inf), and the class indices
    (N,)."""
    data = encoded_validation(X, y, clf.classes_, clf.n_features_in_, names=("X", "y"))
    assert data is not None
    X_enc, y_enc = data
    seed = int(np.random.SeedSequence(clf.cascade_.spec.random_state).generate_state(1)[0])
    every = np.arange(len(y_enc))
    splits = [
        (np.setdiff1d(every, held, assume_unique=True), held)
        for held in stratified_folds(y_enc, folds, seed=seed)
    ]
    fit = Reencoded(partial(_fit_spec, clf.cascade_.spec))
    score = partial(_held_out_columns, len(clf.classes_))
    scored = run_folds(fit, score, X_enc, y_enc, splits)  # in this process, fold by fold
    logits = np.full((len(y_enc), len(clf.classes_)), -np.inf, dtype=np.float32)
    for (_, held), fold_logits in zip(splits, scored, strict=True):
        logits[held] = fold_logits
    return logits, y_enc


def _fit_spec(spec: CascadeSpec, X: np.ndarray, y: np.ndarray, donor: Cascade | None) -> Cascade:
    """A cascade of ``spec`` fitted on X (F, D), y (F,) class indices (no donor)."""
    return fit_cascade(spec, X, y)


def _held_out_columns(
    n_classes: int, model: FoldModel, X: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Raw logits (V, ``n_classes``) of the fold model on the held-out rows X (V, D):
    ``-inf`` for the classes its fit part missed."""
    return model.columns(cascade_logits(model.cascade, X), n_classes)


def set_calibration(clf: FittedModel, logits: np.ndarray, target: np.ndarray) -> None:
    """Fit on held-out raw logits (M, C) of classes ``target`` (M,): the temperature
    (``clf.temperature_``, every probability), BCTS (``clf.bcts_``, EM's posteriors,
    :func:`dlsa.estimator.prior_estimate.fit_bcts`) and BBSE's confusion matrix
    (``clf.held_out_confusion_``).

    Raises:
        DLSAInputError: with fewer than 2 usable held-out rows.
    """
    clf.temperature_ = fit_temperature(logits, target)
    clf.bcts_ = fit_bcts(clf, logits, target)
    clf.held_out_confusion_ = held_out_confusion(logits, target, clf)
