"""One generic minibatch loop shared by the flow filters and the classifiers.

The loop does not know what it trains: it receives the parameters, a function that maps
a batch of indices to a scalar loss, and a function that gives each epoch's index order.
All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dlsa.engine.precision import at_least_float32, step_precision
from dlsa.engine.progress import Phase
from dlsa.engine.rng import torch_generator

__all__ = [
    "SGD",
    "OptimSettings",
    "TrainHistory",
    "minibatches",
    "n_batches",
    "torch_generator",
    "train_epochs",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimSettings:
    """SGD settings of one training run.

    Attributes:
        epochs: passes over the index order.
        batch_size: indices per step.
        lr: initial learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        grad_clip: max gradient norm applied after ``backward``; None disables.
        cosine: anneal the learning rate to 0 with a per-step cosine schedule.
        min_batch: smaller trailing batches are skipped (batch norm needs >= 2).
        precision: matmul precision of each step, see :func:`dlsa.engine.precision.step_precision`.
        max_steps: most steps in all; fewer epochs are run when ``epochs`` would take
            more (:meth:`epochs_for`); None: no limit.
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    cosine: bool = False
    min_batch: int = 1
    precision: str = "fp32"
    max_steps: int | None = None

    def epochs_for(self, per_epoch: int) -> int:
        """Epochs to run at ``per_epoch`` steps an epoch: ``epochs``, or fewer when that
        would exceed ``max_steps`` (at least one).

        Example:
            >>> s = OptimSettings(epochs=40, batch_size=256, lr=0.1, max_steps=5000)
            >>> s.epochs_for(100), s.epochs_for(453)
            (40, 12)
        """
        if self.max_steps is None or self.epochs * per_epoch <= self.max_steps:
            return self.epochs
        return max(1, math.ceil(self.max_steps / per_epoch))

    @classmethod
    def of(cls, config: Any, **overrides: Any) -> OptimSettings:
        """The settings a config dataclass (``HeadConfig``, ``FilterConfig``) holds under
        the same field names, with ``schedule == "cosine"`` as ``cosine``; ``overrides``
        replace any of them. The one place where config fields become optimiser
        settings."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        if hasattr(config, "schedule"):
            values["cosine"] = config.schedule == "cosine"
        return cls(**(values | overrides))


@dataclass
class TrainHistory:
    """What happened in :func:`train_epochs`.

    Attributes:
        losses: mean loss of each completed epoch.
        diverged_epoch: 1-based epoch in which a non-finite loss stopped training, if any.
    """

    losses: list[float] = field(default_factory=list)
    diverged_epoch: int | None = None


def n_batches(n: int, batch_size: int, min_batch: int = 1) -> int:
    """How many batches :func:`minibatches` makes of an order of ``n`` indices.

    Example:
        >>> n_batches(5, 2, min_batch=2), n_batches(5, 2)
        (2, 3)
    """
    return n // batch_size + (n % batch_size >= max(min_batch, 1))


def minibatches(order: Tensor, batch_size: int, min_batch: int = 1) -> Iterator[Tensor]:
    """Split an index order (N,) into consecutive batches, skipping a last batch smaller
    than ``min_batch``.

    Example:
        >>> [b.tolist() for b in minibatches(torch.arange(5), 2, min_batch=2)]
        [[0, 1], [2, 3]]
    """
    for start in range(0, order.numel(), batch_size):
        batch = order[start : start + batch_size]
        if batch.numel() >= min_batch:
            yield batch


class SGD:
    """Stochastic gradient descent with momentum and weight decay: the update of
    ``torch.optim.SGD`` (dampening 0, no Nesterov) without its per-step bookkeeping
    (hooks, profiler records, parameter groups), which costs a third of a step of a
    small linear head on the CPU. Bit for bit the same parameters (tested).

    Attributes:
        lr: learning rate of the next :meth:`step` (the caller anneals it).
    """

    def __init__(
        self, params: list[nn.Parameter], lr: float, momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        self.params, self.lr = params, lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[Tensor | None] = [None] * len(params)

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """``g = grad + wd * p``; ``b = g`` (first step) or ``m * b + g``; ``p -= lr * b``
        (with momentum; else ``p -= lr * g``). Parameters without a gradient are left
        alone."""
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(grad).detach()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1)
                grad = buf
            p.add_(grad, alpha=-self.lr)


def _cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * step / max(total, 1)))


def train_epochs(
    parameters: Iterable[nn.Parameter],
    step_loss: Callable[[Tensor], Tensor],
    epoch_order: Callable[[], Tensor],
    settings: OptimSettings,
    *,
    on_epoch_end: Callable[[int, float], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> TrainHistory:
    """Run SGD over minibatches of indices.

    Args:
        parameters: the trainable parameters.
        step_loss: maps a batch of indices (B,) to a scalar loss (with graph).
        epoch_order: returns the index order (N,) of the next epoch; it draws from the
            caller's generator.
        settings: optimiser settings.
        on_epoch_end: called with ``(epoch, mean_loss)`` after each finite epoch.
        progress: show a tqdm bar over epochs (only when stderr is a terminal) and log
            the fit's progress lines (:mod:`dlsa.engine.progress`).
        desc: label of the bar and of log lines.

    Returns:
        The :class:`TrainHistory`; training stops at the first non-finite loss, before
        that step's update.
    """
    params = [p for p in parameters if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    optimizer = SGD(
        params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    history = TrainHistory()
    first_order = epoch_order()
    per_epoch = max(1, math.ceil(first_order.numel() / settings.batch_size))
    epochs = settings.epochs_for(per_epoch)
    total, step = epochs * per_epoch, 0
    # disable=None: drawn only when stderr is a terminal (no frames in redirected logs)
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=None if progress else True, leave=False)
    phase = Phase(f"fit: {desc}", epochs, "epoch {done}/{total}") if progress else None
    for epoch in bar:
        order = first_order if epoch == 1 else epoch_order()
        total_loss, n_batches = None, 0  # summed on the loss's device, read once per epoch
        for batch in minibatches(order, settings.batch_size, settings.min_batch):
            if settings.cosine:
                optimizer.lr = _cosine_lr(settings.lr, step, total)
            with step_precision(settings.precision, device):
                loss = at_least_float32(step_loss(batch))
            if not math.isfinite(loss.item()):
                history.diverged_epoch = epoch
                logger.warning("%s: non-finite loss in epoch %d; training stopped", desc, epoch)
                return history
            optimizer.zero_grad()
            loss.backward()
            if settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            total_loss = loss.detach() if total_loss is None else total_loss + loss.detach()
            n_batches += 1
            step += 1
        mean = 0.0 if total_loss is None else float(total_loss) / n_batches
        history.losses.append(mean)
        bar.set_postfix(loss=f"{mean:.4g}")
        logger.debug("%s: epoch %d loss %.5g", desc, epoch, mean)
        if phase is not None:
            phase.update(epoch, f"loss {mean:.4g}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, mean)
    if phase is not None:
        last = f"loss {history.losses[-1]:.4g}" if history.losses else ""
        phase.end(last, done=len(history.losses))
    return history
