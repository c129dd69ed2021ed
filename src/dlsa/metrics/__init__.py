"""Evaluation metrics of long-tailed recognition and of DLSA's flow filters.

Pure NumPy / scikit-learn functions over integer labels ``0 .. C-1`` (the caller maps
labels). Inputs are always called ``preds, target``. Nothing here plots, prints or
accepts a model.

References:
    Xu, Y., Li, Y.-L., Li, J., Lu, C. "Constructing Balance from Imbalance for
    Long-tailed Image Recognition", ECCV 2022 (https://arxiv.org/abs/2208.02567):
    many/medium/few-shot accuracy and MCC/NMI (Sec. 4), binned confusion matrices
    (Fig. 1), cluster sizes and purity (Fig. 5, 6), head-tail separation (Fig. 7).
    The t-SNE of the cascade (Fig. 8) is figure preparation, in :mod:`dlsa.analysis.tsne`.
"""

from dlsa.metrics.accuracy import (
    SHOT_GROUPS,
    classification_report,
    frequency_order,
    mcc,
    nmi,
    per_class_accuracy,
    shot_accuracy,
    shot_groups,
    tail_half_accuracy,
)
from dlsa.metrics.confusion import confusion_matrix_binned
from dlsa.metrics.filters import (
    HEAD_THRESHOLD,
    cluster_statistics,
    good_clusters,
    head_tail_separation,
    histogram_purity,
    separation_from_counts,
)

__all__ = [
    "HEAD_THRESHOLD",
    "SHOT_GROUPS",
    "classification_report",
    "cluster_statistics",
    "confusion_matrix_binned",
    "frequency_order",
    "good_clusters",
    "head_tail_separation",
    "histogram_purity",
    "mcc",
    "nmi",
    "per_class_accuracy",
    "separation_from_counts",
    "shot_accuracy",
    "shot_groups",
    "tail_half_accuracy",
]
