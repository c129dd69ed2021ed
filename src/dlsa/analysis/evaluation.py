"""Evaluation of fitted classifiers: headline metrics, routing and per-stage diagnostics.

Bridges fitted estimators and the pure functions of :mod:`dlsa.metrics`; it never fits
anything and is where "base" and "base + DLSA" are compared on the same samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlsa.estimator import DLSAClassifier
from dlsa.estimator.inputs import class_indices
from dlsa.metrics import HEAD_THRESHOLD
from dlsa.metrics.evaluation_counts import EvaluationCounts
from dlsa.metrics.per_class import per_class_rows


def encode_labels(clf: DLSAClassifier, y: np.ndarray, *, source: str = "y") -> np.ndarray:
    """Indices (N,) of labels ``y`` (N,) in ``clf.classes_``
    (:func:`dlsa.estimator.inputs.class_indices`).

    Raises:
        DLSAInputError: if the labels are of another kind (text, integer, boolean) than
            the model's classes, or a label was never seen in training (names up to five
            of them).
    """
    return class_indices(clf.classes_, y, source=source)


def evaluate(
    clf: DLSAClassifier,
    X: np.ndarray,
    y: np.ndarray,
    *,
    many: int = 100,
    few: int = 20,
    head_threshold: int = HEAD_THRESHOLD,
    source: str = "test",
) -> dict[str, Any]:
    """Metrics of ``clf`` on features X (N, D) with labels y (N,).

    The numbers come from :class:`~dlsa.metrics.evaluation_counts.EvaluationCounts`, the one
    path that :func:`dlsa.analysis.streaming.evaluate_file` takes chunk by chunk.

    Returns:
        ``metrics`` (overall/many/medium/few/mcc/nmi, see
        :func:`dlsa.metrics.classification_report`), ``stages`` (per stage: samples,
        accuracy, tail share), ``separation`` (per filter: head-tail separation of the
        samples that reached it, see :func:`dlsa.metrics.head_tail_separation`, under
        the keys of :data:`dlsa.metrics.evaluation_counts.SEPARATION_KEYS`; accuracy
        None when no class has ``head_threshold`` train samples or fewer),
        ``calibration`` (ECE, NLL, Brier and reliability bins of ``predict_proba``), the
        predictions ``pred`` (N,) and stages ``stage`` (N,) as lists-ready arrays, and
        the counts behind the per-class results (:func:`per_class`): ``confusion``
        (C, C) and ``class_stage`` (C, S), as :func:`dlsa.analysis.streaming.evaluate_file`.
    """
    target = encode_labels(clf, np.asarray(y), source=source)
    proba, stage = clf.predict_proba_and_route(X)
    pred = proba.argmax(axis=1)
    counts = EvaluationCounts(clf.class_counts_, len(clf.filters_), head_threshold)
    counts.update(pred, target, stage, proba)
    return counts.compute(many=many, few=few) | {"pred": pred, "stage": stage}


def per_class(clf: DLSAClassifier, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-class rows (:func:`dlsa.metrics.per_class.per_class_rows`) of an evaluation
    of ``clf`` (:func:`evaluate` or :func:`dlsa.analysis.streaming.evaluate_file`)."""
    return per_class_rows(
        result["confusion"], result["class_stage"], clf.class_counts_, clf.classes_
    )


def compare_on_stages(
    dlsa_eval: dict[str, Any], base_eval: dict[str, Any], target: np.ndarray
) -> list[dict[str, Any]]:
    """Per DLSA stage: its accuracy and the base method's accuracy on the same samples.

    Args:
        dlsa_eval: :func:`evaluate` of the DLSA model.
        base_eval: :func:`evaluate` of the base model on the same samples.
        target: (N,) encoded labels of those samples.
    """
    rows = []
    stage, pred_d, pred_b = dlsa_eval["stage"], dlsa_eval["pred"], base_eval["pred"]
    for s in range(int(stage.max(initial=0)) + 1):
        mask = stage == s
        if not mask.any():
            continue
        rows.append(
            {
                "stage": int(s),
                "n": int(mask.sum()),
                "dlsa_accuracy": float((pred_d[mask] == target[mask]).mean()),
                "base_accuracy": float((pred_b[mask] == target[mask]).mean()),
            }
        )
    return rows
