"""Stage 1 of the decoupled pipeline: train a small ResNet on long-tailed images.

Two samplers, as in the paper's feature-learning baselines (Sec. 4.1): ``"ce"`` (plain
cross-entropy over a shuffled epoch) and ``"cbs"`` (class-balanced sampling: every class
is equally likely per draw). SGD with momentum and a per-step cosine schedule;
augmentation is a random crop from a zero-padded image plus an optional horizontal flip.

The epoch kept is the one with the best balanced accuracy (mean per-class recall) on the
validation set; without a validation set it is the last epoch. The test set is never
seen. All randomness comes from generators seeded from ``seed``
(``np.random.SeedSequence(seed).spawn``): weight init, epoch order, CBS draws and
augmentation; no global RNG is touched.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlsa.backbones.checkpoint import save_checkpoint
from dlsa.backbones.images import as_image_tensor, channel_stats, random_crop_flip, to_float
from dlsa.backbones.resnet import ResNet
from dlsa.data import class_balanced_indices

logger = logging.getLogger(__name__)

Sampler = Literal["ce", "cbs"]
SAMPLERS: tuple[str, ...] = ("ce", "cbs")
"""Stage-1 samplers: plain shuffling, class-balanced sampling."""


@dataclass(frozen=True)
class EpochRecord:
    """What happened in one epoch (1-based ``epoch``); accuracies are fractions."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainHistory:
    """Per-epoch records and the epoch whose weights were kept.

    Attributes:
        epochs: one :class:`EpochRecord` per epoch.
        best_epoch: the epoch kept (1-based).
        selection: ``"val_balanced_accuracy"`` or ``"last_epoch"`` (no validation set).
    """

    epochs: tuple[EpochRecord, ...]
    best_epoch: int
    selection: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {
            "epochs": [asdict(r) for r in self.epochs],
            "best_epoch": self.best_epoch,
            "selection": self.selection,
        }


