"""Gaussian Mixture Flow Filter: a MAF onto a fixed Gaussian-mixture latent, trained with
the weighted MLE, balancedness and purity losses, that routes the most likely samples.

``log p(x) = logsumexp_k log N(z | mu_k, I) - log K + log|det dz/dx|`` with ``z = g^-1(x)``.
After training, ``threshold`` is the likelihood above which the most likely ``share``
of the level's training samples lie (the level's routed share,
:attr:`dlsa.config.DLSAConfig.routed_share`, not a setting of the filter's training); a
sample goes to the level's cluster-aided classifier iff ``log p(x) >= threshold``.

The filter does not train classifiers; its training loop is
:mod:`dlsa.stage2.filter_training`.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 3.3 and supplement Sec. 2-3, 5.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dlsa.config import DLSAConfig, FilterConfig
from dlsa.engine.rng import seeded
from dlsa.engine.rows import Rows, column_moments, map_rows
from dlsa.errors import DLSAInputError
from dlsa.stage2.classifiers import ClusterPrior
from dlsa.stage2.filter_training import FilterReport, FilterTrainer, cluster_class_histogram
from dlsa.stage2.flows import MAF
from dlsa.stage2.mixture import GaussianMixtureLatent

__all__ = [
    "FilterOutput",
    "FilterReport",
    "FilterTrainer",
    "FlowFilter",
    "cluster_class_histogram",
    "top_fraction_threshold",
]


@dataclass(frozen=True)
class FilterOutput:
    """Scores of samples under a flow filter (eval mode).

    Attributes:
        z: (N, D) latent codes (in host memory when the scored x was).
        log_prob: (N,) log-likelihoods ``log p(x)``.
        cluster: (N,) most probable cluster ``k_hat``.
    """

    z: Rows
    log_prob: Tensor
    cluster: Tensor


def top_fraction_threshold(log_prob: Tensor, share: float) -> float:
    """Threshold such that ``log_prob >= threshold`` selects the top ``share``.

    With ``k = max(1, round(share * N))`` it is the k-th largest value, so exactly k
    samples pass when the values are distinct.

    Example:
        >>> top_fraction_threshold(torch.arange(10.0), 0.3)
        7.0
    """
    k = max(1, int(round(share * log_prob.numel())))
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
    def transform(self, x: Rows) -> FilterOutput:
        """Score x (N, D) in eval mode, in batches of ``eval_batch_size``; z stays where
        x is (host memory for :class:`~dlsa.engine.rows.HostRows`), log p(x) and the clusters
        (N,) are on the device."""
        was_training = self.training
        self.eval()
        lps: list[Tensor] = []
        ks: list[Tensor] = []
        z = map_rows(lambda chunk: self._score(chunk, lps, ks), x, self.config.eval_batch_size)
        self.train(was_training)
        return FilterOutput(z, torch.cat(lps), torch.cat(ks))

    def _score(self, x: Tensor, lps: list[Tensor], ks: list[Tensor]) -> Tensor:
        """z (B, D) of a chunk x (B, D); appends its log p(x) and clusters to the lists."""
        z, lp, log_post = self(x)
        lps.append(lp)
        ks.append(log_post.argmax(dim=-1))
        return z

    def route(self, log_prob: Tensor) -> Tensor:
        """Boolean mask (N,): True for samples sent to the cluster-aided classifier."""
        if torch.isnan(self.threshold):
            raise RuntimeError("this FlowFilter is not fitted: call fit() first")
        return log_prob >= self.threshold

    def cluster_prior(self, cluster: Tensor) -> ClusterPrior:
        """``P(y | h = k_hat)`` of samples in clusters (N,), rows (N, C) of
        :meth:`prior_table` kept as a compact :class:`~dlsa.stage2.classifiers.ClusterPrior`."""
        return ClusterPrior(cluster, self.prior_table())

    def prior_table(self) -> Tensor:
        """(K, C): the class frequencies in each cluster of the samples
        ``cluster_counts`` was counted on (the level's training samples after
        :meth:`fit`; zeros for a cluster that held none)."""
        counts = self.cluster_counts
        return counts / counts.sum(dim=-1, keepdim=True).clamp_min(1.0)

    def class_histogram(self, x: Rows, y: Tensor) -> Tensor:
        """Counts (K, C) of the samples x (N, D) of each class y (N,) in each cluster
        (what ``cluster_counts`` holds for the samples it was counted on)."""
        clusters = self.transform(x).cluster
        hist = cluster_class_histogram(clusters, y, self.n_components, self.n_classes)
        return hist.to(self.cluster_counts)

    def rerouted(self, share: float, x: Rows) -> FlowFilter:
        """A copy of this fitted filter that routes the most likely ``share`` of the
        level's training samples x (N, D) (the samples it was fitted on): the same
        filter, another threshold."""
        out = copy.deepcopy(self)
        lp = out.transform(x).log_prob
        out.threshold.fill_(top_fraction_threshold(lp, share))
        return out

    def fit(
        self,
        x: Rows,
        y: Tensor,
        *,
        generator: torch.Generator,
        share: float = DLSAConfig.routed_share,
        progress: bool = False,
    ) -> FilterReport:
        """Train on a level's samples x (N, D) with classes y (N,), keep the best epoch by
        train statistics, and fix the routing threshold: the most likely ``share`` of x
        is routed (the level's :attr:`~dlsa.config.DLSAConfig.routed_share`).

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
            mean, std = column_moments(x)
            self.input_mean.copy_(mean)
            self.input_std.copy_(std.clamp_min(1e-6))
        trainer = FilterTrainer(self, x, y, generator, report)
        trainer.run(progress)
        out = self.transform(x)
        self.threshold.fill_(top_fraction_threshold(out.log_prob, share))
        report.threshold = float(self.threshold)
        hist = cluster_class_histogram(out.cluster, y, k, self.n_classes)
        self.cluster_counts.copy_(hist.to(self.cluster_counts))
        return report
