"""The Cluster-aided Classifier (Sec. 3.4 of the paper), one per cascade level.

A cluster-aided classifier is a stage classifier (:class:`dlsa.classifiers.StageClassifier`
with ``use_prior=True``) of the samples its level's flow filter routes. Its inputs are
``[x, z]``: the features x (N, D) and their latent codes z (N, D) under the filter (plus
the base method's logits (N, C) with ``stack_base``), and its logits get the cluster
prior ``P(y | h = k_hat)`` (N, C) of each sample's most probable cluster
(:meth:`dlsa.filter.FlowFilter.cluster_prior`). With ``regular_cluster_aided`` the
regular classifier is one too, on the last filter's ``[x, z]`` and prior.

:class:`ClusterAided` assembles those inputs and scores any stage; the cascade's fitting
and inference mixins both use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dlsa.classifiers import ClusterPrior, Prior, StageClassifier
from dlsa.filter import FilterOutput
from dlsa.rows import SCORE_CHUNK, Rows, cat_columns, map_rows

if TYPE_CHECKING:
    from torch import nn

    from dlsa.bases import BaseMethod


class ClusterAided:
    """Inputs and logits of cluster-aided classifiers (a mixin of the estimator).

    Uses the estimator's ``filters_``, ``fallback_``, ``base_`` and ``stack_base``.
    """

    filters_: nn.ModuleList
    fallback_: StageClassifier
    base_: BaseMethod
    stack_base: bool
    classifier_layout: str

    @property
    def _twin_heads(self) -> bool:
        """Whether the cascade's classifiers are the release's two summed maps
        (``classifier_layout="release"``): cluster-aided ones then take x, not [x, z]."""
        return self.classifier_layout == "release"

    def _last_filter_inputs(
        self, x: Rows, out: FilterOutput | None = None
    ) -> tuple[Rows, ClusterPrior]:
        """Inputs ``[x, z]`` (N, 2D, + C with ``stack_base``) and cluster prior (N, C) of
        samples x (N, D) under the last filter, whose output on x is ``out`` if given."""
        flt = self.filters_[-1]
        out = flt.transform(x) if out is None else out
        return self._cluster_inputs(x, out.z), flt.cluster_prior(out.cluster)

    def _cluster_inputs(self, x: Rows, z: Rows) -> Rows:
        """Inputs of a cluster-aided classifier: ``[x, z]`` (N, 2D), or x alone (N, D)
        with ``classifier_layout="release"``, plus the base method's logits (N, C) when
        ``stack_base`` is set (unseen classes at -1e4); in host memory when x and z are
        (:class:`~dlsa.rows.HostRows`)."""
        parts = [x] if self._twin_heads else [x, z]
        if self.stack_base:
            with torch.no_grad():
                parts.append(map_rows(self._base_scores, x, SCORE_CHUNK))
        return cat_columns(parts)

    def _base_scores(self, x: Tensor) -> Tensor:
        """The base method's logits (N, C) of x (N, D), unseen classes at -1e4."""
        return self._stage_logits(self.fallback_, x, None).clamp_min(-1e4)

    def _stage_logits(self, model: StageClassifier, inputs: Tensor, prior: Prior | None) -> Tensor:
        """Inference logits (N, C) of one stage; classes it never saw are -inf."""
        return model.masked_logits(self.base_.logits(model, inputs, prior))
