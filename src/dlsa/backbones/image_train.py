"""``dlsa train``: stage 1 on image files streamed from disk, on one process or many (DDP).

Images are decoded by ``DataLoader`` workers (:mod:`dlsa.backbones.stream`); each epoch's
batches come from :class:`~dlsa.backbones.batches.EpochBatches` (shuffled for ``ce`` and
``paco``, class-balanced for ``cbs``); SGD with momentum, linear warm-up then a per-step
cosine schedule. The epoch kept is the best by balanced accuracy on the validation list,
or without one on the images ``holdout`` held out of the training images (listed in
``holdout.json``; the last epoch with ``holdout=0``); the test set is never seen.

Under ``torchrun`` each process trains a DDP replica on its share of every global batch;
PaCo's queries, keys and labels are gathered over all ranks, ``sync_bn`` normalises with
the global batch's statistics, and rank 0 alone writes checkpoints, logs and bars. With
``sync_bn`` (or a backbone without batch norm), one DDP step equals one process's step on
the global batch up to floating-point summation order.

Reproducibility: every draw is seeded by (seed, epoch, position), and every epoch ends
with a full state on disk (:mod:`dlsa.backbones.run_state`), so ``resume`` after a kill
anywhere gives on the CPU the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dlsa.backbones import distributed as D
from dlsa.backbones.batches import EpochBatches
from dlsa.backbones.checkpoint import Backbone
from dlsa.backbones.history import EpochRecord, Stage1History, epoch_line, update_history
from dlsa.backbones.images import to_float
from dlsa.backbones.paco import PaCoObjective
from dlsa.backbones.provenance import holdout_mask, subset
from dlsa.backbones.run_files import RunFiles
from dlsa.backbones.stream import (
    EvalImages,
    ImageReadError,
    ImageSource,
    TrainViews,
    check_classes,
    read_source,
)
from dlsa.backbones.train import seed_generator
from dlsa.backbones.train_config import ImageTrainConfig, build_backbone
from dlsa.engine.devices import resolve_device
from dlsa.engine.progress import INTERVAL, Phase
from dlsa.engine.splits import class_counts
from dlsa.errors import DLSAInputError

logger = logging.getLogger(__name__)
StepHook = Callable[[int, int], None]
"""Called as ``hook(epoch, step)`` after every optimizer step (1-based epoch, 0-based step)."""


def train_images(
    config: ImageTrainConfig, *, on_step: StepHook | None = None
) -> tuple[Backbone, Stage1History]:
    """Train a backbone on image files; the run folder feeds ``dlsa extract``.

    Args:
        config: data, model, optimisation and run settings.
        on_step: optional hook after every optimizer step.

    Returns:
        ``(model, history)``: the kept epoch's weights in eval mode, and the history.

    Raises:
        DLSAInputError: bad data (a missing or unreadable image with its file and line, a
            class without a training image), or a resume folder of another configuration.
    """
    device = _device(config)
    info = D.setup(device.type)
    try:
        return _Run(config, device, info, on_step).run()
    finally:
        D.teardown(info)


def _device(config: ImageTrainConfig) -> torch.device:
    device = resolve_device(config.device, what="--device")
    if config.bf16 and device.type != "cuda":
        raise DLSAInputError("--bf16 needs a CUDA device")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and non-indexed "cuda" tensors use this GPU
    return device


class _Net(nn.Module):
    """Everything trained: the backbone and PaCo's projection; one forward for DDP."""

    def __init__(self, backbone: Backbone, proj: nn.Module | None) -> None:
        super().__init__()
        self.backbone, self.proj = backbone, proj

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, C) and the normalized projection (B, P) or None, of (B, C, H, W)."""
        features = self.backbone.embed(x)
        q = None if self.proj is None else F.normalize(self.proj(features), dim=1)
        return self.backbone.fc(features), q


class _Run(RunFiles):
    """One training run: data, model, optimizer, loaders, state on disk."""

    def __init__(
        self,
        cfg: ImageTrainConfig,
        device: torch.device,
        info: D.DistInfo,
        on_step: StepHook | None,
    ) -> None:
        self.cfg, self.device, self.info, self.on_step = cfg, device, info, on_step
        self.out = Path(cfg.out)
        full = read_source(
            cfg.images, cfg.split_list, skip_missing=cfg.skip_bad_images, flag="--images"
        )
        self.full_digest = full.digest()
        self.train_src, self.val_src, self.held = full, self._val_source(), None
        if self.val_src is None and cfg.holdout > 0:
            mask = holdout_mask(full.labels, cfg.holdout, cfg.seed)
            if mask.any():
                self.train_src, self.held = subset(full, ~mask), subset(full, mask)
                self.val_src = self.held
        self.n_classes = check_classes(self.train_src, self.val_src)
        self.model = build_backbone(cfg, self.n_classes, seed_generator(cfg.seed, 0))
        self.model.set_input_stats(*self._input_stats())
        self.objective = self._objective()
        if cfg.sync_bn:
            D.sync_batch_norm(self.model, device.type)
            if self.objective is not None:
                D.sync_batch_norm(self.objective.key_model, device.type)
        self.net = _Net(self.model, None if self.objective is None else self.objective.proj)
        self.net.to(device)
        if self.objective is not None:
            self.objective.to(device)
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        self.batches = EpochBatches(
            self.train_src.labels, order="balanced" if cfg.loss == "cbs" else "shuffle",
            batch_size=cfg.batch_size, seed=cfg.seed, rank=info.rank,
            world_size=info.world_size,
        )  # fmt: skip
        self.steps = cfg.epochs * len(self.batches)
        self.history = Stage1History(
            (), 0, "last_epoch" if self.val_src is None else "val_balanced_accuracy"
        )  # noqa: E501
        self.best_state: dict[str, torch.Tensor] = {}
        self.skipped: list[int] = []

    # ------------------------------------------------------------------ building
    def _val_source(self) -> ImageSource | None:
        cfg = self.cfg
        if cfg.val_split_list is None and cfg.val_images is None:
            return None
        return read_source(
            cfg.val_images or cfg.images, cfg.val_split_list,
            skip_missing=cfg.skip_bad_images, flag="--val-images",
        )  # fmt: skip

    def _objective(self) -> PaCoObjective | None:
        cfg = self.cfg
        if cfg.loss != "paco":
            return None
        return PaCoObjective(
            self.model, class_counts(self.train_src.labels, self.n_classes),
            alpha=cfg.paco_alpha, temperature=cfg.paco_temperature, queue_size=cfg.paco_queue,
            proj_dim=cfg.paco_dim, key_momentum=cfg.paco_momentum, balanced=cfg.paco_balanced,
            generator=seed_generator(cfg.seed, 4),
        )  # fmt: skip

    def _input_stats(self, n_max: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std (C,) of up to ``n_max`` evenly spaced train images."""
        n = len(self.train_src.paths)
        picks = np.unique(np.linspace(0, n - 1, min(n, n_max)).round().astype(int))
        sums, count = torch.zeros(2, 1 if self.cfg.grayscale else 3, dtype=torch.float64), 0
        for x, _, _, errors in self._eval_loader(self.train_src, picks.tolist(), None):
            x = x[self._keep(errors, minimum=0)].double()
            sums += torch.stack([x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3))])
            count += x.shape[0] * x.shape[2] * x.shape[3]
        if count == 0:
            raise DLSAInputError(f"--images {self.cfg.images}: no readable training image")
        mean = sums[0] / count
        return mean.float(), (sums[1] / count - mean.square()).clamp_min(0).sqrt().float()

    def _eval_loader(
        self, source: ImageSource, indices: list[int], resize: int | None
    ) -> DataLoader:
        data = EvalImages(source, size=self.cfg.size, mode=self.cfg.mode, resize=resize)
        return DataLoader(
            data, batch_size=max(1, self.cfg.batch_size // self.info.world_size),
            sampler=indices, num_workers=self.cfg.workers,
        )  # fmt: skip

    def _keep(self, errors: list[str], minimum: int) -> torch.Tensor:
        """Mask (B,) of the readable images of a batch; raise on the first unreadable one
        unless ``skip_bad_images``."""
        bad = [e for e in errors if e]
        if bad and not self.cfg.skip_bad_images:
            raise ImageReadError(f"{bad[0]} (--skip-bad-images drops such images)")
        keep = torch.tensor([not e for e in errors], dtype=torch.bool)
        if int(keep.sum()) < minimum:
            raise DLSAInputError(
                f"fewer than {minimum} readable images in a batch ({bad[0]}); remove the "
                "unreadable images from the list"
            )
        return keep

    # ------------------------------------------------------------------ running
    def run(self) -> tuple[Backbone, Stage1History]:
        """Train the remaining epochs and write the kept epoch as ``<out>/best.*``; a run
        that fails before its first saved epoch gives ``out`` back as it found it."""
        self._prepare_out()
        try:
            return self._train()
        except BaseException:
            self._release_out()
            raise

    def _train(self) -> tuple[Backbone, Stage1History]:
        start = self._resume() if self.cfg.resume else 1
        ddp: nn.Module = self.net
        if self.info.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = DistributedDataParallel(self.net, device_ids=ids)
        cfg = self.cfg
        views = TrainViews(
            self.train_src, size=cfg.size, mode=cfg.mode, views=2 if cfg.loss == "paco" else 1,
            scale=(cfg.crop_scale, 1.0), flip=cfg.flip, seed=cfg.seed, augment=cfg.augment,
            randaug=(cfg.randaug_n, cfg.randaug_m),
        )  # fmt: skip
        loader = DataLoader(
            views, batch_sampler=self.batches, num_workers=cfg.workers,
            persistent_workers=cfg.workers > 0, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        val = None
        if self.val_src is not None:
            shard = list(range(self.info.rank, len(self.val_src.paths), self.info.world_size))
            val = self._eval_loader(self.val_src, shard, cfg.val_resize)
        phase = Phase(f"stage 1 ({cfg.loss})", cfg.epochs, "epoch {done}/{total}")
        for epoch in range(start, cfg.epochs + 1):
            began = time.perf_counter()
            loss, acc, skipped = self._train_epoch(epoch, loader, ddp)
            scores = self._evaluate(val) if val is not None else (None, None)
            record = EpochRecord(
                epoch, loss, acc, *scores, self._lr(epoch * len(self.batches) - 1),
                time.perf_counter() - began,
            )  # fmt: skip
            self.history = update_history(self.history, record)
            self.skipped.append(skipped)
            self._save(epoch)
            if self._bar_off() is None:  # progress on, rank 0
                epoch_line(phase, record, last=epoch == cfg.epochs)
        return self._finish()

    def _lr(self, step: int) -> float:
        """Learning rate of global step ``step`` (0-based): linear warm-up, then cosine."""
        warm = self.cfg.warmup_epochs * len(self.batches)
        if step < warm:
            return self.cfg.lr * (step + 1) / warm
        t = min(step - warm, self.steps - warm) / max(self.steps - warm, 1)
        return self.cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))

    def _train_epoch(
        self, epoch: int, loader: DataLoader, ddp: nn.Module
    ) -> tuple[float, float, int]:
        """One epoch; returns the mean loss, train accuracy and unreadable images skipped."""
        self.net.train()
        if self.objective is not None:
            self.objective.train()
        self.batches.set_epoch(epoch)
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        bar = tqdm(
            total=len(self.batches) * self.cfg.batch_size, unit="img", unit_scale=True,
            desc=f"epoch {epoch}/{self.cfg.epochs}", leave=False, disable=self._bar_off(),
        )  # fmt: skip
        images = Phase(f"stage 1 ({self.cfg.loss}): epoch {epoch}/{self.cfg.epochs}",
                       bar.total, "{done}/{total} images", interval=6 * INTERVAL)  # fmt: skip
        for step, (views, y, _, errors) in enumerate(loader):
            keep = self._keep(errors, minimum=2)
            views, y = views[keep], y[keep].to(self.device)
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr((epoch - 1) * len(self.batches) + step)
            x = to_float(views[:, 0].to(self.device, non_blocking=True))
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.bf16):
                logits, q = ddp(x)
                loss = self._loss(logits, q, views, y) * self._rank_weight(len(y))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            hits = (logits.argmax(1) == y).sum()
            totals += torch.stack([loss.detach() * len(y), hits, y.new_tensor(len(y)),
                                   y.new_tensor(int((~keep).sum()))]).double()  # fmt: skip
            bar.update(self.cfg.batch_size)
            if self._bar_off() is None:
                images.update(bar.n, f"{bar.n / images.seconds:.0f} images/s")
            if self.on_step is not None:
                self.on_step(epoch, step)
        bar.close()
        t = D.all_reduce_sum(totals, self.info).tolist()
        return t[0] / t[2], t[1] / t[2], int(t[3])

    def _rank_weight(self, n_local: int) -> float:
        """Factor of this rank's mean loss that makes DDP's gradient (the mean over ranks)
        the mean over the global batch's images: ``n_local * world / n_global``. It is 1
        unless skipped images left the ranks' batches of unequal size."""
        if self.info.world_size == 1 or not self.cfg.skip_bad_images:
            return 1.0
        total = D.all_reduce_sum(torch.tensor([float(n_local)], device=self.device), self.info)
        return n_local * self.info.world_size / float(total)

    def _loss(
        self, logits: torch.Tensor, q: torch.Tensor | None, views: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        if self.objective is None or q is None:
            return F.cross_entropy(logits, y)
        x_key = to_float(views[:, 1].to(self.device, non_blocking=True))
        if self.info.world_size == 1:
            return self.objective.step(self.model, q, logits, x_key, y)
        sizes = D.gather_rows(y.new_tensor([len(y)]), self.info)
        offset = int(sizes[: self.info.rank].sum())
        gather = lambda t, grad: D.gather_rows(t, self.info, grad=grad)  # noqa: E731
        return self.objective.step(self.model, q, logits, x_key, y, gather, offset)

    @torch.no_grad()
    def _evaluate(self, loader: DataLoader) -> tuple[float, float]:
        """Top-1 and balanced accuracy (mean recall over the classes present)."""
        self.model.eval()
        hits = torch.zeros(2, self.n_classes, dtype=torch.float64, device=self.device)
        for x, y, _, errors in loader:
            keep = self._keep(errors, minimum=0)
            if not bool(keep.any()):
                continue
            y = y[keep].to(self.device)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.bf16):
                pred = self.model(to_float(x[keep].to(self.device))).argmax(1)
            hits[0].index_add_(0, y, (pred == y).double())
            hits[1].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
        correct, count = D.all_reduce_sum(hits, self.info)
        present = count > 0
        return float(correct.sum() / count.sum()), float((correct / count)[present].mean())

    def _bar_off(self) -> bool | None:
        return None if self.cfg.progress and self.info.is_main else True
