"""Training features that stay in host memory while the models train on another device.

Stage 2 keeps its (N, D) matrices (the features x, the latent codes z, the inputs
``[x, z]`` of a cluster-aided classifier) on the training device when they fit there.
When they do not (features larger than GPU memory), they are :class:`HostRows`: the
matrix stays in host memory, every minibatch is gathered there and copied to the
device, and whole-matrix passes (scoring a level, input statistics) go chunk by chunk.
Per-sample vectors (labels, masks, log-likelihoods) are small and stay on the device.

The functions below take either a tensor or :class:`HostRows`, so the filter, the
cascade and the base methods are written once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = [
    "SCORE_CHUNK",
    "HostRows",
    "Rows",
    "cat_columns",
    "column_moments",
    "fits_on_device",
    "gather",
    "map_rows",
    "take",
]

SCORE_CHUNK = 65536
"""Rows scored at once by every whole-matrix pass (inference, stacked base logits, a
validation split's logits): bounds the device memory of scoring."""

FITS_SHARE = 0.25
"""Features stay on the device when they take at most this share of its free memory
(the cascade also holds z and ``[x, z]`` of a level, and the models' activations)."""


class HostRows:
    """An (N, D) matrix in host memory for models on ``device``.

    ``shape`` and ``dtype`` are the matrix's; ``device`` is where its rows are used (so
    that ``module.to(rows.device)`` puts a model next to the batches). Indexing keeps the
    result in host memory; :meth:`rows` copies rows to the device.

    Example:
        >>> x = HostRows(torch.arange(6.0).reshape(3, 2), torch.device("cpu"))
        >>> x[torch.tensor([True, False, True])].rows(torch.tensor([1]))
        tensor([[4., 5.]])
    """

    def __init__(self, data: Tensor, device: torch.device) -> None:
        self.data, self.device = data, torch.device(device)

    def __getitem__(self, index: Tensor) -> HostRows:
        """The rows ``index`` (a (B,) index or (N,) boolean mask on any device)."""
        return HostRows(self.data[index.to(self.data.device)], self.device)

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def shape(self) -> torch.Size:
        """(N, D)."""
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    def rows(self, index: Tensor) -> Tensor:
        """Rows ``index`` (B,) as a tensor (B, D) on the device."""
        return self.data[index.to(self.data.device)].to(self.device)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """Consecutive blocks of at most ``size`` rows, each copied to the device."""
        for block in torch.split(self.data, size):
            yield block.to(self.device)


Rows = Tensor | HostRows


def take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a (B,) index or mask of x's first dimension; integer indices on
    x's device go through ``index_select`` (the same rows, a quarter of the time of
    advanced indexing on the CPU).

    Example:
        >>> take(torch.arange(5) * 10, torch.tensor([4, 0])).tolist()
        [40, 0]
    """
    if index.dtype in (torch.int64, torch.int32) and index.device == x.device:
        return x.index_select(0, index)
    return x[index]


def gather(x: Rows, index: Tensor) -> Tensor:
    """Rows ``index`` (B,) of x (N, D) as a tensor (B, D) on x's device."""
    return x.rows(index) if isinstance(x, HostRows) else take(x, index)


def map_rows(fn: Callable[[Tensor], Tensor], x: Rows, size: int) -> Rows:
    """``fn`` applied to x (N, D) block by block (blocks of ``size`` rows), its (N, E)
    result kept where x is: a tensor on the device, or :class:`HostRows` in host memory."""
    if not isinstance(x, HostRows):
        return torch.cat([fn(block) for block in torch.split(x, size)])
    out = [fn(block).to(x.data.device) for block in x.chunks(size)]
    return HostRows(torch.cat(out), x.device)


def cat_columns(parts: list[Rows]) -> Rows:
    """Column-wise concatenation (N, sum D_i) of matrices that all live in one place."""
    if any(isinstance(p, HostRows) for p in parts):
        if not all(isinstance(p, HostRows) for p in parts):
            raise TypeError("cat_columns: mix of HostRows and device tensors")
        return HostRows(torch.cat([p.data for p in parts], dim=1), parts[0].device)
    return torch.cat(parts, dim=1)


def column_moments(x: Rows) -> tuple[Tensor, Tensor]:
    """Mean (D,) and population std (D,) of the columns of x (N, D), on x's device;
    computed where the matrix is (host memory for :class:`HostRows`)."""
    data = x.data if isinstance(x, HostRows) else x
    mean, std = data.mean(dim=0), data.std(dim=0, unbiased=False)
    return mean.to(x.device), std.to(x.device)


def fits_on_device(n_bytes: int, device: torch.device) -> bool:
    """Whether a matrix of ``n_bytes`` should stay on ``device``: always for the CPU and
    other non-CUDA devices, on CUDA when it takes at most :data:`FITS_SHARE` of the
    free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= FITS_SHARE * free
