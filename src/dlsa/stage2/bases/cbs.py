"""Class-balanced sampler (``cbs``).

References:
    Shen et al., "Relay Backpropagation for Effective Learning of Deep Convolutional
    Neural Networks", ECCV 2016 (class-aware sampling).

    Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020. https://arxiv.org/abs/1910.09217
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from dlsa.stage2.bases._base import BaseMethod, class_balanced_order


@dataclass(frozen=True)
class ClassBalancedSampling(BaseMethod):
    """Linear classifier trained with cross-entropy on class-balanced draws.

    Each draw picks a class uniformly among the classes of the stage, then one of its
    samples uniformly (with replacement); an epoch has N draws, N the stage's samples, so
    an epoch costs the same as one of ``ce``. Inference uses the raw logits.

    Example:
        >>> y = torch.tensor([0, 0, 0, 0, 1])
        >>> ClassBalancedSampling().epoch_order(y, torch.bincount(y), torch.Generator()).shape
        torch.Size([5])
    """

    name: ClassVar[str] = "cbs"

    def epoch_order(self, target: Tensor, counts: Tensor, generator: torch.Generator) -> Tensor:
        """N class-balanced draws (N,)."""
        return class_balanced_order(target, target.numel(), generator)
