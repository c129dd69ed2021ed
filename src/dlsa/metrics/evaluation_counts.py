"""The one path from predictions to evaluation numbers, for data in memory and for files
read chunk by chunk: :class:`EvaluationCounts` accumulates counts with :meth:`update`
and turns them into metrics, the stage table and the head-tail separation with
:meth:`compute` (the update / compute pattern of torchmetrics). Every number is a
function of the counts, so one pass over all rows and many passes over chunks give the
same result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlsa.metrics.calibration import CalibrationCounts
from dlsa.metrics.confusion import confusion_counts, report_from_confusion
from dlsa.metrics.filters import HEAD_THRESHOLD, separation_from_counts
from dlsa.metrics.per_class import class_stage_counts

SEPARATION_KEYS = {
    "accuracy": "accuracy",
    "tail_share_selected": "tail_share_routed",
    "tail_share_input": "tail_share_input",
    "n_selected": "n_routed",
    "n_input": "n_input",
}
"""Key of each separation row that evaluation writes (``results.json``, ``dlsa evaluate
--out``; read by their users, so kept) -> key of
:func:`dlsa.metrics.filters.separation_from_counts` it holds: "selected" there means
routed."""


class EvaluationCounts:
    """Counts of a model's predictions on labelled samples.

    Args:
        class_counts: (C,) training samples per class (shot groups, head and tail).
        n_levels: L, the model's flow filters (stages are ``0 .. L``; L is regular).
        head_threshold: a class with more training samples than this is head.

    Attributes:
        confusion: (C, C) rows true class, columns prediction.
        per_stage: (3, L + 1) per stage: samples, correct predictions, tail samples.
        class_stage: (C, L + 1) samples of each class per stage.
        calibration: the sums behind ECE, NLL and Brier (when probabilities are given).

    Example:
        >>> acc = EvaluationCounts(np.array([300, 5]), n_levels=1)
        >>> acc.update(np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([1, 0, 0]))
        >>> out = acc.compute()
        >>> out["metrics"]["overall"], [r["n"] for r in out["stages"]]
        (0.6666666666666666, [2, 1])
    """

    def __init__(
        self, class_counts: np.ndarray, n_levels: int, head_threshold: int = HEAD_THRESHOLD
    ) -> None:
        self.class_counts = np.asarray(class_counts)
        self.n_levels = n_levels
        self.is_tail = self.class_counts <= head_threshold
        n_classes, n_stages = len(self.class_counts), n_levels + 1
        self.confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.per_stage = np.zeros((3, n_stages), dtype=np.int64)
        self.class_stage = np.zeros((n_classes, n_stages), dtype=np.int64)
        self.calibration = CalibrationCounts()

    def update(
        self,
        pred: np.ndarray,
        target: np.ndarray,
        stage: np.ndarray,
        proba: np.ndarray | None = None,
    ) -> None:
        """Add predicted class indices (N,), true class indices (N,), stages (N,) and,
        if given, the probabilities (N, C) (for calibration)."""
        if proba is not None:
            self.calibration.update(proba, target)
        n_classes, n_stages = len(self.class_counts), self.n_levels + 1
        self.confusion += confusion_counts(pred, target, n_classes)
        self.per_stage += np.stack(
            [
                np.bincount(stage, minlength=n_stages),
                np.bincount(stage[pred == target], minlength=n_stages),
                np.bincount(stage[self.is_tail[target]], minlength=n_stages),
            ]
        )[:, :n_stages]
        self.class_stage += class_stage_counts(target, stage, n_classes, n_stages)

    def compute(self, *, many: int = 100, few: int = 20) -> dict[str, Any]:
        """``metrics`` (:func:`dlsa.metrics.classification_report`'s keys), ``stages``
        (per stage: samples, accuracy, tail share), ``separation`` (per filter,
        :func:`dlsa.metrics.filters.separation_from_counts`: the samples that reached
        filter l are those of stages >= l, it routed those of stage l; accuracy None
        without a tail class; the keys of :data:`SEPARATION_KEYS`), ``calibration``
        (ECE, NLL, Brier, reliability bins; :mod:`dlsa.metrics.calibration`; None values
        without probabilities),
        ``confusion`` (C, C) and ``class_stage`` (C, L + 1)."""
        metrics = report_from_confusion(self.confusion, self.class_counts, many=many, few=few)
        return {
            "metrics": metrics,
            "stages": self._stage_table(),
            "separation": self._separation(),
            "calibration": self.calibration.compute(),
            "confusion": self.confusion,
            "class_stage": self.class_stage,
        }

    def _stage_table(self) -> list[dict[str, Any]]:
        rows = []
        for s in range(self.n_levels + 1):
            n, correct, tail = (int(v) for v in self.per_stage[:, s])
            rows.append(
                {
                    "stage": "regular" if s == self.n_levels else f"cluster-aided {s + 1}",
                    "n": n,
                    "accuracy": correct / n if n else None,
                    "tail_share": tail / n if n else None,
                }
            )
        return rows

    def _separation(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        has_tail = bool(self.is_tail.any())
        for level in range(self.n_levels):
            n_input = int(self.per_stage[0, level:].sum())
            if n_input == 0 or not has_tail:
                out.append({"accuracy": None, "n_input": 0, "n_selected": 0})
                continue
            n_routed, tail_routed = (int(v) for v in self.per_stage[[0, 2], level])
            tail_input = int(self.per_stage[2, level:].sum())
            sep = separation_from_counts(n_routed, tail_routed, n_input, tail_input)
            out.append({written: sep[key] for written, key in SEPARATION_KEYS.items()})
        return out
