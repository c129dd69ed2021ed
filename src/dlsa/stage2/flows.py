"""Masked autoregressive flow (MAF) with RealNVP batch normalisation.

The flow maps data ``x`` (N, D) to latent ``z`` (N, D) and returns ``log|det dz/dx|``
(N,). It knows nothing of the latent distribution, labels or training.

Each block is one MADE with one or more hidden layers and the affine autoregressive
transform ``u = (x - m(x)) * exp(-a(x))``, followed by a batch-norm transform with its
log-det term (batch statistics in training, running statistics in eval). The input
order is reversed between blocks.

References:
    Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", NeurIPS
    2017. https://arxiv.org/abs/1705.07057

    Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", ICML 2015.
    https://arxiv.org/abs/1502.03509

    Dinh et al., "Density estimation using Real NVP", ICLR 2017 (batch norm as a flow).
    https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.engine.precision import at_least_float32


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed binary mask.

    Args:
        mask: (out_features, in_features) binary mask, stored as a buffer.
        bias: whether to add a bias.

    Example:
        >>> layer = MaskedLinear(torch.tensor([[1.0, 0.0]]))
        >>> layer(torch.ones(3, 2)).shape
        torch.Size([3, 1])
    """

    mask: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, in_features) to (N, out_features)."""
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(n_features: int, n_hidden: int) -> Tensor:
    """MADE degrees (H,) of a hidden layer: unit ``h`` has degree ``1 + h mod (D - 1)``.

    Example:
        >>> hidden_degrees(3, 5).tolist()
        [1, 2, 1, 2, 1]
    """
    return torch.arange(n_hidden) % (n_features - 1) + 1


def made_masks(n_features: int, n_hidden: int, n_layers: int = 1) -> tuple[Tensor, ...]:
    """MADE masks for the identity order ``1..D`` and ``n_layers`` hidden layers of width
    ``n_hidden``.

    Every hidden layer has the degrees of :func:`hidden_degrees`. A hidden unit sees the
    units of the layer below (inputs or hidden) of degree <= its own, and output ``d``
    sees the last hidden layer's units of degree < ``d``, so output ``d`` depends on
    inputs ``1..d-1`` only.

    Args:
        n_features: D (>= 2).
        n_hidden: width H of each hidden layer.
        n_layers: number of hidden layers (>= 1).

    Returns:
        ``n_layers + 1`` float masks: ``(H, D)`` for the first layer, ``(H, H)`` for each
        further hidden layer, ``(D, H)`` for the output.

    Example:
        >>> m_in, m_out = made_masks(3, 4)
        >>> (m_out @ m_in).tolist()  # paths from input j to output i
        [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 2.0, 0.0]]
        >>> [tuple(m.shape) for m in made_masks(3, 4, n_layers=2)]
        [(4, 3), (4, 4), (3, 4)]
    """
    if n_features < 2:
        raise ValueError(f"a MADE needs at least 2 features, got {n_features}")
    if n_layers < 1:
        raise ValueError(f"a MADE needs at least 1 hidden layer, got {n_layers}")
    degrees_in = torch.arange(1, n_features + 1)
    degrees_hidden = hidden_degrees(n_features, n_hidden)
    masks = [(degrees_hidden[:, None] >= degrees_in[None, :]).float()]
    for _ in range(n_layers - 1):
        masks.append((degrees_hidden[:, None] >= degrees_hidden[None, :]).float())
    masks.append((degrees_in[:, None] > degrees_hidden[None, :]).float())
    return tuple(masks)


class MaskedAutoregressiveTransform(nn.Module):
    """One MADE block with the affine transform ``u = (x - m(x)) * exp(-a(x))``.

    With ``zero_init`` the output layer starts at zero, so a new block is the identity;
    otherwise every layer keeps PyTorch's default initialisation.

    Args:
        n_features: D.
        n_hidden: width of each hidden layer (ReLU).
        hidden_layers: number of hidden layers (D -> H -> ... -> H -> 2D).
        zero_init: zero the output layer's weight and bias.

    Example:
        >>> t = MaskedAutoregressiveTransform(4, 8, hidden_layers=2)
        >>> u, ladj = t(torch.randn(5, 4))
        >>> u.shape, ladj.shape
        (torch.Size([5, 4]), torch.Size([5]))
    """

    def __init__(
        self, n_features: int, n_hidden: int, *, hidden_layers: int = 1, zero_init: bool = True
    ) -> None:
        super().__init__()
        first, *between, mask_out = made_masks(n_features, n_hidden, hidden_layers)
        self.n_features = n_features
        # ``hidden`` keeps its name (and state-dict keys) of the one-hidden-layer MADE.
        self.hidden = MaskedLinear(first)
        self.deeper = nn.ModuleList(MaskedLinear(mask) for mask in between)
        self.output = MaskedLinear(torch.cat([mask_out, mask_out], dim=0))
        if zero_init:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def shift_and_log_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``m(x)`` and ``a(x)``, each (N, D); entry d depends on ``x[:, :d]``."""
        h = F.relu(self.hidden(x))
        for layer in self.deeper:
            h = F.relu(layer(h))
        params = at_least_float32(self.output(h))  # see dlsa.engine.precision
        return params[:, : self.n_features], params[:, self.n_features :]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map x (N, D) to (u (N, D), log|det du/dx| (N,))."""
        m, a = self.shift_and_log_scale(x)
        return (x - m) * torch.exp(-a), -a.sum(dim=-1)

    def inverse(self, u: Tensor) -> Tensor:
        """Invert exactly with D sequential passes: (N, D) -> (N, D)."""
        x = torch.zeros_like(u)
        for _ in range(self.n_features):
            m, a = self.shift_and_log_scale(x)
            x = u * torch.exp(a) + m
        return x


class BatchNormTransform(nn.Module):
    """RealNVP batch normalisation as an invertible transform.

    ``y = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta`` with batch statistics in
    training (which also update the running statistics) and running statistics in eval.

    Args:
        n_features: D.
        momentum: update rate of the running statistics.
        eps: variance floor.
        unbiased: batch variance with Bessel's correction (divide by B - 1, not B), for
            the normalisation in training and for the running variance.

    Example:
        >>> bn = BatchNormTransform(3).eval()
        >>> y, ladj = bn(torch.randn(4, 3))
        >>> abs(float(ladj[0].detach())) < 1e-3  # identity (up to eps) at initialisation, eval
        True
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(
        self, n_features: int, momentum: float = 0.1, eps: float = 1e-5, *, unbiased: bool = False
    ) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.unbiased = unbiased
        self.log_gamma = nn.Parameter(torch.zeros(n_features))
        self.beta = nn.Parameter(torch.zeros(n_features))
        self.register_buffer("running_mean", torch.zeros(n_features))
        self.register_buffer("running_var", torch.ones(n_features))

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance (D,) of x (N, D) in training (updating the running ones),
        the running ones in eval."""
        if not self.training:
            return self.running_mean, self.running_var
        mean = x.mean(dim=0)
        var = x.var(dim=0, unbiased=self.unbiased)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
        return mean, var

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map x (N, D) to (y (N, D), log|det dy/dx| (N,))."""
        mean, var = self._statistics(x)
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        y = (x - mean) * torch.exp(log_scale) + self.beta
        return y, log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        """Invert with the running statistics (exact in eval mode): (N, D) -> (N, D)."""
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        return (y - self.beta) * torch.exp(-log_scale) + self.running_mean


