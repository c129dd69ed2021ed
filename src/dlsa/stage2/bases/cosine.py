"""Cosine classifier (``cosine``).

References:
    Gidaris & Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting", CVPR 2018.
    https://arxiv.org/abs/1804.09458

    Qi et al., "Low-Shot Learning with Imprinted Weights", CVPR 2018.
    https://arxiv.org/abs/1712.07136
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from dlsa.stage2.bases._base import BaseMethod
from dlsa.stage2.classifiers import CosineHead


@dataclass(frozen=True)
class Cosine(BaseMethod):
    """``s * cos(x, w_c)`` logits trained with cross-entropy on uniform batches.

    The cosine is taken on the standardised stage inputs (``[x, z]`` in a cluster-aided
    classifier); the cluster-prior branch, when present, is added to the scaled cosine.

    Example:
        >>> Cosine().build_head(4, 3).scale.item()
        16.0
    """

    name: ClassVar[str] = "cosine"
    balanced: ClassVar[bool] = False  # cross-entropy on uniform batches: the training prior

    scale: float = 16.0
    """Initial scale s (not fixed by Gidaris & Komodakis 2018, who learn it; 16 is a
    common start)."""
    learn_scale: bool = True
    """Learn s jointly with the weights (Gidaris & Komodakis 2018); False keeps it fixed."""
    squash: bool = False
    """Scale each unit input by ``|x| / (1 + |x|)`` (OLTR's CosNorm classifier, which the
    original DLSA release uses with a fixed s = 16)."""

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"cosine: scale must be > 0, got {self.scale}")

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`CosineHead` (N, D_in) -> (N, C)."""
        return CosineHead(
            n_inputs, n_classes, scale=self.scale, learn_scale=self.learn_scale, squash=self.squash
        )

    def build_twin(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A second :class:`CosineHead` (the release's cosine classifiers are two)."""
        return self.build_head(n_inputs, n_classes)
