"""Balanced Softmax (``balsoftmax``).

References:
    Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020.
    https://arxiv.org/abs/2007.10740
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from dlsa.stage2.bases._base import BaseMethod
from dlsa.stage2.losses import balanced_softmax_loss


@dataclass(frozen=True)
class BalancedSoftmax(BaseMethod):
    """Cross-entropy on ``logits + log n_j`` in training; raw logits at inference.

    ``n_j`` are the class counts the cascade passes as the stage's prior: those of the
    data the classifier is trained on (for a cluster-aided classifier: the samples its
    filter sent it), or of all training samples with ``stage_prior="global"`` (cluster-
    aided classifiers) or ``regular_prior="global"`` (the regular classifier).
    """

    name: ClassVar[str] = "balsoftmax"

    def loss(self, logits: Tensor, target: Tensor, counts: Tensor) -> Tensor:
        """Balanced Softmax loss of logits (B, C) for targets (B,)."""
        return balanced_softmax_loss(logits, target, counts)
