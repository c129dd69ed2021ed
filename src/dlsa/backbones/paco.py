"""PaCo: parametric contrastive learning for stage 1, with Balanced Softmax.

A MoCo-style setup (query encoder = the ResNet being trained, key encoder = its momentum
copy, a queue of past keys) where each query is pulled towards same-class keys (weight
``alpha``) and towards a learnable class centre (weight ``beta``). The centres are the
ResNet's own linear classifier, whose logits join the contrastive logits; with
``balanced=True`` they carry the log class prior (Balanced Softmax), as in the setting
the DLSA paper reproduces (Sec. 4.1, "PaCo + BalSoftmax").

Differences from the original release, on purpose: under DDP (``dlsa train`` with
torchrun) the queries, keys and labels of all ranks form the contrast set, as one process
with the global batch would (the release contrasts each GPU's own batch and only shares
keys through the queue), and batch norm is synchronised on request instead of the key
encoder's shuffled batch norm; crop + flip augmentation on both views (no RandAugment /
colour jitter);
the queue starts with random unit vectors that are never positives (label -1); the
epoch is chosen on validation data, never on test data.

References:
    Cui et al., "Parametric Contrastive Learning", ICCV 2021.
    https://arxiv.org/abs/2107.12028
    Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
    NeurIPS 2020. https://arxiv.org/abs/2007.10740
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlsa.backbones.bottleneck import BottleneckResNet
from dlsa.backbones.history import Stage1History
from dlsa.backbones.resnet import ResNet
from dlsa.backbones.train import (
    Augment,
    fit,
    in_memory_config,
    new_model,
    prepare_data,
    seed_generator,
)
from dlsa.engine import rng
from dlsa.engine.splits import class_counts
from dlsa.errors import DLSAInputError

Gather = Callable[[torch.Tensor, bool], torch.Tensor]
"""``gather(t, grad)``: the rows of ``t`` from all ranks in rank order."""


def paco_loss(
    q: torch.Tensor,
    labels: torch.Tensor,
    contrast: torch.Tensor,
    contrast_labels: torch.Tensor,
    class_logits: torch.Tensor,
    *,
    alpha: float,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 0.05,
    log_prior: torch.Tensor | None = None,
    self_offset: int = 0,
) -> torch.Tensor:
    """The PaCo loss of a batch of queries.

    For query i the logits are ``[class_logits_i (+ log_prior), q_i . contrast_j / T]``.
    Positives: the true class's centre (weight ``beta``) and every other contrast row of
    the same label (weight ``alpha``); the contrast rows enter the softmax denominator
    with weight ``gamma``. The query's own row (row ``self_offset + i`` of ``contrast``)
    is left out.

    Args:
        q: L2-normalized queries of shape (B, P).
        labels: their labels of shape (B,).
        contrast: L2-normalized contrast features of shape (M, P) whose rows
            ``self_offset .. self_offset + B - 1`` are ``q`` itself (e.g. the queries of
            all ranks, then keys, then the queue).
        contrast_labels: labels of shape (M,); -1 never matches.
        class_logits: classifier logits of shape (B, C) (the parametric centres).
        alpha: weight of same-class samples.
        beta: weight of the class centre.
        gamma: weight of the contrast rows in the denominator.
        temperature: T of the contrastive logits.
        log_prior: log class frequencies of shape (C,) added to ``class_logits``
            (Balanced Softmax), or None.
        self_offset: row of ``contrast`` holding query 0 (its rank's offset under DDP).

    Returns:
        The mean loss over the batch (a scalar).

    Example:
        >>> q = F.normalize(torch.randn(4, 8), dim=1)
        >>> y = torch.tensor([0, 1, 0, 2])
        >>> paco_loss(q, y, q, y, torch.randn(4, 3), alpha=0.0, gamma=0.0).ndim
        0
    """
    b, n_classes = class_logits.shape
    if log_prior is not None:
        class_logits = class_logits + log_prior
    logits = torch.cat([class_logits, q @ contrast.T / temperature], dim=1)
    not_self = torch.ones(b, len(contrast), device=q.device, dtype=q.dtype)
    rows = torch.arange(b, device=q.device)
    not_self[rows, rows + self_offset] = 0.0
    same = (labels[:, None] == contrast_labels[None, :]).to(q.dtype) * not_self
    onehot = F.one_hot(labels, n_classes).to(q.dtype)
    positive = torch.cat([beta * onehot, alpha * same], dim=1)
    # log(0) = -inf drops the query's own row (and everything when gamma = 0) exactly
    log_weight = torch.log(torch.cat([torch.ones_like(onehot), gamma * not_self], dim=1))
    log_prob = logits - torch.logsumexp(logits + log_weight, dim=1, keepdim=True)
    return -((positive * log_prob).sum(dim=1) / positive.sum(dim=1)).mean()


class PaCoObjective(nn.Module):
    """PaCo's projection head, momentum key encoder and key queue, as a stage-1 objective.

    Args:
        model: the query encoder (its ``fc`` gives the class-centre logits); copied once
            to make the key encoder.
        counts: train samples per class, shape (C,), for the Balanced Softmax prior.
        alpha: weight of same-class samples (CIFAR-LT release: 0.01).
        beta: weight of the class centre (release: 1.0).
        gamma: weight of the contrast rows in the denominator (release: 1.0).
        temperature: contrastive temperature (CIFAR-LT release: 0.05).
        queue_size: keys kept from past batches (CIFAR-LT release: 1024).
        proj_dim: output width of the projection MLP (CIFAR-LT release: 32).
        key_momentum: update rate m of the key encoder, ``k <- m k + (1 - m) q`` (0.999).
        balanced: add the log class prior to the centre logits (Balanced Softmax).
        generator: draws the projection weights and the initial queue.
    """

    queue: torch.Tensor
    queue_labels: torch.Tensor
    queue_ptr: torch.Tensor
    log_prior: torch.Tensor

    def __init__(
        self,
        model: ResNet | BottleneckResNet,
        counts: np.ndarray,
        *,
        alpha: float = 0.01,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 0.05,
        queue_size: int = 1024,
        proj_dim: int = 32,
        key_momentum: float = 0.999,
        balanced: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if queue_size < 1 or proj_dim < 1 or not 0.0 <= key_momentum < 1.0:
            raise ValueError(
                f"bad queue_size={queue_size}, proj_dim={proj_dim} or key_momentum={key_momentum}"
            )
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.temperature, self.key_momentum, self.balanced = temperature, key_momentum, balanced
        d = model.feature_dim
        layers = (nn.Linear(d, d), nn.Linear(d, proj_dim))
        self.proj = nn.Sequential(layers[0], nn.ReLU(), layers[1])
        for layer in layers:
            bound = 1.0 / float(np.sqrt(layer.in_features))
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            nn.init.zeros_(layer.bias)
        self.key_model = copy.deepcopy(model).requires_grad_(False)
        self.key_proj = copy.deepcopy(self.proj).requires_grad_(False)
        queue = F.normalize(rng.randn((queue_size, proj_dim), generator, "cpu"), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_labels", torch.full((queue_size,), -1, dtype=torch.int64))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))
        prior = torch.as_tensor(np.asarray(counts, dtype=np.float64) / np.sum(counts))
        self.register_buffer("log_prior", torch.log(prior.float() + 1e-9))

    def config(self) -> dict[str, Any]:
        """JSON description stored in checkpoints."""
        return {
            "name": "paco", "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma,
            "temperature": self.temperature, "queue_size": len(self.queue),
            "proj_dim": self.queue.shape[1], "key_momentum": self.key_momentum,
            "balanced": self.balanced,
        }  # fmt: skip

    def forward(
        self, model: ResNet, x: torch.Tensor, y: torch.Tensor, augment: Augment
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and class logits (B, C) of a batch x (B, C, H, W) in [0, 1], labels y (B,)."""
        features = model.embed(augment(x))
        logits = model.fc(features)
        q = F.normalize(self.proj(features), dim=1)
        return self.step(model, q, logits, augment(x), y), logits

    def step(
        self,
        model: nn.Module,
        q: torch.Tensor,
        logits: torch.Tensor,
        x_key: torch.Tensor,
        y: torch.Tensor,
        gather: Gather | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """One PaCo step after the query pass: update the key encoder, embed the key view,
        compute the loss, enqueue the keys.

        Args:
            model: the query encoder (its weights move the key encoder).
            q: L2-normalized queries (B, P) of the first view.
            logits: class logits (B, C) of the first view.
            x_key: the second view (B, C, H, W), for the key encoder.
            y: labels (B,).
            gather: ``gather(t, grad)`` concatenates the rows of all ranks in rank order
                (None: one process). Queries (differentiably), keys and labels of all
                ranks form the contrast set and all keys enter the queue, so a DDP step
                computes the loss one process would on the global batch.
            offset: row of this rank's first query among all ranks' (rank * B).

        Returns:
            The mean loss over this rank's queries.
        """
        with torch.no_grad():
            self.update_keys(model)
            k = F.normalize(self.key_proj(self.key_model.embed(x_key)), dim=1)
        q_all, k_all, y_all = (q, k, y) if gather is None else (
            gather(q, True), gather(k, False), gather(y, False)
        )  # fmt: skip
        loss = paco_loss(
            q, y, torch.cat([q_all, k_all, self.queue.clone()]),
            torch.cat([y_all, y_all, self.queue_labels]), logits, alpha=self.alpha,
            beta=self.beta, gamma=self.gamma, temperature=self.temperature,
            log_prior=self.log_prior if self.balanced else None, self_offset=offset,
        )  # fmt: skip
        self.enqueue(k_all, y_all)
        return loss

    @torch.no_grad()
    def update_keys(self, model: nn.Module) -> None:
        """Move the key encoder and projection towards the query's: k <- m k + (1 - m) q."""
        pairs = [(self.key_model, model), (self.key_proj, self.proj)]
        for key, query in pairs:
            for pk, pq in zip(key.parameters(), query.parameters(), strict=True):
                pk.mul_(self.key_momentum).add_(pq.detach(), alpha=1.0 - self.key_momentum)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, y: torch.Tensor) -> None:
        """Write keys (B, P) and their labels (B,) over the oldest queue rows."""
        slots = (self.queue_ptr + torch.arange(len(k), device=k.device)) % len(self.queue)
        self.queue[slots] = k
        self.queue_labels[slots] = y
        self.queue_ptr.copy_((self.queue_ptr + len(k)) % len(self.queue))


def train_paco(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    crop_padding: int = 2,
    **settings: Any,
) -> tuple[ResNet, Stage1History]:
    """Train a :class:`ResNet` with PaCo (+ Balanced Softmax), keeping the best val epoch.

    The loop, samplers, schedule, seeding, epoch selection and checkpoints are those of
    :func:`dlsa.backbones.train_backbone` (see it for the shared arguments); defaults of
    the PaCo terms follow the release's CIFAR-LT scripts (beta = gamma = 1).

    Args:
        images: train images, uint8 (N, H, W) / (N, H, W, C) or float (N, C, H, W).
        labels: train labels of shape (N,).
        val_images: validation images, or None.
        val_labels: validation labels of shape (M,), or None.
        checkpoint_dir: where to write ``best.safetensors`` / ``best.json``, or None.
        progress: show tqdm progress bars.
        crop_padding: zero padding of the random crop (as in :func:`train_backbone`).
        **settings: fields of :class:`~dlsa.backbones.train_config.Stage1Config`, the
            PaCo terms included (``paco_alpha``, ``paco_temperature``, ``paco_queue``,
            ``paco_dim``, ``paco_momentum``, ``paco_balanced``); ``loss`` is "paco";
            ``lr`` defaults to 0.05 here (the CIFAR-LT release's).

    Returns:
        ``(model, history)``: the query encoder with the kept epoch's weights, eval mode.
    """
    config = in_memory_config({"lr": 0.05, "loss": "paco"} | settings)
    if config.loss != "paco":
        raise DLSAInputError(f"train_paco trains loss='paco', got loss={config.loss!r}")
    x, y, val = prepare_data(images, labels, val_images, val_labels)
    model = new_model(x, y, val, config)
    objective = PaCoObjective(
        model, class_counts(y.numpy(), model.n_classes), alpha=config.paco_alpha,
        temperature=config.paco_temperature, queue_size=config.paco_queue,
        proj_dim=config.paco_dim, key_momentum=config.paco_momentum,
        balanced=config.paco_balanced, generator=seed_generator(config.seed, 4),
    )  # fmt: skip
    return fit(model, objective, x, y, val, config, crop_padding, checkpoint_dir, progress)
