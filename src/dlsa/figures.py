"""The paper's figures for a fitted model on a labelled feature set.

Glue between fitted models, :mod:`dlsa.metrics` (which computes) and :mod:`dlsa.plots`
(which draws): binned confusion matrices (Fig. 1; supplement Fig. 1-3 with a base
model), cluster sizes and purity of each filter on its training samples (Fig. 5-6),
head-tail separation per filter (Fig. 7) and the t-SNE of the cascade (Fig. 8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlsa.cascade import DLSAClassifier
from dlsa.evaluation import encode_labels, evaluate
from dlsa.metrics import HEAD_THRESHOLD, confusion_matrix_binned, histogram_purity, tsne_embedding
from dlsa.plots import (
    plot_cascade_tsne,
    plot_cluster_purity,
    plot_cluster_sizes,
    plot_confusion,
    plot_confusion_difference,
    plot_separation,
    save_figure,
)


def filter_cluster_statistics(model: DLSAClassifier) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per filter, cluster sizes (K,) and purity (K,) (NaN for empty clusters) of the
    training samples that reached it, from the class histogram stored in the model."""
    return [histogram_purity(flt.cluster_counts.cpu().numpy()) for flt in model.filters_]


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
    written: list[Path] = []
    target = encode_labels(model, np.asarray(y))
    result = evaluate(model, X, y)
    counts = model.class_counts_
    matrix = confusion_matrix_binned(result["pred"], target, counts, n_bins)
    written.append(
        save_figure(plot_confusion(matrix, title="base + DLSA"), folder / "confusion.png")
    )
    if base is not None:
        base_pred = base.predict_proba(X).argmax(axis=1)
        before = confusion_matrix_binned(base_pred, target, counts, n_bins)
        fig = plot_confusion_difference(before, matrix)
        written.append(save_figure(fig, folder / "confusion_difference.png"))
    stats = filter_cluster_statistics(model)
    if stats:
        sizes = {f"filter {i + 1}": s for i, (s, _) in enumerate(stats)}
        purity = {f"filter {i + 1}": p for i, (_, p) in enumerate(stats)}
        written.append(save_figure(plot_cluster_sizes(sizes), folder / "cluster_sizes.png"))
        written.append(save_figure(plot_cluster_purity(purity), folder / "cluster_purity.png"))
        acc = [s["accuracy"] for s in result["separation"]]
        written.append(save_figure(plot_separation({"test": acc}), folder / "separation.png"))
    emb, idx = tsne_embedding(X, random_state=random_state, max_samples=tsne_samples, n_threads=1)
    is_tail = counts[target[idx]] <= HEAD_THRESHOLD
    fig = plot_cascade_tsne(emb, is_tail, result["stage"][idx], len(model.filters_))
    written.append(save_figure(fig, folder / "cascade_tsne.png"))
    return written
