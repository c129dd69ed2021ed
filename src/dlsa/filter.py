"""Gaussian Mixture Flow Filter: a MAF onto a fixed Gaussian-mixture latent, trained with
the weighted MLE, balancedness and purity losses, that routes the most likely samples.

``log p(x) = logsumexp_k log N(z | mu_k, I) - log K + log|det dz/dx|`` with ``z = g^-1(x)``.
After training, ``threshold`` is the likelihood above which the ``proportion`` most
likely training samples of this level lie; a sample goes to the level's cluster-aided
classifier iff ``log p(x) >= threshold``.

The filter does not train classifiers.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 3.3 and supplement Sec. 2-3, 5.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dlsa.config import FilterConfig
from dlsa.errors import DLSAInputError, TrainingDivergedError
from dlsa.flows import MAF
from dlsa.losses import (
    MomentumEstimator,
    balancedness_loss,
    cap_class_weights,
    class_weights,
    purity_loss,
    weighted_nll,
)
from dlsa.mixture import GaussianMixtureLatent
from dlsa.rng import randperm, seeded
from dlsa.sampling import PurityPairSampler, class_balanced_order
from dlsa.training import OptimSettings, train_epochs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterOutput:
    """Scores of samples under a flow filter (eval mode).

    Attributes:
        z: (N, D) latent codes.
        log_prob: (N,) log-likelihoods ``log p(x)``.
        cluster: (N,) most probable cluster ``k_hat``.
    """

    z: Tensor
    log_prob: Tensor
    cluster: Tensor


@dataclass
class FilterReport:
    """How a flow filter's training went (all numbers on the level's train samples).

    Attributes:
        n_samples: samples of the level.
        n_classes: classes present at the level.
        losses: per epoch, the mean of each loss term.
        good_clusters: per epoch, clusters with purity > min_purity and size > min_size.
        largest_share: per epoch, share of the samples in the largest cluster.
        selected_epoch: the epoch whose weights were kept (1-based).
        selection: how it was chosen ("most good clusters" or a fallback reason).
        diverged_epoch: epoch in which a non-finite loss stopped training, if any.
        threshold: the routing threshold on ``log p(x)``.
    """

    n_samples: int
    n_classes: int
    losses: list[dict[str, float]] = field(default_factory=list)
    good_clusters: list[int] = field(default_factory=list)
    largest_share: list[float] = field(default_factory=list)
    selected_epoch: int = 0
    selection: str = ""
    diverged_epoch: int | None = None
    threshold: float = float("nan")


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


def top_fraction_threshold(log_prob: Tensor, proportion: float) -> float:
    """Threshold such that ``log_prob >= threshold`` selects the top ``proportion``.

    With ``k = max(1, round(proportion * N))`` it is the k-th largest value, so exactly k
    samples pass when the values are distinct.

    Example:
        >>> top_fraction_threshold(torch.arange(10.0), 0.3)
        7.0
    """
    k = max(1, int(round(proportion * log_prob.numel())))
    return float(torch.topk(log_prob.detach().flatten(), k).values[-1])


class FlowFilter(nn.Module):
    """One Gaussian Mixture Flow Filter.

    Args:
        n_features: D (>= 2).
        n_classes: C, the number of classes of the whole problem.
        config: the filter's configuration.
        generator: draws the mixture means and the initial flow weights.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> cfg = FilterConfig(epochs=1, batch_size=32)
        >>> cfg = cfg.__class__(**{**cfg.__dict__, "mixture": cfg.mixture.__class__(4)})
        >>> flt = FlowFilter(3, 2, cfg, generator=g)
        >>> x, y = torch.randn(64, 3), torch.arange(64) % 2
        >>> report = flt.fit(x, y, generator=g)
        >>> int(flt.route(flt.transform(x).log_prob).sum())
        19
    """

    threshold: Tensor
    cluster_counts: Tensor

    def __init__(
        self, n_features: int, n_classes: int, config: FilterConfig, *, generator: torch.Generator
    ) -> None:
        super().__init__()
        fc = config.flow
        self.config = config
        self.n_classes = n_classes
        if config.mixture.n_components is None:
            raise ValueError(
                "flow_filter.mixture.n_components is None (auto): resolve it with "
                "dlsa.config.auto_components before building a FlowFilter"
            )
        hidden = fc.hidden_features
        if hidden is None and fc.max_hidden is not None:
            hidden = min(n_features, fc.max_hidden)
        self.flow = seeded(
            lambda: MAF(
                n_features,
                fc.n_blocks,
                hidden,
                hidden_layers=fc.hidden_layers,
                zero_init=fc.zero_init,
                batch_norm=fc.batch_norm,
                bn_momentum=fc.bn_momentum,
                bn_eps=fc.bn_eps,
                bn_unbiased=fc.bn_unbiased,
            ),
            generator,
        )
        self.latent = GaussianMixtureLatent.random(
            config.mixture.n_components,
            n_features,
            sigma=config.mixture.sigma,
            generator=generator,
        )
        if config.standardize:  # (x - mean) / std of the level, set by fit()
            self.register_buffer("input_mean", torch.zeros(n_features))
            self.register_buffer("input_std", torch.ones(n_features))
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.register_buffer("cluster_counts", torch.zeros(config.mixture.n_components, n_classes))

    @property
    def n_components(self) -> int:
        """K."""
        return self.latent.n_components

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Map x (N, D) to z (N, D), ``log p(x)`` (N,) and ``log P(k | x)`` (N, K)."""
        if self.config.standardize:  # an affine map: log|det| = -sum(log std)
            z, ladj = self.flow((x - self.input_mean) / self.input_std)
            ladj = ladj - self.input_std.log().sum()
        else:
            z, ladj = self.flow(x)
        log_prob_z, log_post = self.latent(z)
        return z, log_prob_z + ladj, log_post

    @torch.no_grad()
    def transform(self, x: Tensor) -> FilterOutput:
        """Score x (N, D) in eval mode, in batches of ``eval_batch_size``."""
        was_training = self.training
        self.eval()
        zs, lps, ks = [], [], []
        for chunk in torch.split(x, self.config.eval_batch_size):
            z, lp, log_post = self(chunk)
            zs.append(z)
            lps.append(lp)
            ks.append(log_post.argmax(dim=-1))
        self.train(was_training)
        return FilterOutput(torch.cat(zs), torch.cat(lps), torch.cat(ks))

    def route(self, log_prob: Tensor) -> Tensor:
        """Boolean mask (N,): True for samples sent to the cluster-aided classifier."""
        if torch.isnan(self.threshold):
            raise RuntimeError("this FlowFilter is not fitted: call fit() first")
        return log_prob >= self.threshold

    def cluster_prior(self, cluster: Tensor) -> Tensor:
        """``P(y | h = k_hat)`` (N, C) for clusters (N,): the class frequencies in each
        sample's cluster of the samples ``cluster_counts`` was counted on (the level's
        training samples after :meth:`fit`; zeros for a cluster that held none)."""
        counts = self.cluster_counts[cluster]
        return counts / counts.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def class_histogram(self, x: Tensor, y: Tensor) -> Tensor:
        """Counts (K, C) of the samples x (N, D) of each class y (N,) in each cluster
        (what ``cluster_counts`` holds for the samples it was counted on)."""
        clusters = self.transform(x).cluster
        hist = cluster_class_histogram(clusters, y, self.n_components, self.n_classes)
        return hist.to(self.cluster_counts)

    def with_proportion(self, config: FilterConfig, x: Tensor) -> FlowFilter:
        """A copy of this fitted filter that routes ``config.proportion`` of the level's
        training samples x (N, D) (the samples it was fitted on); ``config`` may differ
        from this filter's only in ``proportion``."""
        out = copy.deepcopy(self)
        out.config = config
        lp = out.transform(x).log_prob
        out.threshold.fill_(top_fraction_threshold(lp, config.proportion))
        return out

    def fit(
        self, x: Tensor, y: Tensor, *, generator: torch.Generator, progress: bool = False
    ) -> FilterReport:
        """Train on a level's samples x (N, D) with classes y (N,), keep the best epoch by
        train statistics, and fix the routing threshold.

        Raises:
            DLSAInputError: if the level has fewer samples than clusters or fewer than two
                classes.
            TrainingDivergedError: if the loss is non-finite already in the first epoch.
        """
        n, k = x.shape[0], self.n_components
        present = int(torch.unique(y).numel())
        if n < k:
            raise DLSAInputError(
                f"the level has {n} training samples but the filter has K={k} clusters; "
                "use fewer clusters (flow_filter.mixture.n_components) or a smaller depth"
            )
        if present < 2:
            raise DLSAInputError(f"the level has samples of {present} class; a filter needs two")
        report = FilterReport(n_samples=n, n_classes=present)
        if self.config.standardize:
            self.input_mean.copy_(x.mean(dim=0))
            self.input_std.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-6))
        trainer = _FilterTrainer(self, x, y, generator, report)
        trainer.run(progress)
        out = self.transform(x)
        self.threshold.fill_(top_fraction_threshold(out.log_prob, self.config.proportion))
        report.threshold = float(self.threshold)
        hist = cluster_class_histogram(out.cluster, y, k, self.n_classes)
        self.cluster_counts.copy_(hist.to(self.cluster_counts))
        return report


