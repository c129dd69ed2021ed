"""Figures of per-class results and of probabilities: each class's test accuracy against
its training count, and the reliability diagram (accuracy against confidence, Guo et al.
2017, Fig. 1). Drawn with matplotlib's object API, as :mod:`dlsa.analysis.plots`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dlsa.analysis.plots import figure_and_axes


def plot_per_class_accuracy(
    train_counts: np.ndarray,
    recall_by_model: Mapping[str, np.ndarray],
    *,
    ax: Axes | None = None,
) -> Figure:
    """Test accuracy (recall) of every class against its number of training samples
    (log scale), one series per model: where on the tail each model fails.

    Args:
        train_counts: (C,) training samples per class.
        recall_by_model: model name to (C,) recalls (NaN for classes without test
            samples, not drawn).
        ax: axes to draw on; a new figure when ``None``.

    Example:
        >>> fig = plot_per_class_accuracy(np.array([100, 10, 1]),
        ...                               {"base": np.array([0.9, 0.5, np.nan])})
        >>> fig.axes[0].collections[0].get_offsets().shape
        (2, 2)
    """
    fig, ax = figure_and_axes(ax, (5.0, 3.5))
    counts = np.asarray(train_counts, dtype=np.float64)
    for label, recall in recall_by_model.items():
        keep = ~np.isnan(recall)
        ax.scatter(counts[keep], recall[keep], s=12, alpha=0.7, label=label)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training samples of the class")
    ax.set_ylabel("test accuracy of the class")
    ax.set_title("Per-class accuracy")
    if recall_by_model:
        ax.legend()
    return fig


def plot_reliability(
    bins_by_model: Mapping[str, Sequence[Mapping[str, Any]]], *, ax: Axes | None = None
) -> Figure:
    """Reliability diagram: per confidence bin, the accuracy against the mean confidence
    of its samples (the diagonal is perfect calibration), one curve per model; marker
    area grows with the bin's share of the samples.

    Args:
        bins_by_model: model name to its ``bins`` of
            :func:`dlsa.metrics.calibration.calibration_report` (``confidence``,
            ``accuracy``, ``n`` per non-empty bin).
        ax: axes to draw on; a new figure when ``None``.

    Example:
        >>> b = [{"confidence": 0.55, "accuracy": 0.5, "n": 10},
        ...      {"confidence": 0.95, "accuracy": 0.8, "n": 30}]
        >>> fig = plot_reliability({"model": b})
        >>> fig.axes[0].lines[1].get_ydata().tolist()
        [0.5, 0.8]
    """
    fig, ax = figure_and_axes(ax, (4.5, 4.0))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    for label, bins in bins_by_model.items():
        conf = np.array([b["confidence"] for b in bins])
        acc = np.array([b["accuracy"] for b in bins])
        n = np.array([b["n"] for b in bins], dtype=np.float64)
        line = ax.plot(conf, acc, marker="", label=label)[0]
        if len(n):
            ax.scatter(conf, acc, s=10 + 200 * n / n.sum(), color=line.get_color(), alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (largest probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    return fig
