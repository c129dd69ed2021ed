"""A fitted model's estimate of the deployment prior from unlabelled rows
(:mod:`dlsa.cascade.prior_estimate`), and the held-out confusion matrix BBSE needs.

Scores are taken in the balanced frame: ``logits / T`` (T the model's temperature, if
calibrated), minus ``log pi_train`` for a base whose logits carry the training prior
(plain CE), i.e. the posteriors under the uniform prior, whatever test prior is set.

EM on a calibrated model (``clf.bcts_``, fitted by :func:`fit_bcts` beside the
temperature) takes them bias-corrected instead: ``logits / T_b + offset + b``, where
``softmax(logits / T_b + offset + log pi_0 + b)`` is the BCTS posterior of the held-out
rows, whose class frequencies ``pi_0`` it was fitted on (out of fold: the training
prior; a validation set: its own). EM with the reference prior ``pi_0`` on those
posteriors, ``p_pi ∝ q pi / pi_0``, is EM with the uniform reference on the corrected
balanced scores (``log pi_0`` cancels), which also serves a class ``pi_0`` lacks. A
prior estimated so is applied the same way (:func:`scoring`): ``logits / T_b + offset +
b + log pi``, Bayes' rule relative to ``pi_0`` on the calibrated posteriors.

EM's estimate is used only when its rows give evidence of a shift away from the
reference prior (:func:`reference_prior`: the one the model predicts with when no test
prior is set), by the likelihood-ratio test of :mod:`dlsa.cascade.shift_detection`, whose
null counts BCTS's bias uncertainty (``bcts_.null_weights``, from the same held-out
rows). Otherwise the test prior is the reference and predictions are those without one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from dlsa.cascade.deployment_prior import logit_shift, resolve_test_prior
from dlsa.cascade.prior_estimate import (
    EM_MAX_ITER,
    METHODS,
    SHRINK_PER_CLASS,
    bbse_prior,
    check_rows,
    confusion_counts,
    em_prior,
    shrink,
)
from dlsa.cascade.shift_detection import LEVEL, null_weights, shift_test
from dlsa.cascade.temperature import (
    BIAS_PRIOR_SD,
    BiasCorrection,
    fit_bias_corrected_temperature,
)
from dlsa.errors import DLSAInputError
from dlsa.estimator.fitted import FittedModel


def balanced_offset(clf: FittedModel) -> np.ndarray:
    """What puts the model's logits (C,) in the balanced frame (a constant for a
    balanced base; ``- log pi_train`` up to a constant for plain CE)."""
    n = len(clf.classes_)
    shift = logit_shift(np.full(n, 1.0 / n), clf.class_counts_, clf.cascade_.base.balanced)
    assert shift is not None
    return shift


def reference_prior(clf: FittedModel) -> np.ndarray:
    """The prior (C,) the model predicts with when no test prior is set, which EM's
    estimate must beat: uniform for a balanced base, the training prior for one whose
    logits carry it (plain CE)."""
    if clf.cascade_.base.balanced:
        return np.full(len(clf.classes_), 1.0 / len(clf.classes_))
    counts = np.asarray(clf.class_counts_, dtype=np.float64)
    return counts / counts.sum()


def fit_bcts(clf: FittedModel, logits: np.ndarray, target: np.ndarray) -> BiasCorrection:
    """BCTS on held-out raw logits (M, C) of classes ``target`` (M,): b = 0 is the
    balanced frame plus ``log pi_0``, ``pi_0`` (C,) the class frequencies of ``target``
    (a class it lacks keeps b = 0). The bias returned corrects the balanced frame; its
    ``null_weights`` (C - 1,) are those of the no-shift test at :func:`reference_prior`.

    Raises:
        DLSAInputError: with fewer than 2 usable held-out rows.
    """
    counts = np.bincount(target, minlength=len(clf.classes_))
    held_prior = counts / counts.sum()
    with np.errstate(divide="ignore"):
        reference = balanced_offset(clf) + np.log(held_prior)
    fit = fit_bias_corrected_temperature(logits, target, reference)
    weights = null_weights(
        logits, target, fit.temperature, balanced_offset(clf) + fit.bias, held_prior,
        reference_prior(clf), 1.0 / BIAS_PRIOR_SD**2,
    )  # fmt: skip
    return replace(fit, null_weights=weights)


def _corrected(clf: FittedModel) -> bool:
    """Whether the test prior was estimated by EM on bias-corrected scores."""
    info = getattr(clf, "test_prior_estimate_", None) or {}
    bcts = getattr(clf, "bcts_", None) is not None
    shifted = (info.get("shift_test") or {}).get("shift_detected", True)
    return bcts and clf.test_prior_ is not None and info.get("calibration") == "bcts" and shifted


def scoring(clf: FittedModel) -> tuple[np.ndarray | None, float | None]:
    """What predictions add to the logits (C,) (None: nothing) and divide them by (None:
    1): the test prior's :func:`~dlsa.cascade.deployment_prior.logit_shift` and the
    temperature; for a prior EM estimated on BCTS scores, BCTS's bias and temperature."""
    shift = logit_shift(clf.test_prior_, clf.class_counts_, clf.cascade_.base.balanced)
    if shift is None or not _corrected(clf):
        return shift, clf.temperature_
    return shift + clf.bcts_.bias, clf.bcts_.temperature