def _snapshot(module: nn.Module, into: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """Copy of the module's state: into the tensors of ``into`` when given (allocated by an
    earlier snapshot of the same module), else into new ones."""
    if into is None:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}
    for k, v in module.state_dict().items():
        into[k].copy_(v)
    return into


class _FilterTrainer:
    """The training run of one :class:`FlowFilter` (losses, epoch selection)."""

    def __init__(
        self,
        flt: FlowFilter,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator,
        report: FilterReport,
    ) -> None:
        cfg = flt.config
        self.flt, self.x, self.y, self.generator, self.report = flt, x, y, generator, report
        counts = torch.bincount(y, minlength=flt.n_classes).to(x.dtype)
        weights = cap_class_weights(class_weights(counts, cfg.q), counts, cfg.max_class_share)
        self.sample_weights = weights[y]
        self.momentum = MomentumEstimator(cfg.eta)
        self.n_pairs = max(1, int(round(cfg.purity_pairs * cfg.batch_size)))
        self.pairs = PurityPairSampler(y)  # per-class tables built once per level
        # epoch snapshots are copied into buffers allocated once (no deep copy per epoch)
        self.best_state: dict[str, Tensor] | None = None
        self.best_score = -1
        self.last_state: dict[str, Tensor] | None = None
        self.terms: dict[str, Tensor] = {}  # summed on the device, read once per epoch
        self.steps = 0

    def step_loss(self, idx: Tensor) -> Tensor:
        """Scalar loss of the batch idx (B,): weighted MLE on the batch (divided by D
        with ``mle_per_dimension``), balancedness of its mean posterior, and purity of
        freshly drawn class-uniform pairs."""
        cfg, flt = self.flt.config, self.flt
        pi, pj = self.pairs.draw(self.n_pairs, self.generator)
        b = idx.numel()
        _, log_prob, log_post = flt(torch.cat([self.x[idx], self.x[pi], self.x[pj]]))
        mle = weighted_nll(log_prob[:b], self.sample_weights[idx])
        if cfg.mle_per_dimension:
            mle = mle / self.x.shape[1]
        p_batch = log_post[:b].exp().mean(dim=0)
        bal = balancedness_loss(self.momentum.update(p_batch))
        pure = purity_loss(
            log_post[b : b + self.n_pairs],
            log_post[b + self.n_pairs :],
            detach_i=cfg.detach_purity_target,
        )
        terms = {"mle": mle, "bal": bal, "pure": pure}
        for name, value in terms.items():
            old = self.terms.get(name)
            self.terms[name] = value.detach() if old is None else old + value.detach()
        self.steps += 1
        return cfg.lambda_mle * mle + cfg.lambda_bal * bal + cfg.lambda_pure * pure

    def epoch_end(self, epoch: int, loss: float) -> None:
        """Log the epoch's terms and cluster statistics; keep its weights if it is the
        best eligible epoch so far."""
        cfg, report = self.flt.config, self.report
        report.losses.append({k: float(v) / max(self.steps, 1) for k, v in self.terms.items()})
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
        report.largest_share.append(share)
        self.last_state = _snapshot(self.flt, self.last_state)
        finite = bool(torch.isfinite(out.log_prob).all())
        warm = epoch >= max(1, round(cfg.selection_start * cfg.epochs))
        if warm and finite and share <= cfg.max_cluster_share and self._improves(good):
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
        class-balanced draws with ``batch_sampler="class-balanced"``."""
        n = self.x.shape[0]
        if self.flt.config.batch_sampler == "class-balanced":
            return class_balanced_order(self.y, n, self.generator)
        return randperm(n, self.generator, self.x.device)

    def run(self, progress: bool) -> None:
        """Train the flow, then load the selected epoch's weights (eval mode)."""
        cfg, report = self.flt.config, self.report
        settings = OptimSettings.of(cfg, min_batch=2)  # batch norm needs 2 rows
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