def train_backbone(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    sampler: Sampler = "ce",
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    depth: int = 8,
    widths: Sequence[int] = (16, 32, 64),
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    crop_padding: int = 2,
    flip: bool = True,
    model: ResNet | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[ResNet, TrainHistory]:
    """Train a :class:`ResNet` with cross-entropy, keeping the best validation epoch.

    Args:
        images: train images, uint8 (N, H, W) / (N, H, W, C) or float (N, C, H, W) in [0, 1].
        labels: train labels of shape (N,) in ``0 .. C-1``.
        val_images: validation images, same layout, or None.
        val_labels: validation labels of shape (M,), or None.
        sampler: ``"ce"`` (shuffled epochs) or ``"cbs"`` (class-balanced draws, N per epoch).
        epochs: passes over the data.
        batch_size: images per SGD step.
        lr: peak learning rate of the cosine schedule.
        seed: seed of every random choice.
        device: where to train (``"cpu"``, ``"cuda"`` ...).
        depth: ResNet depth 6n + 2 (ignored when ``model`` is given).
        widths: channels of the three stages (ignored when ``model`` is given).
        weight_decay: L2 penalty of SGD.
        momentum: SGD momentum.
        crop_padding: zero padding of the random crop (0: no cropping).
        flip: random horizontal flips (turn off for digits or text).
        model: a ResNet to train further; None builds one whose input statistics are set
            from ``images`` and whose C = max label + 1.
        checkpoint_dir: if given, the best epoch is written there as ``best.safetensors``
            + ``best.json`` (with the history) each time it improves.
        progress: show tqdm progress bars.

    Returns:
        ``(model, history)``: the model with the kept epoch's weights, in eval mode.

    Raises:
        ValueError: on a bad argument (named in the message).
    """
    _check_args(sampler, epochs, batch_size, lr, crop_padding, val_images, val_labels)
    x, y = as_image_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need >= 2 images with one label each, got {len(x)} and {len(y)}")
    val = None
    if val_images is not None and val_labels is not None and len(val_labels) > 0:
        val = (as_image_tensor(val_images), torch.as_tensor(np.asarray(val_labels)).long())
    init_seq, order_seq, cbs_seq, aug_seq = np.random.SeedSequence(seed).spawn(4)
    if model is None:
        model = _new_model(x, y, val, depth, widths, _generator(init_seq))
    model.to(device)
    optimizer, schedule = _optimizer(
        model, lr, momentum, weight_decay, epochs * math.ceil(len(y) / batch_size)
    )
    augment = _Augment(crop_padding, flip, _generator(aug_seq))
    loop = _Loop(model, optimizer, schedule, batch_size, augment, device)
    order_gen, rng = _generator(order_seq), np.random.default_rng(cbs_seq)
    settings = {
        "sampler": sampler, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "seed": seed, "weight_decay": weight_decay, "momentum": momentum,
        "crop_padding": crop_padding, "flip": flip, "n_train": len(y),
        "n_val": 0 if val is None else len(val[1]),
    }  # fmt: skip
    history = TrainHistory((), 0, "last_epoch" if val is None else "val_balanced_accuracy")
    best_state: dict[str, torch.Tensor] = {}
    bar = tqdm(range(1, epochs + 1), desc=f"stage 1 ({sampler})", disable=not progress)
    for epoch in bar:
        record = loop.epoch(epoch, x, y, _epoch_order(y, sampler, order_gen, rng), val, progress)
        history = _update(history, record)
        bar.set_postfix(loss=f"{record.train_loss:.3f}", val=_fmt(record.val_balanced_accuracy))
        logger.info("stage-1 epoch %s", record)
        if history.best_epoch == epoch:
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint_dir is not None:
                metadata = {"history": history.to_dict(), "settings": settings}
                save_checkpoint(model, checkpoint_dir, "best", metadata)
    model.load_state_dict(best_state)
    if checkpoint_dir is not None:  # the full history, with the same (best) weights
        save_checkpoint(
            model, checkpoint_dir, "best", {"history": history.to_dict(), "settings": settings}
        )
    return model.eval(), history


def _update(history: TrainHistory, record: EpochRecord) -> TrainHistory:
    """Append ``record``; it becomes the best epoch if its score beats the best so far."""
    epochs = (*history.epochs, record)
    if history.selection == "last_epoch":
        return TrainHistory(epochs, record.epoch, history.selection)
    best = history.epochs[history.best_epoch - 1] if history.best_epoch else None
    score = record.val_balanced_accuracy
    assert score is not None
    if best is None or score > (best.val_balanced_accuracy or -math.inf):
        return TrainHistory(epochs, record.epoch, history.selection)
    return TrainHistory(epochs, history.best_epoch, history.selection)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _optimizer(
    model: ResNet, lr: float, momentum: float, weight_decay: float, steps: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with momentum and a per-step cosine decay from ``lr`` to 0 over ``steps``."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    )
    return optimizer, schedule


def _check_args(
    sampler: str,
    epochs: int,
    batch_size: int,
    lr: float,
    crop_padding: int,
    val_images: np.ndarray | None,
    val_labels: np.ndarray | None,
) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    if (val_images is None) != (val_labels is None):
        raise ValueError("give both val_images and val_labels, or neither")


def _generator(seq: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator().manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> 1))


def _new_model(
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    depth: int,
    widths: Sequence[int],
    generator: torch.Generator,
) -> ResNet:
    n_classes = int(y.max()) + 1 if val is None else int(max(y.max(), val[1].max())) + 1
    model = ResNet(
        in_channels=x.shape[1], n_classes=n_classes, depth=depth, widths=widths,
        generator=generator,
    )  # fmt: skip
    model.set_input_stats(*channel_stats(x))
    return model


def _epoch_order(
    y: torch.Tensor, sampler: str, generator: torch.Generator, rng: np.random.Generator
) -> torch.Tensor:
    if sampler == "cbs":
        return torch.from_numpy(class_balanced_indices(y.numpy(), len(y), rng=rng))
    return torch.randperm(len(y), generator=generator)


@dataclass(frozen=True)
class _Augment:
    padding: int
    flip: bool
    generator: torch.Generator


class _Loop:
    """One model's optimizer, schedule and augmentation settings, for train and eval."""

    def __init__(
        self,
        model: ResNet,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        batch_size: int,
        augment: _Augment,
        device: str | torch.device,
    ) -> None:
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.batch_size, self.augment = batch_size, augment
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    def epoch(
        self,
        epoch: int,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        val: tuple[torch.Tensor, torch.Tensor] | None,
        progress: bool,
    ) -> EpochRecord:
        """Train one epoch over ``order``, then evaluate on ``val`` (if any)."""
        start = time.perf_counter()
        loss, acc = self.train_epoch(x, y, order, progress)
        val_acc, val_bal = self.evaluate(*val) if val is not None else (None, None)
        lr = self.schedule.get_last_lr()[0]
        return EpochRecord(epoch, loss, acc, val_acc, val_bal, lr, time.perf_counter() - start)

    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        progress: bool,
    ) -> tuple[float, float]:
        """One pass over ``order``; returns the mean loss and the train accuracy."""
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = [b for b in order.split(self.batch_size) if len(b) > 1]  # BN needs >= 2
        for idx in tqdm(batches, desc="batches", leave=False, disable=not progress):
            xb = to_float(x[idx].to(self.device), self.dtype)
            xb = random_crop_flip(
                xb, padding=self.augment.padding, flip=self.augment.flip,
                generator=self.augment.generator,
            )  # fmt: skip
            yb = y[idx].to(self.device)
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
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
                for xb in x.split(4 * self.batch_size)
            ]
        )
        hit = (preds == y).double()
        per_class = [hit[y == c].mean() for c in torch.unique(y)]
        return float(hit.mean()), float(torch.stack(per_class).mean())
