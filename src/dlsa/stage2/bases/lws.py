"""Learnable weight scaling (``lws``).

References:
    Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020, Sec. 4 ("LWS"). https://arxiv.org/abs/1910.09217
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.stage2.bases._base import BaseMethod, StageData, frozen
from dlsa.stage2.classifiers import StageClassifier


class ScaledLinearHead(nn.Module):
    """Linear head whose logits are multiplied by one learnable scale per class.

    ``logits_c = f_c * (w_c . x + b_c)``: scaling the output scales the class vector and
    its bias together, as in Kang et al.'s release (``fc(x) * scales``).

    Example:
        >>> head = ScaledLinearHead(4, 3)
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(head(x), head.linear(x))
        True
    """

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes)
        self.scales = nn.Parameter(torch.ones(n_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, D) to scaled logits (N, C)."""
        return self.linear(x) * self.scales


@dataclass(frozen=True)
class LearnableWeightScaling(BaseMethod):
    """LWS: train a linear head with cross-entropy on uniform batches (scales fixed at 1),
    then freeze it and learn one scale per class with class-balanced sampling.

    Phase 1 trains the head's weights and bias and, in a cluster-aided classifier, the
    cluster-prior branch. Phase 2 trains only the scales; the prior branch stays frozen
    and is added unscaled. Both phases use ``HeadConfig`` (Kang et al. run 5 epochs of
    phase 2 on ImageNet-LT, about 1,100 steps; on small sets so few epochs would leave
    the scales almost untouched, so phase 2 gets the same epochs as phase 1).
    """

    name: ClassVar[str] = "lws"
    plain_head: ClassVar[bool] = True

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`ScaledLinearHead` with unit scales."""
        return ScaledLinearHead(n_inputs, n_classes)

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
        """Phase 1 (weights, bias, prior branch), then phase 2 (scales only)."""
        head = model.head
        assert isinstance(head, ScaledLinearHead)
        self.prepare(model, data, config)
        first = [p for name, p in model.named_parameters() if name != "head.scales"]
        self.train(
            model, data, config, generator, parameters=first, progress=progress,
            desc=f"{desc} (weights)",
        )  # fmt: skip
        with frozen(first):
            self.train_balanced(
                [head.scales], lambda idx: self.batch_loss(model, data.batch(idx)), data,
                self.settings(config), generator, progress=progress, desc=f"{desc} (scales)",
            )  # fmt: skip
        model.eval()
