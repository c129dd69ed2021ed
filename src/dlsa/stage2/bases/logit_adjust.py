"""Post-hoc logit adjustment (``logit-adjust``).

References:
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, Sec. 4.1 (Eq. 9).
    https://arxiv.org/abs/2007.07314
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.stage2.bases._base import BaseMethod, StageData
from dlsa.stage2.classifiers import LinearHead, Prior, StageClassifier


class PriorLinearHead(LinearHead):
    """Linear head that also stores the log class prior of its training data.

    The buffer ``log_prior`` (C,) is not used by ``forward``; the method subtracts it
    from the logits at inference. A class without a training sample (a class that a
    cascade level never sees) gets ``log_prior = 0``, the value of a class of frequency
    1: of all classes it is boosted least. Its true prior, 0, would boost it infinitely,
    although the classifier knows nothing about it.

    Example:
        >>> PriorLinearHead(4, 3).log_prior.shape
        torch.Size([3])
    """

    log_prior: Tensor

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__(in_features, n_classes)
        self.register_buffer("log_prior", torch.zeros(n_classes))

    @torch.no_grad()
    def fit_prior(self, counts: Tensor) -> None:
        """Store ``log(n_c / sum_j n_j)`` for class counts (C,) (0 where n_c = 0)."""
        counts = counts.to(torch.float64)
        log_prior = torch.log(counts.clamp_min(1.0) / counts.sum())
        self.log_prior.copy_(torch.where(counts > 0, log_prior, 0.0))


@dataclass(frozen=True)
class LogitAdjustment(BaseMethod):
    """Train a linear head with cross-entropy on uniform batches; predict with
    ``logits - tau * log pi``, pi the class frequencies of the stage's training data.

    The whole logit vector is adjusted, cluster-prior branch included. ``tau=0`` is
    plain ``ce``.
    """

    name: ClassVar[str] = "logit-adjust"
    plain_head: ClassVar[bool] = True
    posthoc_params: ClassVar[tuple[str, ...]] = ("tau",)

    tau: float = 1.0
    """Scale of the adjustment (Menon et al., Eq. 9: tau = 1 is Bayes-optimal for the
    balanced error)."""

    def __post_init__(self) -> None:
        if not self.tau >= 0:
            raise ValueError(f"logit-adjust: tau must be >= 0, got {self.tau}")

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`PriorLinearHead`."""
        return PriorLinearHead(n_inputs, n_classes)

    def fit(
        self,
        model: StageClassifier,
        data: StageData,
        config: HeadConfig,
        generator: torch.Generator,
        *,
        progress: bool = False,
        desc: str = "classifier",
    ) -> None:
        """Store the stage's class prior, then train with plain cross-entropy."""
        head = model.head
        assert isinstance(head, PriorLinearHead)
        head.fit_prior(data.counts)
        super().fit(model, data, config, generator, progress=progress, desc=desc)

    def logits(self, model: StageClassifier, inputs: Tensor, prior: Prior | None) -> Tensor:
        """``model(inputs, prior) - tau * log pi`` (N, C)."""
        head = model.head
        assert isinstance(head, PriorLinearHead)
        return model(inputs, prior) - self.tau * head.log_prior