def _balanced_chunks(
    clf: FittedModel, chunks: Iterable[np.ndarray], corrected: bool = False
) -> Iterable[Any]:
    """Balanced-frame logits (B, C) (a CPU tensor) of each chunk of rows (B, D),
    bias-corrected (BCTS) when ``corrected``."""
    offset, temperature = balanced_offset(clf), clf.temperature_
    if corrected:
        offset, temperature = offset + clf.bcts_.bias, clf.bcts_.temperature
    device_offset = torch.from_numpy(offset).to(clf.cascade_.device)
    for X in chunks:
        x = clf._check_X(X)
        for logits, _ in clf.cascade_.chunks(x, device_offset, temperature):
            yield logits.cpu()


def estimate_test_prior(
    clf: FittedModel, chunks: Iterable[np.ndarray], name: str, level: float | None = LEVEL
) -> tuple[np.ndarray, dict[str, Any]]:
    """The estimated prior (C,) of the rows of ``chunks`` (arrays (B, D)) by ``name``
    ("estimate": EM; "estimate-bbse": BBSE), shrunk toward the training prior, and what
    was done (method, rows, shrinkage pseudo-rows, the unshrunk prior; for EM its
    iterations, the calibration of its posteriors: "bcts", "temperature" or None, and
    ``shift_test``: the no-shift test at ``level`` (:func:`shift_test`;
    None: not tested, as for BBSE). When EM's rows give no evidence of a shift, the
    prior is :func:`reference_prior`, unshrunk.

    Memory: EM keeps the posteriors (N, C) in float32; BBSE only counts (C,).

    Raises:
        DLSAInputError: fewer than :data:`~dlsa.cascade.prior_estimate.MIN_ROWS` rows,
            BBSE on a model without a held-out confusion matrix, an unknown name.
    """
    method = METHODS.get(name)
    if method is None:
        raise DLSAInputError(f"test prior estimator must be one of {sorted(METHODS)}")
    n_classes = len(clf.classes_)
    confusion = getattr(clf, "held_out_confusion_", None)
    if method == "bbse" and confusion is None:
        raise DLSAInputError(
            "estimate-bbse needs a held-out confusion matrix: fit it with "
            "fit_held_out_confusion or calibrate (dlsa fit --calibrate, or --val)"
        )
    info: dict[str, Any] = {"method": method, "shift_test": None}
    if method == "em":
        corrected = getattr(clf, "bcts_", None) is not None
        scores = _balanced_chunks(clf, chunks, corrected)
        parts = [torch.softmax(z, dim=1).to(torch.float32) for z in scores]
        posteriors = torch.cat(parts).numpy() if parts else np.zeros((0, n_classes))
        n_rows = len(posteriors)
        check_rows(n_rows)
        raw, iterations = em_prior(posteriors)
        calibration = "bcts" if corrected else "temperature" if clf.temperature_ else None
        info |= {"iterations": iterations, "converged": iterations < EM_MAX_ITER}
        info |= {"calibration": calibration}
        if level is not None:
            weights = clf.bcts_.null_weights if corrected else None
            test = shift_test(posteriors, raw, reference_prior(clf), weights, level)
            reference = "uniform" if clf.cascade_.base.balanced else "train"
            info["shift_test"] = test | {"reference": reference}
    else:
        counts = np.zeros(n_classes, dtype=np.int64)
        for z in _balanced_chunks(clf, chunks):
            counts += np.bincount(z.argmax(dim=1).numpy(), minlength=n_classes)
        n_rows = int(counts.sum())
        check_rows(n_rows)
        raw = bbse_prior(confusion, counts)
    kept = info["shift_test"] is not None and not info["shift_test"]["shift_detected"]
    prior = reference_prior(clf) if kept else shrink(raw, n_rows, clf.class_counts_)
    info |= {
        "rows": n_rows,
        "shrinkage_rows": SHRINK_PER_CLASS * n_classes,
        "shrinkage_target": "train",
        "unshrunk": raw.tolist(),
    }
    return prior / prior.sum(), info


