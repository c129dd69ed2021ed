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

from dlsa.bases._base import BaseMethod
from dlsa.classifiers import CosineHead


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

    scale: float = 16.0
    """Initial scale s (not fixed by Gidaris & Komodakis 2018, who learn it; 16 is a
    common start)."""
    learn_scale: bool = True
    """Learn s jointly with the weights (Gidaris & Komodakis 2018); False keeps it fixed."""

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"cosine: scale must be > 0, got {self.scale}")

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`CosineHead` (N, D_in) -> (N, C)."""
        return CosineHead(n_inputs, n_classes, scale=self.scale, learn_scale=self.learn_scale)
