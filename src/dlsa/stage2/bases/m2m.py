"""Major-to-minor translation (``m2m``), on frozen features.

References:
    Kim, Jeong & Shin, "M2m: Imbalanced Classification via Major-to-minor Translation",
    CVPR 2020. https://arxiv.org/abs/2004.00431
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dlsa.config import HeadConfig
from dlsa.engine import rng
from dlsa.engine.precision import at_least_float32
from dlsa.stage2.bases._base import BaseMethod, StageData
from dlsa.stage2.classifiers import LinearHead, Prior, StageClassifier

logger = logging.getLogger(__name__)


def _stage_logits(model: StageClassifier, s: Tensor, prior: Prior | None) -> Tensor:
    """Logits (N, C) of already standardised inputs s (N, D_in)."""
    return at_least_float32(model.head(s) + model.side_logits(s, prior))


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return rng.rand(n, generator, like.device, dtype=torch.float64)


def acceptance_probability(
    counts: Tensor, seed_class: Tensor, target: Tensor, beta: float
) -> Tensor:
    """``1 - beta^((N_k0 - N_k)^+)`` (S, B) for targets k (S,) and candidate seeds of
    classes k0 (B,): only seeds of larger classes can be translated, the more likely the
    larger their class is (Kim et al., Sec. 3.2).

    Example:
        >>> p = acceptance_probability(torch.tensor([100.0, 10.0]), torch.tensor([0, 1]),
        ...                            torch.tensor([1]), 0.9)
        >>> p.round(decimals=3).tolist()
        [[1.0, 0.0]]
    """
    gap = (counts[seed_class][None, :] - counts[target][:, None]).clamp_min(0.0)
    return 1.0 - torch.pow(torch.as_tensor(beta, dtype=gap.dtype), gap)


def translate(
    g: StageClassifier,
    f: StageClassifier,
    seeds: Tensor,
    prior: Prior | None,
    seed_class: Tensor,
    target: Tensor,
    *,
    lam: float,
    step: float,
    n_steps: int,
    radius: float,
    generator: torch.Generator,
) -> Tensor:
    """Translate standardised seeds (S, D) towards classes ``target`` (S,).

    Solves ``min_x L(g; x, k) + lam * f_{k0}(x)`` from ``x = x0 + noise`` with
    ``n_steps`` steps of L2-normalised gradient descent of length ``step``: the loss
    makes the frozen classifier g see class k, the second term keeps the classifier f
    being trained from seeing the seed's class k0 in the result (Kim et al., Eq. 3). The
    random start is uniform noise with its L2 norm capped at ``radius``, as in the
    original release.

    Args:
        g: frozen classifier of the imbalanced data.
        f: classifier being trained.
        seeds: (S, D) standardised inputs of the seeds x0.
        prior: (S, C) cluster prior given to g and f, or None.
        seed_class: (S,) k0.
        target: (S,) k.
        lam: weight of the f term.
        step: L2 length of each step.
        n_steps: T.
        radius: L2 radius of the random start.
        generator: source of the random start.

    Returns:
        (S, D) translated inputs (no graph).
    """
    noise = rng.rand(tuple(seeds.shape), generator, seeds.device, dtype=torch.float64) - 0.5
    noise = noise.to(seeds)
    norm = noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x = seeds + noise * (radius / norm).clamp_max(1.0)
    linear = _LinearGradient.of(g, f, x, seed_class, target, lam)
    for _ in range(n_steps):
        if linear is not None:
            grad = linear(x, prior)
        else:
            x = x.detach().requires_grad_(True)
            loss = F.cross_entropy(_stage_logits(g, x, prior), target)
            loss = loss + lam * _stage_logits(f, x, prior).gather(1, seed_class[:, None]).mean()
            (grad,) = torch.autograd.grad(loss, [x])
        x = x - step * grad / (grad.norm(dim=1, keepdim=True) + 1e-10)
    return x.detach()


@dataclass(frozen=True)
class _LinearGradient:
    """The gradient (S, D) of ``CE(g(x), k) + lam * mean f_{k0}(x)`` with respect to x
    (S, D) for linear heads, without autograd: ``dCE/dlogits @ W_g + (lam / S) W_f[k0]``.

    Every operation is the one autograd runs (the log-softmax backward kernel included),
    so the result is bit for bit the autograd gradient (tested). It skips f's forward
    pass and the graph, and computes the f term, which does not depend on x, once.
    """

    g: StageClassifier
    nll: Tensor
    """(S, C) gradient of the mean negative log-likelihood w.r.t. log-probabilities."""
    f_term: Tensor
    """(S, D) gradient of the f term."""

    @classmethod
    def of(
        cls,
        g: StageClassifier,
        f: StageClassifier,
        x: Tensor,
        seed_class: Tensor,
        target: Tensor,
        lam: float,
    ) -> _LinearGradient | None:
        """The closed form for these classifiers, or None when a head is not linear in
        its (float32 / float64) inputs up to terms that do not depend on them (cluster
        prior branch, offset)."""
        linear = all(type(m.head) is LinearHead and m.twin is None for m in (g, f))
        if not (linear and x.dtype in (torch.float32, torch.float64)):
            return None
        if g.head.weight.dtype != x.dtype or f.head.weight.dtype != x.dtype:
            return None
        n, n_classes = x.shape[0], g.n_classes
        one = torch.ones((), dtype=x.dtype, device=x.device)
        with torch.no_grad():
            zeros = torch.zeros(n, n_classes, dtype=x.dtype, device=x.device)
            nll = zeros.scatter(1, target[:, None], (-(one / n)).expand(n, 1))
            d_f = zeros.scatter(1, seed_class[:, None], (one * lam / n).expand(n, 1))
            return cls(g, nll, d_f.mm(f.head.weight))

    @torch.no_grad()
    def __call__(self, x: Tensor, prior: Prior | None) -> Tensor:
        """The gradient (S, D) at x (S, D)."""
        out = torch.log_softmax(_stage_logits(self.g, x, prior), dim=1)
        d_logits = torch.ops.aten._log_softmax_backward_data(self.nll, out, 1, out.dtype)
        return d_logits.mm(self.g.head.weight) + self.f_term


@dataclass(frozen=True)
class MajorToMinor(BaseMethod):
    """M2M on frozen features: translate samples of frequent classes into rare ones.

    1. Train a linear classifier g with cross-entropy on the imbalanced stage data.
    2. Train the final classifier f, warm-started from g (the original trains f with
       plain ERM until its deferred re-balancing epoch, the same training as g's), on
       class-balanced draws (the original's over-sampled loader). In every batch, a
       sample of class k is kept with probability ``N_k / N_max``; otherwise its slot
       asks for a generated sample of class k: a seed x0 of class k0 is drawn from the
       batch with probability proportional to ``1 - beta^((N_k0 - N_k)^+)``, translated
       by :func:`translate`, and accepted iff ``P_g(k | x*) >= gamma`` and a coin of
       probability ``1 - beta^((N_k0 - N_k)^+)`` comes up heads. A rejected slot keeps its
       real (over-sampled) sample of class k. f minimises cross-entropy on the mixed
       batch.

    Translation runs in the classifier's input space: the standardised stage inputs
    (``[x, z]`` in a cluster-aided classifier). Step lengths are given per standardised
    coordinate, i.e. the L2 step is ``step_size * sqrt(D_in)``. A generated sample keeps
    the cluster prior of the real sample whose slot it takes. Generated features live in
    one batch only; only f is kept.

    The release's ``beta = 0.999`` was set for CIFAR-10-LT (5,000 samples in the largest
    class): the coin is 1/2 only for a source class about 700 samples larger than the
    target. On smaller sets most slots keep their real sample and M2M comes close to
    class-balanced over-sampling of a warm-started head; ``fit`` logs the share of slots
    filled by a translation. Lower ``beta`` (e.g. 0.99) for small sets.

    Differences from the original on images: the f term and the translation act on
    features; g and f are linear; phase 2 uses the head's full schedule
    (``HeadConfig``) instead of the last 20% of epochs at a 100x smaller learning rate.
    """

    name: ClassVar[str] = "m2m"
    plain_head: ClassVar[bool] = True

    beta: float = 0.999
    """Seed-class selection / rejection parameter (Kim et al.; release README: 0.999)."""
    lam: float = 0.5
    """Weight of the f_{k0} regulariser of the translation (release README: 0.5)."""
    gamma: float = 0.9
    """Minimum confidence P_g(k | x*) of an accepted translation (release README: 0.9)."""
    step_size: float = 0.1
    """Length of one translation step per standardised coordinate (release: 0.1 per
    image, L2-normalised step)."""
    n_steps: int = 10
    """Translation steps T (release README: 10)."""
    random_start: float = 0.5
    """L2 radius of the random start per standardised coordinate (release: 0.5)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"m2m: beta must be in [0, 1), got {self.beta}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"m2m: gamma must be in [0, 1], got {self.gamma}")
        if self.lam < 0 or self.step_size < 0 or self.random_start < 0:
            raise ValueError("m2m: lam, step_size and random_start must be >= 0")
        if self.n_steps < 0:
            raise ValueError(f"m2m: n_steps must be >= 0, got {self.n_steps}")

    def generate(
        self,
        g: StageClassifier,
        f: StageClassifier,
        s: Tensor,
        prior: Prior | None,
        target: Tensor,
        counts: Tensor,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """Replace part of a class-balanced batch by translated samples.

        Args:
            g: frozen classifier of phase 1.
            f: classifier being trained.
            s: (B, D) standardised inputs of the batch.
            prior: (B, C) cluster prior, or None.
            target: (B,) classes of the batch (unchanged by generation).
            counts: (C,) training samples per class of the stage.
            generator: source of randomness.

        Returns:
            ``(inputs, accepted)``: the (B, D) batch with accepted translations in place,
            and the (B,) mask of the slots that received one.
        """
        accepted = torch.zeros_like(target, dtype=torch.bool)
        counts = counts.to(s.dtype)
        keep = counts[target] / counts.max()
        slots = torch.nonzero(_uniform(target.numel(), generator, s) >= keep).flatten()
        p_seed = acceptance_probability(counts, target, target[slots], self.beta)
        valid = p_seed.sum(dim=1) > 0
        slots, p_seed = slots[valid], p_seed[valid]
        if slots.numel() == 0:
            return s, accepted
        pick = rng.multinomial(p_seed, 1, generator).flatten()
        p_accept = p_seed.gather(1, pick[:, None]).flatten()
        slot_prior = None if prior is None else prior[slots]
        k = target[slots]
        x = translate(
            g,
            f,
            s[pick],
            slot_prior,
            target[pick],
            k,
            lam=self.lam,
            step=self.step_size * math.sqrt(s.shape[1]),
            n_steps=self.n_steps,
            radius=self.random_start * math.sqrt(s.shape[1]),
            generator=generator,
        )
        with torch.no_grad():
            confidence = torch.softmax(_stage_logits(g, x, slot_prior), dim=1)
            confidence = confidence.gather(1, k[:, None]).flatten()
        coin = _uniform(slots.numel(), generator, s) < p_accept
        ok = (confidence >= self.gamma) & coin
        out = s.clone()
        out[slots[ok]] = x[ok]
        accepted[slots[ok]] = True
        return out, accepted

    def fit(
        self,
        model: StageClassifier,
        data: StageData,
        config: HeadConfig,
        generator: torch.Generator,
        *,
        progress: bool = False,
        desc: str = "classifier",
    ) -> None:
        """Train g, then f with generated minority samples; ``model`` ends up as f."""
        self.prepare(model, data, config)
        self.train(model, data, config, generator, progress=progress, desc=f"{desc} (g)")
        g = copy.deepcopy(model).eval().requires_grad_(False)

        n_max = data.counts.max()
        # accepted translations, draws of non-largest classes: summed here, read at the end
        tally = torch.zeros(2, dtype=torch.long, device=data.target.device)

        def step_loss(idx: Tensor) -> Tensor:
            batch = data.batch(idx)
            prior, target = batch.prior, batch.target
            with torch.no_grad():
                s_batch = model.standardize(batch.inputs)
            s, accepted = self.generate(g, model, s_batch, prior, target, data.counts, generator)
            tally[0] += accepted.sum()
            tally[1] += (data.counts[target] < n_max).sum()
            return F.cross_entropy(_stage_logits(model, s, prior), target)

        self.train_balanced(
            model.parameters(), step_loss, data, self.settings(config), generator,
            progress=progress, desc=f"{desc} (f)",
        )  # fmt: skip
        logger.info(
            "%s: m2m put %d translated samples in %d draws of non-largest classes",
            desc,
            int(tally[0]),
            int(tally[1]),
        )
        model.eval()
