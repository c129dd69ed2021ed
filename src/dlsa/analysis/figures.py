"""The paper's figures for a fitted model on a labelled feature set.

Glue between fitted models, :mod:`dlsa.metrics` and :mod:`dlsa.analysis.tsne` (which
compute) and :mod:`dlsa.analysis.plots` (which draws): binned confusion matrices
(Fig. 1; supplement Fig. 1-3 with a base model), cluster sizes and purity of each
filter on its training samples (Fig. 5-6), head-tail separation per filter (Fig. 7),
the t-SNE of the cascade (Fig. 8), each class's test accuracy against its training
count and the reliability diagram. :func:`write_figures` scores features held in
memory, :func:`write_figures_file` a feature file of any size, chunk by chunk; both
draw the same figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsa.analysis.class_plots import plot_per_class_accuracy, plot_reliability
from dlsa.analysis.evaluation import encode_labels, evaluate
from dlsa.analysis.plots import (
    plot_cascade_tsne,
    plot_cluster_purity,
    plot_cluster_sizes,
    plot_confusion,
    plot_confusion_difference,
    plot_separation,
    save_figure,
)
from dlsa.analysis.streaming import evaluate_file
from dlsa.analysis.tsne import tsne_embedding, tsne_rows
from dlsa.estimator import DLSAClassifier
from dlsa.io.feature_chunks import CHUNK_ROWS, feature_file_info, iter_feature_chunks
from dlsa.metrics import HEAD_THRESHOLD, confusion_matrix_binned, histogram_purity
from dlsa.metrics.confusion import binned_from_confusion
from dlsa.metrics.per_class import class_recall
from dlsa.selection import describe


def model_names(model: DLSAClassifier, base: DLSAClassifier | None) -> tuple[str, str]:
    """The names of the reference (``base``) and of the chosen model (``model``) in the
    figures' legends and titles, as ``report.md`` writes them: the reference's base
    method, the chosen model's description (with " (chosen)" when both are the same, e.g.
    when the selection kept Balanced Softmax without DLSA)."""
    chosen = describe(model.fitted_params_)
    ref = "reference" if base is None else str(base.fitted_params_["base"])
    return ref, chosen + " (chosen)" if chosen == ref else chosen


def filter_cluster_statistics(model: DLSAClassifier) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per filter, cluster sizes (K,) and purity (K,) (NaN for empty clusters) of the
    training samples that reached it, from the class histogram stored in the model."""
    return [histogram_purity(flt.cluster_counts.cpu().numpy()) for flt in model.filters_]


@dataclass(frozen=True)
class _FigureData:
    """What the figures draw, however it was scored.

    Attributes:
        matrix: binned confusion (B, B) of the model.
        before: binned confusion (B, B) of the base model, or None.
        separation: per filter, the ``separation`` rows of :func:`evaluate`.
        embedding: t-SNE embedding (M, 2) of the sampled rows.
        is_tail: whether each sampled row (M,) is of a tail class.
        stage: stage (M,) of each sampled row.
        recall: per model name, (C,) test accuracy of each class (NaN without samples).
        reliability: per model name, its reliability bins (:mod:`dlsa.metrics.calibration`).
    """

    matrix: np.ndarray
    before: np.ndarray | None
    separation: list[dict[str, Any]]
    embedding: np.ndarray
    is_tail: np.ndarray
    stage: np.ndarray
    recall: dict[str, np.ndarray]
    reliability: dict[str, list[dict[str, Any]]]


def write_figures(
    model: DLSAClassifier,
    X: np.ndarray,
    y: np.ndarray,
    folder: Path,
    *,
    base: DLSAClassifier | None = None,
    n_bins: int = 20,
    tsne_samples: int = 2000,
    random_state: int = 0,
) -> list[Path]:
    """Draw every figure for ``model`` on features X (N, D), labels y (N,) into ``folder``.

    Returns:
        The PNG files written.
    """
    target = encode_labels(model, np.asarray(y))
    result = evaluate(model, X, y)
    counts = model.class_counts_
    before = None
    ref, chosen = model_names(model, base)
    recall = {chosen: class_recall(result["confusion"])}
    reliability = {chosen: result["calibration"]["bins"]}
    if base is not None:
        base_eval = evaluate(base, X, y)
        before = confusion_matrix_binned(base_eval["pred"], target, counts, n_bins)
        recall = {ref: class_recall(base_eval["confusion"])} | recall
        reliability = {ref: base_eval["calibration"]["bins"]} | reliability
    emb, idx = tsne_embedding(X, random_state=random_state, max_samples=tsne_samples, n_threads=1)
    data = _FigureData(
        matrix=confusion_matrix_binned(result["pred"], target, counts, n_bins),
        before=before,
        separation=result["separation"],
        embedding=emb,
        is_tail=counts[target[idx]] <= HEAD_THRESHOLD,
        stage=result["stage"][idx],
        recall=recall,
        reliability=reliability,
    )
    return _draw(model, data, folder, base)


