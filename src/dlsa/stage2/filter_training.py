"""Training of one Gaussian Mixture Flow Filter: the three losses of each step (weighted
MLE, balancedness with the momentum estimator, purity of class-uniform pairs) and the
choice of the epoch whose weights are kept, by statistics of the level's training
samples (most clusters that are pure and large enough; never the test set).

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 3.3 and supplement Sec. 2-3, 5.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dlsa.config import FilterConfig
from dlsa.engine.rng import randperm
from dlsa.engine.rows import Rows, gather
from dlsa.engine.sampling import PurityPairSampler, class_balanced_order
from dlsa.engine.training import OptimSettings, n_batches, train_epochs
from dlsa.errors import TrainingDivergedError
from dlsa.stage2.losses import (
    MomentumEstimator,
    balancedness_loss,
    cap_class_weights,
    class_weights,
    purity_loss,
)

logger = logging.getLogger(__name__)

MIN_BATCH = 2
"""Smallest batch a filter trains on (its batch norm needs two rows)."""


@dataclass
class FilterReport:
    """How a flow filter's training went (all numbers on the level's train samples).

    Attributes:
        n_samples: samples of the level.
        n_classes: classes present at the level.
        losses: per epoch, the per-step mean of each loss term as optimised, before its
            lambda (``mle``, ``bal``, ``pure``).
        terms: per epoch, the per-step means of the lambda-weighted terms on the original
            release's scale and under its names (``log_lh``: lambda_mle times minus the
            batch mean of ``w(y) log p(x)`` with class weights summing to one over the
            level's classes; ``purity``; ``balance``), to lay beside its logs (which
            print the sums over an epoch's steps).
        good_clusters: per epoch, clusters with purity > min_purity and size > min_size.
        purity_counts: per epoch, the clusters of purity above 0.9, 0.7 and 0.5 (keys
            ``">0.9"``, ``">0.7"``, ``">0.5"``; the release's "Purity:" log line).
        largest_share: per epoch, share of the samples in the largest cluster.
        selected_epoch: the epoch whose weights were kept (1-based).
        selection: how it was chosen ("most good clusters" or a fallback reason).
        diverged_epoch: epoch in which a non-finite loss stopped training, if any.
        threshold: the routing threshold on ``log p(x)``.
    """

    n_samples: int
    n_classes: int
    losses: list[dict[str, float]] = field(default_factory=list)
    terms: list[dict[str, float]] = field(default_factory=list)
    good_clusters: list[int] = field(default_factory=list)
    purity_counts: list[dict[str, int]] = field(default_factory=list)
    largest_share: list[float] = field(default_factory=list)
    selected_epoch: int = 0
    selection: str = ""
    diverged_epoch: int | None = None
    threshold: float = float("nan")


class FilterScores(Protocol):
    """What the trainer reads of a filter's scores of N samples
    (:class:`~dlsa.stage2.filter.FilterOutput`)."""

    @property
    def log_prob(self) -> Tensor:
        """(N,) log-likelihoods ``log p(x)``."""
        ...

    @property
    def cluster(self) -> Tensor:
        """(N,) most probable cluster."""
        ...


class TrainableFilter(Protocol):
    """What :class:`FilterTrainer` uses of the filter it trains (a
    :class:`~dlsa.stage2.filter.FlowFilter`, which calls the trainer: this protocol keeps
    the training loop from importing it). D features, K clusters, C classes.

    Attributes:
        config: the filter's configuration.
        n_classes: C.
        flow: the flow, whose parameters are optimised.
    """

    config: FilterConfig
    n_classes: int
    flow: nn.Module

    @property
    def n_components(self) -> int:
        """K."""
        ...

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (N, D), ``log p(x)`` (N,) and ``log P(k | x)`` (N, K) of x (N, D)."""
        ...

    def transform(self, x: Rows) -> FilterScores:
        """Scores of x (N, D) in eval mode."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Set training mode (``nn.Module.train``)."""
        ...

    def eval(self) -> Any:
        """Set eval mode (``nn.Module.eval``)."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """The weights and buffers by name (``nn.Module.state_dict``)."""
        ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> Any:
        """Load weights and buffers by name (``nn.Module.load_state_dict``)."""
        ...


def cluster_class_histogram(
    clusters: Tensor, target: Tensor, n_clusters: int, n_classes: int
) -> Tensor:
    """Counts (K, C) of samples of each class in each cluster.

    Args:
        clusters: (N,) cluster indices.
        target: (N,) class indices.

    Example:
        >>> cluster_class_histogram(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]), 2, 2)
        tensor([[0., 2.],
                [1., 0.]])
    """
    flat = clusters.long() * n_classes + target.long()
    counts = torch.bincount(flat, minlength=n_clusters * n_classes)
    return counts.reshape(n_clusters, n_classes).float()


def _snapshot(module: TrainableFilter, into: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """Copy of the module's state: into the tensors of ``into`` when given (allocated by an
    earlier snapshot of the same module), else into new ones."""
    if into is None:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}
    for k, v in module.state_dict().items():
        into[k].copy_(v)
    return into


class FilterTrainer:
    """The training run of one flow filter (losses, epoch selection)."""

    def __init__(
        self,
        flt: TrainableFilter,
        x: Rows,
        y: Tensor,
        generator: torch.Generator,
        report: FilterReport,
    ) -> None:
        cfg = flt.config
        self.flt, self.x, self.y, self.generator, self.report = flt, x, y, generator, report
        counts = torch.bincount(y, minlength=flt.n_classes).to(x.dtype)
        weights = class_weights(counts, cfg.q)
        if cfg.max_class_share is not None:
            weights = cap_class_weights(weights, counts, cfg.max_class_share)
        self.sample_weights = weights[y]
        self.momentum = MomentumEstimator(cfg.eta)
        self.n_pairs = max(1, int(round(cfg.purity_pairs * cfg.batch_size)))
        self.pairs = PurityPairSampler(y)  # per-class tables built once per level
        # drawn once per epoch: (i, j) pairs, or (None, j) partners of the batch's samples
        self.epoch_pairs: list[tuple[Tensor | None, Tensor]] = []
        # epoch snapshots are copied into buffers allocated once (no deep copy per epoch)
        self.best_state: dict[str, Tensor] | None = None
        self.best_score = -1
        self.last_state: dict[str, Tensor] | None = None
        self.terms: dict[str, Tensor] = {}  # summed on the device, read once per epoch
        self.steps = 0

    def step_loss(self, idx: Tensor) -> Tensor:
        """Scalar loss of the batch idx (B,): weighted MLE on the batch (averaged as
        ``mle_normalization`` says, divided by D with ``mle_per_dimension``),
        balancedness of its mean posterior, and purity of class-uniform pairs (drawn
        apart, or the batch's samples and their partners: ``purity_anchors``)."""
        cfg = self.flt.config
        pi, pj = self.epoch_pairs.pop() if self.epoch_pairs else self._pairs_of(idx)
        b = idx.numel()
        groups = [idx, pj] if pi is None else [idx, pi, pj]
        (log_prob, log_post_b), *rest = self._forward(groups)
        log_post_i = log_post_b if pi is None else rest[0][1]
        w = self.sample_weights[idx]
        weighted = -(w * log_prob).sum()  # weighted_nll's numerator
        mle = weighted / (b if cfg.mle_normalization == "batch" else w.sum().clamp_min(1e-12))
        if cfg.mle_per_dimension:
            mle = mle / self.x.shape[1]
        bal = balancedness_loss(self.momentum.update(log_post_b.exp().mean(dim=0)))
        pure = purity_loss(log_post_i, rest[-1][1], detach_i=cfg.detach_purity_target)
        terms = {
            "mle": mle,
            "bal": bal,
            "pure": pure,
            "log_lh": cfg.lambda_mle * weighted / b,
            "purity": cfg.lambda_pure * pure,
            "balance": cfg.lambda_bal * bal,
        }
        for name, value in terms.items():
            old = self.terms.get(name)
            self.terms[name] = value.detach() if old is None else old + value.detach()
        self.steps += 1
        return cfg.lambda_mle * mle + cfg.lambda_bal * bal + cfg.lambda_pure * pure

    def _pairs_of(self, idx: Tensor) -> tuple[Tensor | None, Tensor]:
        """Purity pairs of a step outside an epoch of :meth:`epoch_order` (benchmarks)."""
        if self.flt.config.purity_anchors == "batch":
            return None, self.pairs.partners(idx, self.generator)
        return self.pairs.draw(self.n_pairs, self.generator)

    def _forward(self, groups: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """``(log p(x), log P(k | x))`` of each group of indices, all in one pass through
        the flow (``flow_passes="joint"``) or one pass per group ("separate")."""
        if self.flt.config.flow_passes == "separate":
            return [self.flt(gather(self.x, g))[1:] for g in groups]
        _, log_prob, log_post = self.flt(gather(self.x, torch.cat(groups)))
        sizes = [g.numel() for g in groups]
        return list(zip(log_prob.split(sizes), log_post.split(sizes), strict=True))

    def epoch_end(self, epoch: int, loss: float) -> None:
        """Log the epoch's terms and cluster statistics; keep its weights if it is the
        best eligible epoch so far."""
        cfg, report = self.flt.config, self.report
        means = {k: float(v) / max(self.steps, 1) for k, v in self.terms.items()}
        report.losses.append({k: means[k] for k in ("mle", "bal", "pure") if k in means})
        report.terms.append({k: means[k] for k in ("log_lh", "purity", "balance") if k in means})
        self.terms, self.steps = {}, 0
        out = self.flt.transform(self.x)
        hist = cluster_class_histogram(
            out.cluster, self.y, self.flt.n_components, self.flt.n_classes
        )
        sizes = hist.sum(dim=1)
        purity = hist.max(dim=1).values / sizes.clamp_min(1.0)
        good = int(((purity > cfg.min_purity) & (sizes > cfg.min_cluster_size)).sum())
        share = float(sizes.max() / self.x.shape[0])
        report.good_clusters.append(good)
        report.purity_counts.append({f">{t}": int((purity > t).sum()) for t in (0.9, 0.7, 0.5)})
        report.largest_share.append(share)
        self.last_state = _snapshot(self.flt, self.last_state)
        finite = bool(torch.isfinite(out.log_prob).all())
        warm = epoch >= max(1, round(cfg.selection_start * cfg.epochs))
        small = cfg.max_cluster_size is None or float(sizes.max()) < cfg.max_cluster_size
        fits = share <= cfg.max_cluster_share and small
        if warm and finite and fits and self._improves(good):
            self.best_score = good
            self.best_state = _snapshot(self.flt, self.best_state)
            report.selected_epoch = epoch
        logger.info(
            "filter epoch %d: loss %.4g, good clusters %d, largest cluster %.1f%%",
            epoch,
            loss,
            good,
            100 * share,
        )

    def _improves(self, good: int) -> bool:
        """Whether an eligible epoch with ``good`` good clusters replaces the best so far
        (on a tie only with ``epoch_ties="latest"``)."""
        if good == self.best_score:
            return self.flt.config.epoch_ties == "latest"
        return good > self.best_score

    def epoch_order(self) -> Tensor:
        """Indices (N,) of the next epoch's batches: a random permutation, or N
        class-balanced draws with ``batch_sampler="class-balanced"``; then the purity
        pairs of all the epoch's steps, in the order the steps would draw them."""
        cfg, n = self.flt.config, self.x.shape[0]
        if cfg.batch_sampler == "class-balanced":
            order = class_balanced_order(self.y, n, self.generator)
        else:
            order = randperm(n, self.generator, self.x.device)
        steps = n_batches(n, cfg.batch_size, MIN_BATCH)
        if cfg.purity_anchors == "batch":
            partners = self.pairs.partners(order, self.generator).split(cfg.batch_size)
            pairs: list[tuple[Tensor | None, Tensor]] = [(None, p) for p in partners[:steps]]
        else:
            i, j = self.pairs.draw_steps(steps, self.n_pairs, self.generator)
            pairs = [(i[s], j[s]) for s in range(steps)]
        self.epoch_pairs = pairs[::-1]  # pop() = next step's
        return order

    def run(self, progress: bool) -> None:
        """Train the flow, then load the selected epoch's weights (eval mode)."""
        cfg, report = self.flt.config, self.report
        settings = OptimSettings.of(cfg, min_batch=MIN_BATCH)
        self.flt.train()
        history = train_epochs(
            self.flt.flow.parameters(),
            self.step_loss,
            self.epoch_order,
            settings,
            on_epoch_end=self.epoch_end,
            progress=progress,
            desc="flow filter",
        )
        report.diverged_epoch = history.diverged_epoch
        self._select(len(history.losses))
        self.flt.eval()

    def _select(self, n_epochs: int) -> None:
        report = self.report
        if self.best_state is not None and self.best_score > 0:
            report.selection = "most good clusters"
        elif self.best_state is not None:
            report.selection = (
                "fallback: no cluster met the purity/size bar; "
                f"{self.flt.config.epoch_ties} eligible epoch"
            )
        elif self.last_state is not None:
            report.selection = "fallback: every epoch had an oversized cluster; latest epoch"
            self.best_state, report.selected_epoch = self.last_state, n_epochs
        else:
            raise TrainingDivergedError(
                "the flow filter's loss became non-finite in its first epoch; for features "
                "far from unit scale set flow_filter.standardize (--flow-filter.standardize "
                "true), else lower flow_filter.lr or flow_filter.max_class_share"
            )
        if report.diverged_epoch is not None:
            report.selection += " (training stopped: non-finite loss in epoch "
            report.selection += f"{report.diverged_epoch})"
        self.flt.load_state_dict(self.best_state)
