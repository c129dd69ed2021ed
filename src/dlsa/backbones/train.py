"""Stage 1 of the decoupled pipeline: train a small ResNet on long-tailed images.

Two samplers, as in the paper's feature-learning baselines (Sec. 4.1): ``loss="ce"``
(plain cross-entropy over a shuffled epoch) and ``loss="cbs"`` (class-balanced sampling:
every class is equally likely per draw); PaCo in :mod:`dlsa.backbones.paco`. The
hyper-parameters are those of ``dlsa train``
(:class:`~dlsa.backbones.train_config.Stage1Config`), under the same names. SGD with
momentum and a per-step cosine schedule; augmentation is a random crop from a
zero-padded image plus an optional horizontal flip.

The epoch kept is the one with the best balanced accuracy (mean per-class recall) on the
validation set; without a validation set it is the last epoch. The test set is never
seen. All randomness comes from generators seeded from child streams of
``np.random.SeedSequence(seed)`` (:func:`seed_generator`): weight init, epoch order, CBS
draws, augmentation and the objective's own state; no global RNG is touched.

:func:`fit` is the loop shared by every objective (cross-entropy here, PaCo in
:mod:`dlsa.backbones.paco`).

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 4.1. https://arxiv.org/abs/2207.02173
    Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020. https://arxiv.org/abs/1910.09217
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dlsa.backbones.checkpoint import save_checkpoint
from dlsa.backbones.history import (
    EpochRecord,
    Stage1History,
    epoch_line,
    fmt_score,
    update_history,
)
from dlsa.backbones.images import as_image_tensor, channel_stats, random_crop_flip, to_float
from dlsa.backbones.resnet import ResNet
from dlsa.backbones.train_config import Stage1Config, arch_names
from dlsa.engine import rng
from dlsa.engine.devices import resolve_device
from dlsa.engine.progress import Phase
from dlsa.engine.splits import class_balanced_indices
from dlsa.engine.training import torch_generator
from dlsa.errors import DLSAInputError

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def train_backbone(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    model: ResNet | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    crop_padding: int = 2,
    **settings: Any,
) -> tuple[ResNet, Stage1History]:
    """Train a :class:`ResNet` with cross-entropy, keeping the best validation epoch.

    Args:
        images: train images, uint8 (N, H, W) / (N, H, W, C) or float (N, C, H, W) in [0, 1].
        labels: train labels of shape (N,) in ``0 .. C-1``.
        val_images: validation images, same layout, or None.
        val_labels: validation labels of shape (M,), or None.
        model: a ResNet to train further; None builds one whose input statistics are set
            from ``images`` and whose C = max label + 1 (``arch``, ``widths``).
        checkpoint_dir: if given, the best epoch is written there as ``best.safetensors``
            + ``best.json`` (with the history) each time it improves.
        progress: show tqdm progress bars (only when stderr is a terminal).
        crop_padding: zero padding of the random crop of this trainer's augmentation (0:
            no cropping; the image-file trainer uses a random resized crop instead).
        **settings: fields of :class:`~dlsa.backbones.train_config.Stage1Config`
            (``loss`` "ce" or "cbs", ``epochs``, ``lr``, ``seed``, ...), the ``dlsa train``
            flags of the same names; the small ResNets only, no warm-up.

    Returns:
        ``(model, history)``: the model with the kept epoch's weights, in eval mode.

    Raises:
        DLSAInputError: on a bad setting (named in the message); TypeError on an unknown
            one.
    """
    config = in_memory_config(settings)
    if config.loss == "paco":
        raise DLSAInputError("loss='paco': train with dlsa.backbones.train_paco")
    x, y, val = prepare_data(images, labels, val_images, val_labels)
    if model is None:
        model = new_model(x, y, val, config)
    return fit(
        model, CrossEntropyObjective(), x, y, val, config, crop_padding, checkpoint_dir, progress
    )


def in_memory_config(settings: dict[str, Any]) -> Stage1Config:
    """The :class:`Stage1Config` of ``settings``, checked for what the in-memory trainer
    supports: the small ResNets, no warm-up."""
    config = Stage1Config(**settings)
    if arch_names(config.arch) != "small":
        raise DLSAInputError(
            f"arch {config.arch!r}: the in-memory trainer builds the small ResNets "
            "(resnet8, resnet14 ...); train larger ones on image files with dlsa train"
        )
    if config.warmup_epochs:
        raise DLSAInputError("warmup_epochs: the in-memory trainer has no warm-up; dlsa train has")
    return config


class CrossEntropyObjective:
    """Plain cross-entropy on one augmented view; no parameters of its own."""

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters besides the model's (none)."""
        return []

    def config(self) -> dict[str, Any]:
        """JSON description stored in checkpoints."""
        return {"name": "ce"}

    def __call__(
        self, model: ResNet, x: torch.Tensor, y: torch.Tensor, augment: Augment
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits (B, C) of a batch x (B, C, H, W) in [0, 1], labels y (B,)."""
        logits = model(augment(x))
        return F.cross_entropy(logits, y), logits


def prepare_data(
    images: np.ndarray,
    labels: np.ndarray,
    val_images: np.ndarray | None,
    val_labels: np.ndarray | None,
) -> tuple[torch.Tensor, torch.Tensor, Batch | None]:
    """Images as (N, C, H, W) tensors (dtype kept), labels as int64; an empty val is None."""
    if (val_images is None) != (val_labels is None):
        raise ValueError("give both val_images and val_labels, or neither")
    x, y = as_image_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need >= 2 images with one label each, got {len(x)} and {len(y)}")
    if val_images is None or val_labels is None or len(val_labels) == 0:
        return x, y, None
    return x, y, (as_image_tensor(val_images), torch.as_tensor(np.asarray(val_labels)).long())


def new_model(x: torch.Tensor, y: torch.Tensor, val: Batch | None, config: Stage1Config) -> ResNet:
    """A ResNet of ``config.arch`` and ``config.widths`` for these images: C = max label
    + 1, input statistics of ``x``."""
    depth, widths, seed = int(config.arch.removeprefix("resnet")), config.widths, config.seed
    n_classes = int(y.max()) + 1 if val is None else int(max(y.max(), val[1].max())) + 1
    model = ResNet(
        in_channels=x.shape[1], n_classes=n_classes, depth=depth, widths=widths,
        generator=seed_generator(seed, 0),
    )  # fmt: skip
    model.set_input_stats(*channel_stats(x))
    return model


def seed_generator(seed: int, stream: int) -> torch.Generator:
    """CPU generator of child ``stream`` of ``SeedSequence(seed)``.

    Streams: 0 weight init, 1 epoch order, 2 CBS draws, 3 augmentation, 4 objective.
    """
    return torch_generator(np.random.SeedSequence(seed, spawn_key=(stream,)))


def fit(
    model: ResNet,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    val: Batch | None,
    settings: Stage1Config,
    crop_padding: int,
    checkpoint_dir: str | os.PathLike[str] | None,
    progress: bool,
) -> tuple[ResNet, Stage1History]:
    """Run the epochs, keep the best validation epoch, write checkpoints (see module doc)."""
    if crop_padding < 0:
        raise DLSAInputError(f"crop_padding must be >= 0, got {crop_padding}")
    device = resolve_device(settings.device)
    model.to(device)
    steps = math.ceil(len(y) / settings.batch_size)
    loop = _Loop(model, objective, settings, steps, device, crop_padding)
    history = Stage1History((), 0, "last_epoch" if val is None else "val_balanced_accuracy")
    best_state: dict[str, torch.Tensor] = {}
    desc = f"stage 1 ({settings.loss})"
    bar = tqdm(range(1, settings.epochs + 1), desc=desc, disable=None if progress else True)
    phase = Phase(desc, settings.epochs, "epoch {done}/{total}")
    for epoch in bar:
        record = loop.epoch(epoch, x, y, val, progress)
        history = update_history(history, record)
        score = fmt_score(record.val_balanced_accuracy)
        bar.set_postfix(loss=f"{record.train_loss:.3f}", val=score)
        logger.debug("stage-1 epoch %s", record)
        if progress:
            epoch_line(phase, record, last=epoch == settings.epochs)
        if history.best_epoch == epoch:
            best_state = copy.deepcopy(model.state_dict())
            _save(model, checkpoint_dir, history, settings, crop_padding, objective)
    bar.close()
    model.load_state_dict(best_state)
    _save(model, checkpoint_dir, history, settings, crop_padding, objective)  # all epochs
    return model.eval(), history


def _save(
    model: ResNet,
    directory: str | os.PathLike[str] | None,
    history: Stage1History,
    settings: Stage1Config,
    crop_padding: int,
    objective: Objective,
) -> None:
    if directory is not None:
        metadata = {
            "history": history.to_dict(),
            "settings": asdict(settings) | {"crop_padding": crop_padding},
            "objective": objective.config(),
        }
        save_checkpoint(model, directory, "best", metadata)


class Augment:
    """Random crop from a zero-padded image plus optional flip, drawn from one generator."""

    def __init__(self, padding: int, flip: bool, generator: torch.Generator) -> None:
        self.padding, self.flip, self.generator = padding, flip, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch (B, C, H, W)."""
        return random_crop_flip(x, padding=self.padding, flip=self.flip, generator=self.generator)


class Objective(Protocol):
    """A stage-1 training objective: extra parameters, and (loss, logits) of a batch."""

    def parameters(self) -> Iterable[nn.Parameter]:
        """Parameters besides the model's; those with ``requires_grad`` are trained."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON description stored in checkpoints."""
        ...

    def __call__(
        self, model: ResNet, x: torch.Tensor, y: torch.Tensor, augment: Augment
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (scalar) and logits (B, C) of a batch (B, C, H, W) in [0, 1]."""
        ...


class _Loop:
    """Optimizer, cosine schedule, sampler and augmentation of one training run."""

    def __init__(
        self,
        model: ResNet,
        objective: Objective,
        settings: Stage1Config,
        steps_per_epoch: int,
        device: torch.device,
        crop_padding: int,
    ) -> None:
        self.model, self.objective, self.settings = model, objective, settings
        self.device = device
        self.dtype = next(model.parameters()).dtype
        if isinstance(objective, nn.Module):
            objective.to(self.device)
        extra = [p for p in objective.parameters() if p.requires_grad]
        params = [*model.parameters(), *extra]
        self.optimizer = torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )  # fmt: skip
        steps = settings.epochs * steps_per_epoch
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps))
        )
        self.order_gen = seed_generator(settings.seed, 1)
        self.rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(2,)))
        self.augment = Augment(crop_padding, settings.flip, seed_generator(settings.seed, 3))

    def epoch(
        self, epoch: int, x: torch.Tensor, y: torch.Tensor, val: Batch | None, progress: bool
    ) -> EpochRecord:
        """Train one epoch, then evaluate on ``val`` (if any)."""
        start = time.perf_counter()
        loss, acc = self.train_epoch(x, y, progress)
        val_acc, val_bal = self.evaluate(*val) if val is not None else (None, None)
        lr = float(self.schedule.get_last_lr()[0])
        return EpochRecord(epoch, loss, acc, val_acc, val_bal, lr, time.perf_counter() - start)

    def order(self, y: torch.Tensor) -> torch.Tensor:
        """This epoch's sample order: a permutation (CE) or N class-balanced draws (CBS)."""
        if self.settings.loss == "cbs":
            return torch.from_numpy(class_balanced_indices(y.numpy(), len(y), rng=self.rng))
        return rng.randperm(len(y), self.order_gen, "cpu")

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, progress: bool) -> tuple[float, float]:
        """One pass; returns the mean loss and the train accuracy."""
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = [b for b in self.order(y).split(self.settings.batch_size) if len(b) > 1]
        for idx in tqdm(batches, desc="batches", leave=False, disable=None if progress else True):
            xb = to_float(x[idx].to(self.device), self.dtype)
            yb = y[idx].to(self.device)
            loss, logits = self.objective(self.model, xb, yb, self.augment)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Top-1 accuracy and balanced accuracy (mean recall over present classes)."""
        self.model.eval()
        preds = torch.cat(
            [
                self.model(to_float(xb.to(self.device), self.dtype)).argmax(1).cpu()
                for xb in x.split(4 * self.settings.batch_size)
            ]
        )
        hit = (preds == y).double()
        per_class = [hit[y == c].mean() for c in torch.unique(y)]
        return float(hit.mean()), float(torch.stack(per_class).mean())