def write_figures_file(
    model: DLSAClassifier,
    path: str | os.PathLike[str],
    folder: Path,
    *,
    base: DLSAClassifier | None = None,
    n_bins: int = 20,
    tsne_samples: int = 2000,
    random_state: int = 0,
    chunk_rows: int = CHUNK_ROWS,
) -> list[Path]:
    """:func:`write_figures` on a labelled feature file of any size, read ``chunk_rows``
    rows at a time: the confusion matrices come from counts
    (:func:`dlsa.analysis.streaming.evaluate_file`), and only the ``tsne_samples`` rows
    the t-SNE embeds (:func:`dlsa.analysis.tsne.tsne_rows`, the rows
    :func:`dlsa.analysis.tsne.tsne_embedding` draws) are kept. Reads the file two times
    (three with ``base``).

    Returns:
        The PNG files written.
    """
    counts = model.class_counts_
    result = evaluate_file(model, path, chunk_rows=chunk_rows)
    before = None
    ref, chosen = model_names(model, base)
    recall = {chosen: class_recall(result["confusion"])}
    reliability = {chosen: result["calibration"]["bins"]}
    if base is not None:
        base_eval = evaluate_file(base, path, chunk_rows=chunk_rows)
        before = binned_from_confusion(base_eval["confusion"], counts, n_bins)
        recall = {ref: class_recall(base_eval["confusion"])} | recall
        reliability = {ref: base_eval["calibration"]["bins"]} | reliability
    X, y = _rows(
        path, tsne_rows(feature_file_info(path).n_rows, tsne_samples, random_state), chunk_rows
    )
    emb, _ = tsne_embedding(X, random_state=random_state, max_samples=len(X), n_threads=1)
    data = _FigureData(
        matrix=binned_from_confusion(result["confusion"], counts, n_bins),
        before=before,
        separation=result["separation"],
        embedding=emb,
        is_tail=counts[encode_labels(model, y)] <= HEAD_THRESHOLD,
        stage=model.route(X),
        recall=recall,
        reliability=reliability,
    )
    return _draw(model, data, folder, base)


def _rows(
    path: str | os.PathLike[str], rows: np.ndarray, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features (M, D) and labels (M,) of the sorted ``rows`` of a feature file."""
    xs, ys = [], []
    for chunk in iter_feature_chunks(path, chunk_rows, require_labels=True):
        lo, hi = np.searchsorted(rows, [chunk.offset, chunk.offset + len(chunk.X)])
        xs.append(chunk.X[rows[lo:hi] - chunk.offset])
        ys.append(chunk.y[rows[lo:hi] - chunk.offset])
    return np.concatenate(xs), np.concatenate(ys)


def _draw(
    model: DLSAClassifier, data: _FigureData, folder: Path, base: DLSAClassifier | None
) -> list[Path]:
    """Save the figures of ``data`` into ``folder``; returns the PNG files written."""
    ref, chosen = model_names(model, base)
    written = [save_figure(plot_confusion(data.matrix, title=chosen), folder / "confusion.png")]
    if data.before is not None:
        title = f"Difference ({chosen} \u2212 {ref})"
        fig = plot_confusion_difference(data.before, data.matrix, title=title)
        written.append(save_figure(fig, folder / "confusion_difference.png"))
    stats = filter_cluster_statistics(model)
    if stats:
        sizes = {f"filter {i + 1}": s for i, (s, _) in enumerate(stats)}
        purity = {f"filter {i + 1}": p for i, (_, p) in enumerate(stats)}
        written.append(save_figure(plot_cluster_sizes(sizes), folder / "cluster_sizes.png"))
        written.append(save_figure(plot_cluster_purity(purity), folder / "cluster_purity.png"))
        acc = [s["accuracy"] for s in data.separation]
        written.append(save_figure(plot_separation({"test": acc}), folder / "separation.png"))
    fig = plot_cascade_tsne(data.embedding, data.is_tail, data.stage, len(model.filters_))
    written.append(save_figure(fig, folder / "cascade_tsne.png"))
    fig = plot_per_class_accuracy(model.class_counts_, data.recall)
    written.append(save_figure(fig, folder / "per_class_accuracy.png"))
    fig = plot_reliability(data.reliability)
    written.append(save_figure(fig, folder / "reliability.png"))
    return written
