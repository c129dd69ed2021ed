"""The fixed Gaussian-mixture latent of a flow filter.

``p(z) = 1/K sum_k N(z | mu_k, I)``, with means ``mu_k`` drawn once from
``N(0, sigma^2 I)`` and kept as a buffer (saved, moved with ``.to``, never trained).

Squared distances to the means are computed as ``||z||^2 - 2 z mu^T + ||mu||^2``: one
(N, D) x (D, K) matmul. A (N, K, D) tensor is never built (at D=2048, K=500 and a batch
of 1024 it would take 4 GB).

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Eq. 3-5.

    Izmailov et al., "Semi-Supervised Learning with Normalizing Flows" (FlowGMM), ICML
    2020. https://arxiv.org/abs/1912.13025
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dlsa.engine import rng
from dlsa.engine.precision import at_least_float32, float32_region


def default_sigma(n_features: int) -> float:
    """Supplement, Sec. 3: ``sigma = sqrt(3 / (2 D))`` puts two means three units apart
    on average.

    Example:
        >>> round(default_sigma(1024), 4)
        0.0383
    """
    return math.sqrt(3.0 / (2.0 * n_features))


def squared_distances(z: Tensor, means: Tensor) -> Tensor:
    """``||z_n - mu_k||^2`` for all pairs, via one matmul.

    Args:
        z: (N, D) latent points.
        means: (K, D) mixture means.

    Returns:
        (N, K) non-negative squared distances.

    Example:
        >>> squared_distances(torch.tensor([[0.0, 3.0]]), torch.tensor([[4.0, 0.0]]))
        tensor([[25.]])
    """
    with float32_region(z.device):  # a difference of large norms: never in bfloat16
        z = at_least_float32(z)
        z_sq = z.square().sum(dim=-1, keepdim=True)
        mu_sq = means.square().sum(dim=-1)
        return (z_sq - 2.0 * (z @ means.T) + mu_sq).clamp_min(0.0)


class GaussianMixtureLatent(nn.Module):
    """Uniform mixture of K unit-covariance Gaussians with fixed means.

    Args:
        means: (K, D) component means, stored as a buffer.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> latent = GaussianMixtureLatent.random(10, 4, sigma=0.05, generator=g)
        >>> log_prob, log_post = latent(torch.randn(3, 4))
        >>> log_prob.shape, log_post.shape
        (torch.Size([3]), torch.Size([3, 10]))
    """

    means: Tensor

    def __init__(self, means: Tensor) -> None:
        super().__init__()
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        self.register_buffer("means", means.clone())

    @classmethod
    def random(
        cls,
        n_components: int,
        n_features: int,
        *,
        sigma: float | None,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> GaussianMixtureLatent:
        """Draw means ``mu_k ~ N(0, sigma^2 I)`` with ``generator``.

        Args:
            n_components: K.
            n_features: D.
            sigma: std of each mean entry; None means :func:`default_sigma`.
            generator: source of randomness (the global RNG is never used).
            dtype: dtype of the means.
        """
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        scale = default_sigma(n_features) if sigma is None else sigma
        means = rng.randn((n_components, n_features), generator, generator.device, dtype=dtype)
        return cls(means * scale)

    @property
    def n_components(self) -> int:
        """K."""
        return int(self.means.shape[0])

    def component_log_prob(self, z: Tensor) -> Tensor:
        """``log N(z | mu_k, I)`` of shape (N, K) for z (N, D)."""
        d = z.shape[-1]
        return -0.5 * squared_distances(z, self.means) - 0.5 * d * math.log(2 * math.pi)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Mixture log-density (N,) and log-posterior ``log P(k | z)`` (N, K) of z (N, D)."""
        comp = self.component_log_prob(z)
        log_prob = torch.logsumexp(comp, dim=-1) - math.log(self.n_components)
        return log_prob, torch.log_softmax(comp, dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        """Mixture log-density (N,) of z (N, D)."""
        return self(z)[0]

    def posterior(self, z: Tensor) -> Tensor:
        """``P(k | z)`` (N, K); rows sum to one (Bayes' rule with the uniform prior)."""
        return self(z)[1].exp()
