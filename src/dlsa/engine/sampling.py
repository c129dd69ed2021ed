"""Index samplers on torch tensors, shared by the flow filters and the base methods.

This module depends on torch only, so that every training module can import it without
an upward import (the flow filter must not import :mod:`dlsa.stage2.bases`). Per-class index
tables are built once (:class:`ClassIndex`) on the labels' device; random numbers are
drawn where the generator lives and moved there (:mod:`dlsa.engine.rng`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlsa.engine import rng


class ClassIndex:
    """The samples of labels (N,) grouped by class, to draw samples of given classes.

    Attributes:
        classes: (C',) the distinct labels, sorted.
        order: (N,) sample indices sorted by class (stable).
        counts: (C',) samples per class.
        starts: (C',) offset of each class's first sample in ``order``.

    Example:
        >>> idx = ClassIndex(torch.tensor([2, 0, 2, 1]))
        >>> idx.pick(torch.tensor([0, 2]), torch.tensor([0.0, 0.99])).tolist()
        [1, 2]
    """

    def __init__(self, labels: Tensor) -> None:
        classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        self.classes, self.counts = classes, counts
        self.order = torch.argsort(inverse, stable=True)
        self.starts = torch.cumsum(counts, 0) - counts

    @property
    def n_classes(self) -> int:
        """C', the number of classes present."""
        return self.classes.numel()

    @property
    def device(self) -> torch.device:
        """Where the tables live (the labels' device)."""
        return self.order.device

    def to(self, device: torch.device | str) -> ClassIndex:
        """This table on another device."""
        out = ClassIndex.__new__(ClassIndex)
        for name in ("classes", "counts", "order", "starts"):
            setattr(out, name, getattr(self, name).to(device))
        return out

    def pick(self, cls: Tensor, u: Tensor) -> Tensor:
        """One sample (P,) of each class position cls (P,) in ``[0, C')``, the
        ``floor(u * n_c)``-th of its class for uniforms u (P,) in [0, 1)."""
        counts = self.counts[cls]
        offset = torch.minimum((u * counts).long(), counts - 1)
        return self.order[self.starts[cls] + offset]


class PurityPairSampler:
    """Index pairs from two different classes, each class drawn uniformly (the purity
    loss's pairs, supplement Sec. 3): class ``a`` uniform among the classes present,
    class ``b`` uniform among the others, then one sample of each uniformly.

    The per-class table is built once per level (on the labels' device), so a draw costs
    O(P) instead of sorting all N labels.

    Args:
        labels: (N,) integer labels with at least two distinct values.

    Example:
        >>> y = torch.tensor([0, 0, 0, 1, 2])
        >>> i, j = PurityPairSampler(y).draw(8, torch.Generator().manual_seed(0))
        >>> bool((y[i] != y[j]).all())
        True
    """

    def __init__(self, labels: Tensor) -> None:
        self.index = ClassIndex(labels)
        self.labels = labels
        if self.index.n_classes < 2:
            raise ValueError("purity pairs need samples of at least two classes")

    def draw(self, n_pairs: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(idx_i, idx_j)``, each (P,) indices into the labels, on their device."""
        i, j = self.draw_steps(1, n_pairs, generator)
        return i[0], j[0]

    def draw_steps(
        self, n_steps: int, n_pairs: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """``(idx_i, idx_j)``, each (S, P): the pairs of ``n_steps`` consecutive
        :meth:`draw` calls (the same numbers from ``generator``, in the same order),
        drawn where the generator lives and copied to the labels' device once, not once
        per step (every copy from the CPU makes a GPU wait)."""
        index, here = self.index, generator.device
        classes, uniforms = [], []
        for _ in range(n_steps):
            a = rng.randint(index.n_classes, n_pairs, generator, here)
            b = rng.randint(index.n_classes - 1, n_pairs, generator, here)
            classes.append(torch.stack([a, b + (b >= a).long()]))
            uniforms.append(torch.stack([rng.rand(n_pairs, generator, here) for _ in "ij"]))
        cls = torch.stack(classes).to(index.device)  # (S, 2, P)
        u = torch.stack(uniforms).to(index.device)
        picked = index.pick(cls.flatten(), u.flatten()).view(n_steps, 2, n_pairs)
        return picked[:, 0], picked[:, 1]

    def partners(self, anchors: Tensor, generator: torch.Generator) -> Tensor:
        """One partner (P,) for each anchor sample (P,) (indices into the labels): a
        class drawn uniformly among the classes other than the anchor's, then one of its
        samples uniformly (the original release's negatives: the anchor is the batch's
        own sample)."""
        index, here = self.index, generator.device
        own = torch.searchsorted(index.classes, self.labels[anchors]).to(here)
        b = rng.randint(index.n_classes - 1, anchors.numel(), generator, here)
        cls = b + (b >= own).long()
        u = rng.rand(anchors.numel(), generator, here)
        return index.pick(cls.to(index.device), u.to(index.device))


def sample_purity_pairs(
    labels: Tensor, n_pairs: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One draw of :class:`PurityPairSampler` (builds the table: use the class in loops).

    Args:
        labels: (N,) integer labels with at least two distinct values.
        n_pairs: number of pairs P.
        generator: source of randomness (on any device).

    Returns:
        ``(idx_i, idx_j)``, each (P,) indices into ``labels``, on ``labels``' device.
    """
    return PurityPairSampler(labels).draw(n_pairs, generator)


def class_balanced_order(target: Tensor, n_draws: int, generator: torch.Generator) -> Tensor:
    """Indices (n_draws,) drawn by the class-balanced sampler (CBS).

    Each draw picks a class uniformly among the classes present in ``target``, then one
    of its samples uniformly (with replacement), so every present class is equally
    likely per draw whatever its size.

    Args:
        target: (N,) class indices.
        n_draws: number of draws (an epoch of the ``cbs`` method has N).
        generator: the only source of randomness.

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
    index = ClassIndex(target.detach().cpu())
    cls = rng.randint(index.n_classes, n_draws, generator, "cpu")
    u = rng.rand(n_draws, generator, "cpu", dtype=torch.float64)
    return index.pick(cls, u).to(target.device)
