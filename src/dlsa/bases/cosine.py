"""Cosine classifier (``cosine``).

References:
    Gidaris & Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting", CVPR 2018.
    https://arxiv.org/abs/1804.09458

    Qi et al., "Low-Shot Learning with Imprinted Weights", CVPR 2018.
    https://arxiv.org/abs/1712.07136
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.bases._base import BaseMethod


class ScaledCosineHead(nn.Module):
    """Cosine classifier ``s * cos(x, w_c)`` whose scale s is itself the parameter.

    Gidaris & Komodakis learn s directly (their ``scale_cls``). Learning ``log s``
    instead, as :class:`dlsa.classifiers.CosineHead` does, multiplies the scale's
    gradient by s: from s = 16 and random class vectors, SGD with momentum drives
    ``log s`` so far down in the first steps that s ends near 0 and every gradient
    vanishes (on the tests' synthetic set: s = 7e-5 and 23% accuracy, against s = 11 and
    44% when s is learned directly).

    Args:
        in_features: D.
        n_classes: C.
        scale: initial (or fixed) s.
        learn_scale: learn s; otherwise it is a buffer.

    Example:
        >>> head = ScaledCosineHead(4, 3, scale=10.0)
        >>> bool(head(torch.randn(5, 4)).abs().max() <= 10.0 + 1e-5)
        True
    """

    scale: Tensor

    def __init__(
        self, in_features: int, n_classes: int, *, scale: float = 16.0, learn_scale: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if learn_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, D) to scaled cosine logits (N, C)."""
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).T


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
        """A :class:`ScaledCosineHead` (N, D_in) -> (N, C)."""
        return ScaledCosineHead(
            n_inputs, n_classes, scale=self.scale, learn_scale=self.learn_scale
        )
