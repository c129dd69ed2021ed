"""Epoch plans for streamed stage-1 training: one global order per epoch, split by rank.

Every process computes the same global order of epoch ``e`` from the seed alone (a
permutation for ``"shuffle"``, N class-balanced draws for ``"balanced"``), cuts it into
global batches of ``batch_size`` images (the last, incomplete one is dropped) and takes
its own contiguous share of each: rank ``r`` of ``W`` gets images ``r * B / W .. (r + 1)
* B / W - 1`` of every global batch. So the ranks' shares are disjoint, their union is
the global batch one process would see, and an epoch depends on its number, not on the
epochs before it (a resumed run sees the same batches).

Each item is ``(epoch, position, index)``: the image ``index`` and its ``position`` in the
global order, from which :class:`~dlsa.backbones.stream.TrainViews` seeds that image's
augmentation, so augmentations do not depend on the number of ranks or loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from dlsa.engine import rng
from dlsa.engine.splits import class_balanced_indices

Order = Literal["shuffle", "balanced"]
Item = tuple[int, int, int]


class EpochBatches:
    """A ``batch_sampler`` giving this rank's share of each global batch of an epoch.

    Args:
        labels: train labels of shape (N,).
        order: ``"shuffle"`` (a permutation per epoch) or ``"balanced"`` (class-balanced
            sampling: N draws, each class equally likely per draw).
        batch_size: images per global batch (all ranks together), a multiple of
            ``world_size``.
        seed: seed of the epoch orders.
        rank: this process's rank.
        world_size: number of processes.

    Example:
        >>> b = EpochBatches(np.arange(10) % 2, order="shuffle", batch_size=4, seed=0,
        ...                  rank=1, world_size=2)
        >>> len(b), [len(batch) for batch in b]
        (2, [2, 2])
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        order: Order,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if order not in ("shuffle", "balanced"):
            raise ValueError(f"order must be 'shuffle' or 'balanced', got {order!r}")
        if batch_size < world_size or batch_size % world_size:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of the number of processes "
                f"({world_size})"
            )
        if len(labels) < batch_size:
            raise ValueError(
                f"batch_size ({batch_size}) is larger than the training set ({len(labels)} images)"
            )
        self.labels = np.asarray(labels)
        self.order, self.batch_size, self.seed = order, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield the batches of ``epoch`` (1-based)."""
        self.epoch = epoch

    def global_order(self, epoch: int) -> np.ndarray:
        """The indices (N,) of the whole epoch, as one process would visit them."""
        n = len(self.labels)
        if self.order == "balanced":
            draws = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, epoch)))
            return class_balanced_indices(self.labels, n, rng=draws)
        generator = rng.torch_generator(np.random.SeedSequence(self.seed, spawn_key=(1, epoch)))
        return rng.randperm(n, generator, "cpu").numpy()

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self) -> Iterator[list[Item]]:
        order = self.global_order(self.epoch)
        share = self.batch_size // self.world_size
        for step in range(len(self)):
            start = step * self.batch_size + self.rank * share
            yield [(self.epoch, p, int(order[p])) for p in range(start, start + share)]
