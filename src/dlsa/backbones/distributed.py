"""torch.distributed for stage 1: process group set-up under torchrun, gathers, and batch
norm synchronised over all ranks.

``torchrun --nproc-per-node N [--nnodes M ...] -m dlsa train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`setup` then joins the
process group (NCCL on CUDA, gloo on the CPU). A process group that already exists (made
by the caller, e.g. a test spawning processes) is used as it is. There is no launcher
here: torchrun and torch.distributed do that.

Synchronised batch norm: on CUDA, torch's :class:`torch.nn.SyncBatchNorm`; on the CPU
(which torch's does not support) :class:`AllReduceBatchNorm2d`, which all-reduces the
per-channel sums (one differentiable all-reduce per layer). Both normalise every rank's
images with the statistics of the global batch, as one process with the whole batch
would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node;
    ``owner`` is true when :func:`setup` created the process group (and must end it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owner: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and progress bars."""
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join (or find) the process group; a single process without torchrun gets rank 0/1.

    Args:
        device_type: ``"cuda"`` (NCCL backend) or ``"cpu"`` (gloo).
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, owner=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, owner=True)


def teardown(info: DistInfo) -> None:
    """End the process group if :func:`setup` made it."""
    if info.owner and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.world_size > 1:
        dist.barrier()


def gather_rows(x: torch.Tensor, info: DistInfo, *, grad: bool = False) -> torch.Tensor:
    """Concatenate every rank's (B, ...) tensor in rank order: (W * B, ...).

    With ``grad=True`` the gather is differentiable (each rank's rows receive the sum of
    the gradients all ranks send them), so a loss over all ranks' rows trains like one
    process holding the whole batch.
    """
    if info.world_size == 1:
        return x
    if grad:
        return torch.cat(dist_fn.all_gather(x.contiguous()))
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``x`` over all ranks (in place; returned for convenience)."""
    if info.world_size > 1:
        dist.all_reduce(x)
    return x


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the global batch of all ranks, on any device (for the CPU/gloo).

    In training with more than one process, the per-channel count, sum and sum of squares
    (float64) are summed over the ranks with one differentiable all-reduce; mean and
    biased variance normalise, the unbiased variance updates the running estimate, as
    :class:`torch.nn.BatchNorm2d` does on the concatenated batch. Otherwise it is plain
    batch norm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (N, C, H, W)."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        c = x.shape[1]
        xd = x.double()
        local = torch.cat(
            [
                xd.sum(dim=(0, 2, 3)),
                xd.square().sum(dim=(0, 2, 3)),
                xd.new_full((1,), x.numel() / c),
            ]
        )
        total = dist_fn.all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean.square()).clamp_min(0.0)
        self._update_running(mean.detach(), var.detach() * n / (n - 1).clamp_min(1.0))
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        out = (x - mean.to(x.dtype).view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        return out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        m = self.momentum if self.momentum is not None else 0.1
        self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased_var.to(self.running_var.dtype), alpha=m)
        self.num_batches_tracked.add_(1)


def sync_batch_norm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm2d of ``module`` by its synchronised version, in place
    (:class:`torch.nn.SyncBatchNorm` on CUDA, :class:`AllReduceBatchNorm2d` elsewhere);
    parameters and running statistics are kept, and so are state-dict keys."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = AllReduceBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            new.load_state_dict(child.state_dict())
            setattr(module, name, new.to(child.weight.device))
        else:
            sync_batch_norm(child, device_type)
    return module