def set_estimated_prior(
    clf: FittedModel, chunks: Iterable[np.ndarray], name: str, level: float | None = LEVEL
) -> None:
    """Set ``clf.test_prior_`` (C,) to :func:`estimate_test_prior`'s estimate on the rows
    of ``chunks`` (arrays (B, D)) (EM's no-shift test at ``level``; None: untested) and
    ``clf.test_prior_estimate_`` to what was done.

    Raises:
        DLSAInputError: what :func:`estimate_test_prior` raises.
    """
    prior, info = estimate_test_prior(clf, chunks, name, level)
    clf.test_prior_ = resolve_test_prior(prior, clf.classes_, clf.class_counts_)
    clf.test_prior_estimate_ = info


def held_out_confusion(logits: np.ndarray, target: np.ndarray, clf: FittedModel) -> np.ndarray:
    """Counts (C, C) of held-out raw logits (N, C) (``[i, j]``: class j predicted as i,
    in the balanced frame) for class indices ``target`` (N,)."""
    if len(target) < 1:
        raise DLSAInputError("the held-out confusion matrix needs at least 1 labelled row")
    predicted = np.argmax(np.asarray(logits, dtype=np.float64) + balanced_offset(clf), axis=1)
    return confusion_counts(predicted, target, len(clf.classes_))


def confusion_to_json(confusion: np.ndarray | None) -> list[list[int]] | None:
    """The nonzero cells of counts (C, C) as ``[i, j, count]`` triples."""
    if confusion is None:
        return None
    rows, cols = np.nonzero(confusion)
    return [[int(i), int(j), int(confusion[i, j])] for i, j in zip(rows, cols, strict=True)]


def confusion_from_json(cells: Any, n_classes: int) -> np.ndarray | None:
    """Counts (C, C) from :func:`confusion_to_json`'s triples.

    Raises:
        ValueError: a cell out of range, a count that is not a positive integer.
    """
    if cells is None:
        return None
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for cell in cells:
        if not (isinstance(cell, list) and len(cell) == 3 and all(type(v) is int for v in cell)):
            raise ValueError(f"held_out_confusion: a cell must be [i, j, count], got {cell!r}")
        i, j, count = cell
        if not (0 <= i < n_classes and 0 <= j < n_classes and count > 0):
            raise ValueError(f"held_out_confusion: cell {cell!r} out of range")
        confusion[i, j] = count
    if confusion.sum() < 1:
        raise ValueError("held_out_confusion: no counts")
    return confusion
