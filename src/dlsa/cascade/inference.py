"""Inference: route each sample down the cascade and score it with the stage that takes it.

A sample goes to the cluster-aided classifier of the first level whose filter routes it
(``log p(x) >= threshold`` of that level), else to the regular classifier. A stage the
safeguard switched off hands its samples to the fallback (the base method on all data).
Scoring runs in chunks of :data:`~dlsa.rows.SCORE_CHUNK` rows, so the device holds one
chunk at a time; each row is routed and scored on its own, so chunking does not change the stages
and changes probabilities only by rounding (~1e-7: a product of few rows can take another
BLAS kernel), which can flip a predicted class only at an exact tie.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from dlsa.cascade.cluster_aided import ClusterAided
from dlsa.cascade.test_prior import PriorSpec, logit_shift, resolve_test_prior
from dlsa.classifiers import StageClassifier
from dlsa.errors import DLSAInputError
from dlsa.features import check_features
from dlsa.filter import FilterOutput
from dlsa.rows import SCORE_CHUNK


class CascadeInference(ClusterAided):
    """The inference half of the estimator (a mixin; see the module docstring)."""

    classes_: np.ndarray
    n_features_in_: int
    heads_: nn.ModuleList
    regular_: StageClassifier
    stage_enabled_: list[bool]
    class_counts_: np.ndarray
    test_prior_: np.ndarray | None

    def _check_X(self, X: np.ndarray) -> Tensor:
        """Validated features (N, D) as a CPU tensor."""
        check_is_fitted(self, "regular_")
        X, _ = check_features(X, source="X")
        if X.shape[1] != self.n_features_in_:
            raise DLSAInputError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return torch.from_numpy(X)

    def _scored(self, X: np.ndarray) -> tuple[Tensor, Tensor]:
        """Logits (N, C) and stages (N,) of X (N, D), on the CPU. The cascade runs on
        chunks of :data:`~dlsa.rows.SCORE_CHUNK` rows, so the device holds one chunk at a
        time; each row is routed and scored on its own, so chunking changes the
        probabilities only by rounding."""
        parts = [(logits.cpu(), stage.cpu()) for logits, stage in self._chunks(X)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _chunks(self, X: np.ndarray) -> Iterator[tuple[Tensor, Tensor]]:
        """Logits (B, C) and stages (B,) on the device, for consecutive chunks of at most
        :data:`~dlsa.rows.SCORE_CHUNK` rows of X (N, D), adjusted to the deployment prior
        when one is set (:meth:`set_test_prior`)."""
        x = self._check_X(X)
        shift = logit_shift(self.test_prior_, self.class_counts_, self.base_.balanced)
        offset = None if shift is None else torch.from_numpy(shift).to(self._device())
        for i in range(0, x.shape[0], SCORE_CHUNK):
            logits, stage = self._logits_and_stage(x[i : i + SCORE_CHUNK].to(self._device()))
            yield (logits if offset is None else logits + offset.to(logits.dtype)), stage

    def set_test_prior(self, prior: PriorSpec) -> CascadeInference:
        """Set the class frequencies of the data this model will predict on: "uniform"
        (or None; the default), "train" (the training frequencies), a mapping from class
        label to frequency, or an array (C,) in the order of ``classes_``. Scores are then
        adjusted by Bayes' rule (:mod:`dlsa.cascade.test_prior`); routing is unchanged.
        Saved with the model. Returns self.

        Raises:
            DLSAInputError: see :func:`dlsa.cascade.test_prior.resolve_test_prior`.
        """
        check_is_fitted(self, "regular_")
        self.test_prior_ = resolve_test_prior(prior, self.classes_, self.class_counts_)
        return self

    def _device(self) -> torch.device:
        return self.regular_.input_mean.device

    @torch.no_grad()
    def _logits_and_stage(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (N, C) from the stage that handles each sample, and that stage (N,).

        A stage switched off by the safeguard hands its samples to the base method
        trained on all data; the stage index still says which filter routed them.
        """
        n = x.shape[0]
        logits = x.new_zeros(n, len(self.classes_))
        stage = torch.full((n,), len(self.filters_), dtype=torch.long, device=x.device)
        remaining = torch.arange(n, device=x.device)
        rest: FilterOutput | None = None  # the last filter's output on what goes on
        for level, (flt, head) in enumerate(zip(self.filters_, self.heads_, strict=True)):
            if remaining.numel() == 0:
                break
            out = flt.transform(x[remaining])
            mask = flt.route(out.log_prob)
            idx = remaining[mask]
            if idx.numel() > 0:
                if self.stage_enabled_[level]:
                    inputs = self._cluster_inputs(x[idx], out.z[mask])
                    prior = flt.cluster_prior(out.cluster[mask])
                    logits[idx] = self._stage_logits(head, inputs, prior)
                else:
                    logits[idx] = self._stage_logits(self.fallback_, x[idx], None)
                stage[idx] = level
            remaining = remaining[~mask]
            rest = FilterOutput(out.z[~mask], out.log_prob[~mask], out.cluster[~mask])
        if remaining.numel() > 0:
            logits[remaining] = self._regular_logits(x[remaining], rest)
        return logits, stage

    def _regular_logits(self, x: Tensor, out: FilterOutput | None) -> Tensor:
        """Logits (N, C) of the samples x (N, D) that no filter took, whose output under
        the last filter is ``out`` (used by a cluster-aided regular classifier)."""
        if not self.stage_enabled_[-1]:
            return self._stage_logits(self.fallback_, x, None)
        if not self.regular_.use_prior:
            return self._stage_logits(self.regular_, x, None)
        return self._stage_logits(self.regular_, *self._last_filter_inputs(x, out))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits (N, C) of the stage that handles each sample; with two classes, as
        scikit-learn's classifiers do, the score (N,) of ``classes_[1]``: its logit minus
        that of ``classes_[0]``."""
        logits = self._scored(X)[0]
        if logits.shape[1] == 2:
            return (logits[:, 1] - logits[:, 0]).numpy()
        return logits.numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes_``."""
        return torch.softmax(self._scored(X)[0], dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (N,), values from ``classes_`` (memory: one chunk's logits,
        not N x C)."""
        return self.predict_and_route(X)[0]

    def route(self, X: np.ndarray) -> np.ndarray:
        """Stage of each sample (N,): ``l`` (0-based) for the cluster-aided classifier of
        level ``l``, ``len(filters_)`` for the regular classifier."""
        return self.predict_and_route(X)[1]

    def predict_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` (N,) and :meth:`route` (N,) in one pass of the cascade, which
        keeps only each row's best class (memory: one chunk's logits, not N x C)."""
        parts = [(logits.argmax(dim=1).cpu(), stage.cpu()) for logits, stage in self._chunks(X)]
        best = torch.cat([p[0] for p in parts]).numpy()
        return self.classes_[best], torch.cat([p[1] for p in parts]).numpy()

    def predict_proba_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_proba` (N, C) and :meth:`route` (N,) in one pass of the cascade."""
        logits, stage = self._scored(X)
        return torch.softmax(logits, dim=1).numpy(), stage.numpy()