class Reverse(nn.Module):
    """Reverse the feature order; volume preserving."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map x (N, D) to (x reversed (N, D), zeros (N,))."""
        return x.flip(-1), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        """Reverse back: (N, D) -> (N, D)."""
        return y.flip(-1)


class MAF(nn.Module):
    """Masked autoregressive flow: ``n_blocks`` x (MADE, batch norm), order reversed
    between blocks.

    Args:
        n_features: D (>= 2).
        n_blocks: number of MADE blocks.
        n_hidden: width of each MADE's hidden layers; None means D.
        hidden_layers: hidden layers of each MADE.
        zero_init: start each MADE as the identity (zero output layer).
        batch_norm: add a :class:`BatchNormTransform` after each MADE.
        bn_momentum: running-statistics update rate.
        bn_eps: variance floor.
        bn_unbiased: unbiased batch variance in the batch-norm transforms.

    Example:
        >>> flow = MAF(4, n_blocks=2).eval()
        >>> x = torch.randn(6, 4)
        >>> z, ladj = flow(x)
        >>> torch.allclose(flow.inverse(z), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        n_features: int,
        n_blocks: int = 2,
        n_hidden: int | None = None,
        *,
        hidden_layers: int = 1,
        zero_init: bool = True,
        batch_norm: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        bn_unbiased: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        hidden = n_features if n_hidden is None else n_hidden
        layers: list[nn.Module] = []
        for i in range(n_blocks):
            if i > 0:
                layers.append(Reverse())
            layers.append(
                MaskedAutoregressiveTransform(
                    n_features, hidden, hidden_layers=hidden_layers, zero_init=zero_init
                )
            )
            if batch_norm:
                layers.append(
                    BatchNormTransform(n_features, bn_momentum, bn_eps, unbiased=bn_unbiased)
                )
        self.transforms = nn.ModuleList(layers)
        self.n_features = n_features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map data x (N, D) to latent z (N, D) and log|det dz/dx| (N,)."""
        ladj = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, term = transform(x)
            ladj = ladj + term
        return x, ladj

    def inverse(self, z: Tensor) -> Tensor:
        """Map latent z (N, D) back to data x (N, D); exact in eval mode."""
        for transform in reversed(self.transforms):
            z = transform.inverse(z)  # type: ignore[operator]
        return z
