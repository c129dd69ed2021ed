"""Input checks shared by the metrics (labels are integers ``0 .. C-1``)."""

from __future__ import annotations

import numpy as np


def _labels(x: np.ndarray, name: str) -> np.ndarray:
    """Check that ``x`` is a non-empty 1-D integer array and return it as int64."""
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x.astype(np.int64, copy=False)


def _same_length(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same length, got shapes {a.shape} and {b.shape}"
        )


def _in_range(x: np.ndarray, name: str, n: int) -> None:
    if x.min() < 0 or x.max() >= n:
        raise ValueError(f"{name} must lie in [0, {n - 1}], got values in [{x.min()}, {x.max()}]")


def _pair(
    preds: np.ndarray, target: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``preds`` and ``target`` (1-D, integer, same length, in range)."""
    preds, target = _labels(preds, "preds"), _labels(target, "target")
    _same_length(preds, "preds", target, "target")
    if n_classes is not None:
        _in_range(preds, "preds", n_classes)
        _in_range(target, "target", n_classes)
    return preds, target


def _counts(train_counts: np.ndarray) -> np.ndarray:
    """Check that ``train_counts`` is a non-empty 1-D array of non-negative numbers."""
    counts = np.asarray(train_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"train_counts must be a non-empty 1-D array, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("train_counts must be non-negative")
    return counts
