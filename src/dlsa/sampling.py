"""Index samplers on torch tensors, shared by the flow filters and the base methods.

This module depends on torch only, so that every training module can import it without
an upward import (the flow filter must not import :mod:`dlsa.bases`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_balanced_order(target: Tensor, n_draws: int, generator: torch.Generator) -> Tensor:
    """Indices (n_draws,) drawn by the class-balanced sampler (CBS).

    Each draw picks a class uniformly among the classes present in ``target``, then one
    of its samples uniformly (with replacement), so every present class is equally
    likely per draw whatever its size.

    Args:
        target: (N,) class indices.
        n_draws: number of draws (an epoch of the ``cbs`` method has N).
        generator: the only source of randomness (a CPU generator).

    Returns:
        (n_draws,) int64 indices into ``target``, on ``target``'s device.

    References:
        Kang et al., "Decoupling Representation and Classifier for Long-Tailed
        Recognition", ICLR 2020. https://arxiv.org/abs/1910.09217

    Example:
        >>> y = torch.tensor([0] * 98 + [1, 2])
        >>> idx = class_balanced_order(y, 3000, torch.Generator().manual_seed(0))
        >>> [round(n / 3000, 1) for n in torch.bincount(y[idx]).tolist()]
        [0.3, 0.3, 0.3]
    """
    labels = target.detach().cpu()
    _, inverse, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    cls = torch.randint(sizes.numel(), (n_draws,), generator=generator)
    offset = (torch.rand(n_draws, generator=generator, dtype=torch.float64) * sizes[cls]).long()
    offset = torch.minimum(offset, sizes[cls] - 1)
    return order[starts[cls] + offset].to(target.device)
