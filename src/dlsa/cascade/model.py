"""The fitted cascade as one object: its levels (flow filter and cluster-aided classifier
each), the regular classifier and the fallback (the base method on all data), with public
routing and scoring that the estimator, the safeguard, the selection and persistence use.

::

    x -> Filter 1 --(log p(x) >= threshold)--> Cluster-aided Classifier 1
           | rest
           v
         Filter 2 ---------------------------> Cluster-aided Classifier 2
           | rest
           v
         Regular Classifier

A sample goes to the cluster-aided classifier of the first level whose filter routes it,
else to the regular classifier. A stage the safeguard switched off hands its samples to
the fallback. The cluster-aided classifier (Sec. 3.4 of the paper) takes ``[x, z]``:
the features x (N, D) and their latent codes z (N, D) under the filter (x alone with the
release's layout; plus the base method's logits (N, C) with ``stack_base``), and its
logits get the cluster prior ``P(y | h = k_hat)`` (N, C) of each sample's most probable
cluster. Every row is routed and scored on its own, so scoring in chunks of rows changes
the probabilities only by rounding.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dlsa.cascade.spec import CascadeSpec
from dlsa.engine.rows import SCORE_CHUNK, Rows, cat_columns, map_rows
from dlsa.errors import DLSAInputError
from dlsa.stage2.bases import BaseMethod
from dlsa.stage2.classifiers import ClusterPrior, Prior, StageClassifier
from dlsa.stage2.filter import FilterOutput


@dataclass(eq=False)
class Cascade:
    """A fitted cascade of one configuration.

    Attributes:
        spec: the configuration it was fitted with.
        n_features: D.
        class_counts: (C,) training samples per class it was fitted with.
        filters: the :class:`~dlsa.stage2.filter.FlowFilter` of each level.
        heads: the cluster-aided :class:`StageClassifier` of each level.
        regular: the regular classifier (the fallback itself with
            ``regular_data="all"`` or no filter).
        fallback: the base method trained on all the data.
        reports: per level, a dict of training diagnostics.
        stage_enabled: per stage (levels, then regular), whether it is used.
        validation: the safeguard's evidence, or None.
    """

    spec: CascadeSpec
    n_features: int
    class_counts: np.ndarray
    filters: nn.ModuleList = field(default_factory=nn.ModuleList)
    heads: nn.ModuleList = field(default_factory=nn.ModuleList)
    regular: StageClassifier | None = None
    fallback: StageClassifier | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    stage_enabled: list[bool] = field(default_factory=list)
    validation: dict[str, Any] | None = None

    @property
    def n_classes(self) -> int:
        """C."""
        return len(self.class_counts)

    @property
    def base(self) -> BaseMethod:
        """The base method of every classifier."""
        return self.spec.base

    @property
    def device(self) -> torch.device:
        """Where the modules live."""
        assert self.fallback is not None
        return self.fallback.input_mean.device

    def with_base(self, method: BaseMethod) -> Cascade:
        """This cascade under another value of the base method's post-hoc
        hyper-parameters (e.g. tau of ``tau-norm``): copies of the classifiers with
        ``method``'s post-hoc state; the filters are shared, this cascade is unchanged."""
        heads, regular, fallback = copy.deepcopy((self.heads, self.regular, self.fallback))
        for module in (regular, fallback, *heads):
            method.posthoc(module)
        spec = dataclasses.replace(self.spec, base=method)
        return dataclasses.replace(
            self, spec=spec, heads=heads, regular=regular, fallback=fallback
        )

    # -- inputs of the cluster-aided classifiers ---------------------------------------

    def cluster_inputs(self, x: Rows, z: Rows) -> Rows:
        """Inputs of a cluster-aided classifier: ``[x, z]`` (N, 2D), or x alone (N, D)
        with ``classifier_layout="release"``, plus the base method's logits (N, C) when
        ``stack_base`` is set (unseen classes at -1e4); in host memory when x and z are
        (:class:`~dlsa.engine.rows.HostRows`)."""
        parts = [x] if self.spec.twin else [x, z]
        if self.spec.stack_base:
            with torch.no_grad():
                parts.append(map_rows(self._base_scores, x, SCORE_CHUNK))
        return cat_columns(parts)

    def last_filter_inputs(
        self, x: Rows, out: FilterOutput | None = None
    ) -> tuple[Rows, ClusterPrior]:
        """Inputs ``[x, z]`` and cluster prior (N, C) of samples x (N, D) under the last
        filter, whose output on x is ``out`` if given."""
        flt = self.filters[-1]
        out = flt.transform(x) if out is None else out
        return self.cluster_inputs(x, out.z), flt.cluster_prior(out.cluster)

    def _base_scores(self, x: Tensor) -> Tensor:
        """The base method's logits (N, C) of x (N, D), unseen classes at -1e4."""
        return self.base_logits(x).clamp_min(-1e4)

    # -- scoring -----------------------------------------------------------------------

    def stage_logits(self, model: StageClassifier, inputs: Tensor, prior: Prior | None) -> Tensor:
        """Inference logits (N, C) of one stage; classes it never saw are -inf."""
        return model.masked_logits(self.base.logits(model, inputs, prior))

    def base_logits(self, x: Tensor) -> Tensor:
        """Logits (N, C) of the fallback (the base method on all data) for x (N, D)."""
        assert self.fallback is not None
        return self.stage_logits(self.fallback, x, None)

    @torch.no_grad()
    def logits_and_stage(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (N, C) from the stage that handles each sample of x (N, D) (on the
        cascade's device), and that stage (N,): ``l`` for level ``l``'s cluster-aided
        classifier, ``len(filters)`` for the regular one. A stage switched off by the
        safeguard hands its samples to the fallback; the stage index still says which
        filter routed them."""
        n = x.shape[0]
        logits = x.new_zeros(n, self.n_classes)
        stage = torch.full((n,), len(self.filters), dtype=torch.long, device=x.device)
        remaining = torch.arange(n, device=x.device)
        rest: FilterOutput | None = None  # the last filter's output on what goes on
        for level, (flt, head) in enumerate(zip(self.filters, self.heads, strict=True)):
            if remaining.numel() == 0:
                break
            out = flt.transform(x[remaining])
            mask = flt.route(out.log_prob)
            idx = remaining[mask]
            if idx.numel() > 0:
                if self.stage_enabled[level]:
                    inputs = self.cluster_inputs(x[idx], out.z[mask])
                    prior = flt.cluster_prior(out.cluster[mask])
                    logits[idx] = self.stage_logits(head, inputs, prior)
                else:
                    logits[idx] = self.base_logits(x[idx])
                stage[idx] = level
            remaining = remaining[~mask]
            rest = FilterOutput(out.z[~mask], out.log_prob[~mask], out.cluster[~mask])
        if remaining.numel() > 0:
            logits[remaining] = self._regular_logits(x[remaining], rest)
        return logits, stage

    def _regular_logits(self, x: Tensor, out: FilterOutput | None) -> Tensor:
        """Logits (N, C) of the samples x (N, D) that no filter took, whose output under
        the last filter is ``out`` (used by a cluster-aided regular classifier)."""
        assert self.regular is not None
        if not self.stage_enabled[-1]:
            return self.base_logits(x)
        if not self.regular.use_prior:
            return self.stage_logits(self.regular, x, None)
        return self.stage_logits(self.regular, *self.last_filter_inputs(x, out))

    def chunks(
        self, x: Tensor, offset: Tensor | None = None, temperature: float | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Logits (B, C) (divided by ``temperature``, then plus ``offset`` (C,), when
        given) and stages (B,) on the device, for consecutive chunks of at most
        :data:`~dlsa.engine.rows.SCORE_CHUNK` rows of x (N, D), so the device holds one
        chunk at a time."""
        for i in range(0, x.shape[0], SCORE_CHUNK):
            logits, stage = self.logits_and_stage(x[i : i + SCORE_CHUNK].to(self.device))
            if temperature is not None:
                logits = logits / temperature
            yield (logits if offset is None else logits + offset.to(logits.dtype)), stage

    def predict_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class indices (N,) and stages (N,) of features X (N, D)."""
        parts = [
            (logits.argmax(dim=1).cpu(), stage.cpu())
            for logits, stage in self.chunks(torch.from_numpy(X))
        ]
        return torch.cat([p[0] for p in parts]).numpy(), torch.cat([p[1] for p in parts]).numpy()

    def base_predictions(self, X: np.ndarray) -> np.ndarray:
        """The fallback's predicted class indices (N,) of features X (N, D)."""
        parts = []
        for i in range(0, X.shape[0], SCORE_CHUNK):
            x = torch.from_numpy(X[i : i + SCORE_CHUNK]).to(self.device)
            with torch.no_grad():
                parts.append(self.base_logits(x).argmax(dim=1).cpu())
        return torch.cat(parts).numpy()


def finite_scores(chunks: Iterator[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    """The chunks of logits (B, C) and stages (B,) of :meth:`Cascade.chunks`, refusing
    a row whose probabilities would be NaN: a logit that is NaN or +inf, or every class
    at -inf. Predictions are never NaN silently.

    Raises:
        DLSAInputError: naming the first such row (counted over all chunks) and why.

    Example:
        >>> good = (torch.tensor([[0.0, -float("inf")]]), torch.tensor([0]))
        >>> len(list(finite_scores(iter([good]))))
        1
        >>> bad = (torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
        >>> try:
        ...     list(finite_scores(iter([good, bad])))
        ... except DLSAInputError as err:
        ...     print(str(err)[:37])
        the scores of row 1 are not finite (a
    """
    offset = 0
    for logits, stage in chunks:
        nan = torch.isnan(logits).any(1) | torch.isposinf(logits).any(1)
        none = logits.amax(1) == float("-inf")
        if bool((nan | none).any()):
            row = int((nan | none).nonzero()[0, 0])
            why = (
                "a NaN or +inf logit: features too large for float32, or a model whose "
                "weights or temperature were damaged"
                if nan[row]
                else "every class at -inf: the stage that handles it knows only classes "
                "the test prior gives frequency 0"
            )
            raise DLSAInputError(
                f"the scores of row {offset + row} are not finite ({why}); its "
                "probabilities would be NaN"
            )
        offset += logits.shape[0]
        yield logits, stage
