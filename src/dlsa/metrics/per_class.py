"""Per-class results: for each class, its training and test counts, recall, precision and
where the cascade sent its test samples, from two accumulated count tables (so that a
feature file read chunk by chunk and features held in memory give the same rows).

Pure functions of numpy arrays; :func:`write_per_class_csv` writes the rows as CSV.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def class_stage_counts(
    target: np.ndarray, stage: np.ndarray, n_classes: int, n_stages: int
) -> np.ndarray:
    """Counts (C, S) of the samples of each class (target (N,)) handled by each stage
    (stage (N,) in ``0 .. S-1``; the last is the regular classifier).

    Example:
        >>> class_stage_counts(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2).tolist()
        [[1, 1], [0, 1]]
    """
    flat = np.asarray(target, dtype=np.int64) * n_stages + np.asarray(stage, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_stages).reshape(n_classes, n_stages)


def stage_names(n_stages: int) -> list[str]:
    """Column names of the stages: ``cluster_aided_1`` ... and ``regular`` (the last).

    Example:
        >>> stage_names(3)
        ['cluster_aided_1', 'cluster_aided_2', 'regular']
    """
    return [f"cluster_aided_{i + 1}" for i in range(n_stages - 1)] + ["regular"]


def class_recall(confusion: np.ndarray) -> np.ndarray:
    """Test accuracy (C,) of each class from confusion counts (C, C) (rows true class);
    NaN for a class without test samples.

    Example:
        >>> class_recall(np.array([[3, 1], [0, 0]])).tolist()
        [0.75, nan]
    """
    tests = confusion.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tests > 0, np.diag(confusion) / tests, np.nan)


def per_class_rows(
    confusion: np.ndarray,
    class_stage: np.ndarray,
    train_counts: np.ndarray,
    class_names: Sequence[Any],
) -> list[dict[str, Any]]:
    """One row per class: ``class``, ``train_count``, ``test_count``, ``recall`` (None
    without test samples), ``precision`` (None when never predicted), and per stage the
    share of its test samples that stage handled (``routed_<stage>``).

    Args:
        confusion: (C, C) counts, rows true class, columns prediction.
        class_stage: (C, S) counts of :func:`class_stage_counts`.
        train_counts: (C,) training samples per class.
        class_names: C names in the order of the rows.

    Example:
        >>> rows = per_class_rows(np.array([[3, 1], [0, 2]]), np.array([[4, 0], [1, 1]]),
        ...                       np.array([90, 10]), ["a", "b"])
        >>> rows[1]["recall"], rows[0]["precision"], rows[1]["routed_cluster_aided_1"]
        (1.0, 1.0, 0.5)
    """
    tests = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    recall = class_recall(confusion)
    names = stage_names(class_stage.shape[1])
    rows = []
    for c, name in enumerate(class_names):
        row: dict[str, Any] = {
            "class": name.item() if isinstance(name, np.generic) else name,
            "train_count": int(train_counts[c]),
            "test_count": int(tests[c]),
            "recall": None if np.isnan(recall[c]) else float(recall[c]),
            "precision": float(hits[c] / predicted[c]) if predicted[c] else None,
        }
        for s, stage in enumerate(names):
            row[f"routed_{stage}"] = float(class_stage[c, s] / tests[c]) if tests[c] else None
        rows.append(row)
    return rows


def write_per_class_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write :func:`per_class_rows` (plus any extra columns of the rows) as CSV; empty
    cells for None."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
