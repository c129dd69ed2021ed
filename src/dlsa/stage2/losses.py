"""Loss functions of the flow filter and of the base classifiers.

Pure functions of tensors; the only state is the explicit :class:`MomentumEstimator`.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Eq. 6-11 and supplement Sec. 2.

    Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020.
    https://arxiv.org/abs/2007.10740
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(counts: Tensor, q: float) -> Tensor:
    """Per-sample weight of each class, ``w(i) = n_i^-q / sum_j n_j^-q`` (Eq. 6).

    Classes with no sample get weight 0 and are left out of the sum.

    Args:
        counts: (C,) samples per class.
        q: exponent (>= 0); larger favours the tail more.

    Returns:
        (C,) weights summing to one.

    Example:
        >>> class_weights(torch.tensor([100.0, 10.0, 0.0]), 1.0)
        tensor([0.0909, 0.9091, 0.0000])
    """
    dtype = counts.dtype if counts.is_floating_point() else torch.float32
    counts = counts.to(torch.float64)
    present = counts > 0
    raw = torch.where(present, counts.clamp_min(1e-12).pow(-q), torch.zeros_like(counts))
    return (raw / raw.sum()).to(dtype)


def cap_class_weights(weights: Tensor, counts: Tensor, max_share: float) -> Tensor:
    """Limit the share of the total weight that any one class carries.

    A class's share of the data's weight is ``n_i w_i / sum_j n_j w_j``. Shares above
    ``max_share / C`` (C = classes present) are cut to that cap and the excess is spread
    over the other classes in proportion to their shares (water filling); per-sample
    weights are then ``share_i / n_i``, renormalised to sum to one over classes.

    Without this, at a deep cascade level where a class keeps one or two samples, q = 2
    gives that class almost all the weight and the flow diverges chasing its density.

    Args:
        weights: (C,) per-sample class weights (e.g. :func:`class_weights`).
        counts: (C,) samples per class.
        max_share: cap in multiples of the uniform share (>= 1).

    Returns:
        (C,) capped per-sample weights summing to one.

    Example:
        >>> w = class_weights(torch.tensor([1000.0, 100.0, 1.0]), 2.0)
        >>> shares = cap_class_weights(w, torch.tensor([1000.0, 100.0, 1.0]), 1.5)
        >>> bool(shares[2] < w[2])
        True
    """
    if max_share < 1.0:
        raise ValueError(f"max_share must be >= 1, got {max_share}")
    counts = counts.to(torch.float64)
    present = counts > 0
    mass = weights.to(torch.float64) * counts
    mass = mass / mass.sum()
    cap = max_share / int(present.sum())
    for _ in range(int(present.sum())):
        over = mass > cap * (1 + 1e-12)
        if not bool(over.any()):
            break
        excess = float((mass[over] - cap).sum())
        mass = torch.where(over, torch.full_like(mass, cap), mass)
        free = present & (mass < cap)
        mass = mass + torch.where(free, mass / mass[free].sum() * excess, 0.0)
    per_sample = torch.where(present, mass / counts.clamp_min(1.0), torch.zeros_like(mass))
    return (per_sample / per_sample.sum()).to(weights.dtype)


def weighted_nll(log_prob: Tensor, weights: Tensor) -> Tensor:
    """Weighted negative log-likelihood ``-sum_x w(y) log p(x) / sum_x w(y)`` (Eq. 7,
    normalised by the batch's total weight so that its scale does not depend on the batch
    size or on its class mix).

    Args:
        log_prob: (N,) log-likelihoods.
        weights: (N,) non-negative sample weights.

    Example:
        >>> weighted_nll(torch.tensor([-1.0, -3.0]), torch.tensor([1.0, 3.0]))
        tensor(2.5000)
    """
    return -(weights * log_prob).sum() / weights.sum().clamp_min(1e-12)


def balancedness_loss(p: Tensor) -> Tensor:
    """``KL(p || uniform) = sum_k p_k log p_k + log K`` (Eq. 9 plus the constant log K,
    supplement Sec. 2.1), >= 0 and 0 iff p is uniform.

    Args:
        p: (K,) cluster distribution (sums to one).

    Example:
        >>> float(balancedness_loss(torch.full((4,), 0.25)))
        0.0
    """
    return torch.xlogy(p, p).sum() + math.log(p.shape[-1])


class MomentumEstimator:
    """Bias-corrected exponential moving average of the batch cluster posterior.

    ``p_t = eta p_{t-1} + (1 - eta) p_hat_t``, ``p_0 = 0``, returned as
    ``p_t / (1 - eta^t)`` (paper, Sec. 3.3; supplement Sec. 2.2: unbiased, lower
    variance). The gradient flows through the current batch's ``p_hat_t`` only.

    Args:
        eta: decay in [0, 1).

    Example:
        >>> est = MomentumEstimator(0.7)
        >>> est.update(torch.tensor([0.2, 0.8]))
        tensor([0.2000, 0.8000])
    """

    def __init__(self, eta: float) -> None:
        if not 0.0 <= eta < 1.0:
            raise ValueError(f"eta must be in [0, 1), got {eta}")
        self.eta = eta
        self.steps = 0
        self.value: Tensor | None = None

    def update(self, p_hat: Tensor) -> Tensor:
        """Fold in this batch's posterior mean (K,) and return the corrected estimate (K,)."""
        previous = torch.zeros_like(p_hat) if self.value is None else self.value
        current = self.eta * previous + (1.0 - self.eta) * p_hat
        self.value = current.detach()
        self.steps += 1
        return current / (1.0 - self.eta**self.steps)


def purity_loss(log_post_i: Tensor, log_post_j: Tensor, *, detach_i: bool = True) -> Tensor:
    """``mean over pairs of sum_k P(k | x_i) log P(k | x_j)`` (Eq. 10), to be minimised:
    it pushes the cluster posteriors of samples of different classes apart.

    Args:
        log_post_i: (P, K) log-posteriors of the first samples of the pairs.
        log_post_j: (P, K) log-posteriors of the second samples.
        detach_i: stop the gradient through ``P(k | x_i)`` (as the original release).

    Example:
        >>> lp = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(float(purity_loss(lp, lp)), 4)
        -0.6931
    """
    p_i = log_post_i.exp()
    if detach_i:
        p_i = p_i.detach()
    return (p_i * log_post_j).sum(dim=-1).mean()


def balanced_softmax_loss(
    logits: Tensor, target: Tensor, counts: Tensor, reduction: str = "mean"
) -> Tensor:
    """Balanced Softmax: cross-entropy on ``logits + log n_j`` (training only).

    Args:
        logits: (N, C) scores.
        target: (N,) class indices.
        counts: (C,) training samples per class; classes with 0 samples get a tiny prior.
        reduction: "mean", "sum" or "none".

    Example:
        >>> logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        >>> equal = balanced_softmax_loss(logits, target, torch.ones(3))
        >>> torch.allclose(equal, F.cross_entropy(logits, target))
        True
    """
    log_prior = torch.log(counts.to(logits.dtype).clamp_min(1e-8))
    return F.cross_entropy(logits + log_prior, target, reduction=reduction)
