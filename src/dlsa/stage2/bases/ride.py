"""RIDE: routing diverse distribution-aware experts (``ride``), on frozen features.

References:
    Wang et al., "Long-tailed Recognition by Routing Diverse Distribution-Aware Experts",
    ICLR 2021. https://arxiv.org/abs/2010.01809
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.engine.precision import at_least_float32
from dlsa.engine.training import OptimSettings
from dlsa.stage2.bases._base import BaseMethod, StageData, frozen
from dlsa.stage2.classifiers import CosineHead, LinearHead, Prior, StageClassifier
from dlsa.stage2.losses import balanced_softmax_loss

ROUTER_HIDDEN = 16
"""Width of the router's hidden layer on the features (RIDE release: 16)."""


class ExpertRouter(nn.Module):
    """RIDE's expert assignment module: decides whether to consult expert ``i + 1``.

    Input: the L2-normalised features through a per-step hidden layer (ReLU), and the
    ``top_k`` largest logits of the mean of the experts consulted so far; output: one
    logit per sample (consult the next expert iff it is > 0). The last layer is shared
    by all steps, as in the release.

    Example:
        >>> router = ExpertRouter(4, 3, n_experts=2, top_k=5)
        >>> router(torch.randn(6, 4), torch.randn(6, 3), 0).shape
        torch.Size([6])
    """

    def __init__(self, in_features: int, n_classes: int, *, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = min(top_k, n_classes)
        self.hidden = nn.ModuleList(
            nn.Linear(in_features, ROUTER_HIDDEN) for _ in range(n_experts - 1)
        )
        self.fc = nn.Linear(ROUTER_HIDDEN + self.top_k, 1)

    def forward(self, s: Tensor, mean_logits: Tensor, step: int) -> Tensor:
        """Help logits (N,) of step ``step`` from inputs (N, D) and mean logits (N, C)."""
        hidden = F.relu(self.hidden[step](F.normalize(s, dim=1)))
        top = mean_logits.topk(self.top_k, dim=1).values
        return at_least_float32(self.fc(torch.cat([top, hidden.to(top.dtype)], dim=1)).flatten())


class RideHead(nn.Module):
    """E experts on shared inputs, plus the optional :class:`ExpertRouter`.

    Each expert is a cosine classifier with a fixed scale ``norm_scale`` (the RIDE
    release's ``NormedLinear``, ``use_norm``), or a plain linear layer when
    ``norm_scale`` is None. ``forward`` returns the mean of the experts' logits (N, C)
    (all experts consulted).

    Example:
        >>> head = RideHead(4, 3, n_experts=2, use_router=True, router_top_k=5)
        >>> head.expert_logits(torch.randn(6, 4)).shape
        torch.Size([2, 6, 3])
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        *,
        n_experts: int,
        use_router: bool,
        router_top_k: int,
        norm_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            LinearHead(in_features, n_classes)
            if norm_scale is None
            else CosineHead(in_features, n_classes, scale=norm_scale, learn_scale=False)
            for _ in range(n_experts)
        )
        self.router = (
            ExpertRouter(in_features, n_classes, n_experts=n_experts, top_k=router_top_k)
            if use_router and n_experts > 1
            else None
        )

    def expert_logits(self, s: Tensor) -> Tensor:
        """Logits (E, N, C) of every expert for inputs (N, D)."""
        return at_least_float32(torch.stack([expert(s) for expert in self.experts]))

    def forward(self, s: Tensor) -> Tensor:
        """Mean logits (N, C) of all experts."""
        return self.expert_logits(s).mean(dim=0)

    @torch.no_grad()
    def zero_output_(self) -> None:
        """Make the mean logits zero while the experts stay different (zeroing them all
        would make them identical for good). Linear experts: subtract the experts' mean
        weights and biases from each. Cosine experts: expert ``E - 1 - i`` gets the
        negated class vectors of expert ``i`` (cos(x, -w) = -cos(x, w)); exact for an even
        number of experts, the middle one of an odd number keeps its logits.
        """
        experts = list(self.experts)
        if all(isinstance(e, CosineHead) for e in experts):
            for i in range(len(experts) // 2):
                experts[-1 - i].weight.copy_(-experts[i].weight)
            return
        for name in ("weight", "bias"):
            params = [getattr(expert, name) for expert in experts]
            mean = torch.stack(params).mean(dim=0)
            for p in params:
                p.sub_(mean)


def diversity_temperature(counts: Tensor, base: float, reweight_factor: float) -> Tensor:
    """Distribution-aware temperature (C,) of RIDE's diversity loss:
    ``base * w_c / max_j w_j``, ``w_c = C pi_c r + 1 - r``, pi the class frequencies and r
    the reweight factor; frequent classes get a higher temperature.

    Example:
        >>> diversity_temperature(torch.tensor([90.0, 10.0]), 1.0, 0.5)
        tensor([1.0000, 0.4286])
    """
    pi = counts.to(torch.float64) / counts.sum()
    w = counts.numel() * pi * reweight_factor + 1.0 - reweight_factor
    return (base * w / w.max()).to(counts.dtype if counts.is_floating_point() else torch.float32)


@dataclass(frozen=True)
class Ride(BaseMethod):
    """RIDE with E experts on the standardised stage inputs.

    Training (all experts at once, uniform batches):
    ``sum_i [ L_bal(logits_i) - lambda T_bar^2 KL(softmax(mean / T) || softmax(logits_i / T))]``,
    where ``logits_i`` are expert i's logits (plus the cluster-prior branch, shared by
    all experts), ``mean`` the experts' mean logits (no gradient), T the
    distribution-aware per-class temperature of :func:`diversity_temperature` and
    ``T_bar`` its mean (RIDE's release). RIDE's per-expert loss is distribution-aware
    (LDAM with deferred re-weighting); on frozen features we use Balanced Softmax, the
    distribution-aware loss of the DLSA paper's own tables, and apply the
    distribution-aware temperature from the first epoch (the release switches it on
    with its deferred re-weighting).

    Then, if ``use_router`` and E > 1, the experts are frozen and the
    :class:`ExpertRouter` is trained on class-balanced draws to predict, at step i,
    whether the first i experts get the sample wrong while a later expert would get it
    right (binary cross-entropy with ``router_pos_weight``). At inference expert 1 is
    always consulted, the next ones while the router says so; the logits are the mean of
    the consulted experts'. Without the router all experts are averaged.

    With ``n_experts=1`` the diversity term is identically 0 and is skipped and there is
    no router; with ``norm_scale=None`` too, the method is exactly ``balsoftmax``.
    """

    name: ClassVar[str] = "ride"

    n_experts: int = 2
    """Number of experts E (DLSA paper, Sec. 4.3: "RIDE with two experts")."""
    diversity_weight: float = 0.02
    """lambda of the diversity loss. The RIDE release uses 0.2 (additional_diversity_factor
    -0.2) for experts that own the last stages of a deep network; with frozen features
    and one layer per expert, 0.2 let the experts buy disagreement with accuracy (each
    expert at 34-62%, the ensemble at 75.6% balanced accuracy against 84.0% for
    Balanced Softmax, validation split of the Fashion-MNIST-LT rho 500 demo train
    features, 3 seeds); 0.02 gave 84.6% there, 0.05 83.8% with one seed at 81.4%."""
    diversity_temperature: float = 1.0
    """Base temperature of the diversity loss (RIDE release: 1.0)."""
    reweight_factor: float = 0.05
    """r of the distribution-aware temperature (RIDE release default 0.05; 0.02 in its
    ImageNet-LT config)."""
    use_router: bool = True
    """Train and use the expert assignment module (RIDE, Sec. 3.3)."""
    norm_scale: float | None = 30.0
    """Experts are cosine classifiers with this fixed scale (RIDE release: ``use_norm``
    with s = 30); None makes them plain linear layers. The diversity term rewards
    experts for disagreeing, which linear experts can do without bound by inflating
    their logits (on Fashion-MNIST-LT features: |logits| > 100 and experts at 34-60%
    balanced accuracy); the normalisation bounds it."""
    router_top_k: int = 5
    """Top logits fed to the router (release default 5; 50 in its ImageNet-LT config)."""
    router_pos_weight: float = 20.0
    """Weight of the positive ("consult the next expert") class in the router's loss
    (release default 20; 100 in its ImageNet-LT config)."""
    router_epochs: int = 5
    """Epochs of router training (RIDE release, expert-assignment configs: 5)."""
    router_lr: float = 0.01
    """Learning rate of router training (RIDE release: 0.01), cosine-annealed or kept
    constant as ``HeadConfig.schedule`` says (the RIDE release anneals it)."""

    def __post_init__(self) -> None:
        if not isinstance(self.n_experts, int) or self.n_experts < 1:
            raise ValueError(f"ride: n_experts must be an int >= 1, got {self.n_experts!r}")
        if not 0.0 <= self.reweight_factor < 1.0:
            raise ValueError(
                f"ride: reweight_factor must be in [0, 1), got {self.reweight_factor}"
            )
        if not self.diversity_temperature > 0:
            raise ValueError(
                f"ride: diversity_temperature must be > 0, got {self.diversity_temperature}"
            )
        if self.norm_scale is not None and not self.norm_scale > 0:
            raise ValueError(f"ride: norm_scale must be > 0 or None, got {self.norm_scale}")
        if self.router_top_k < 1 or self.router_epochs < 0:
            raise ValueError("ride: router_top_k must be >= 1 and router_epochs >= 0")

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`RideHead`."""
        return RideHead(
            n_inputs,
            n_classes,
            n_experts=self.n_experts,
            use_router=self.use_router,
            router_top_k=self.router_top_k,
            norm_scale=self.norm_scale,
        )

    def expert_logits(
        self, model: StageClassifier, inputs: Tensor, prior: Prior | None
    ) -> tuple[Tensor, Tensor]:
        """Standardised inputs (N, D_in) and every expert's logits plus the cluster-prior
        branch (E, N, C)."""
        head = model.head
        assert isinstance(head, RideHead)
        s = model.standardize(inputs)
        return s, head.expert_logits(s) + model.side_logits(s, prior)

    def batch_loss(self, model: StageClassifier, batch: StageData) -> Tensor:
        """Sum over experts of Balanced Softmax minus the weighted diversity KL."""
        _, logits = self.expert_logits(model, batch.inputs, batch.prior)
        loss = balanced_softmax_loss(logits[0], batch.target, batch.counts)
        for i in range(1, logits.shape[0]):
            loss = loss + balanced_softmax_loss(logits[i], batch.target, batch.counts)
        if logits.shape[0] > 1 and self.diversity_weight != 0:
            loss = loss - self.diversity_weight * self.diversity(logits, batch.counts)
        return loss

    def diversity(self, logits: Tensor, counts: Tensor) -> Tensor:
        """``T_bar^2 sum_i KL(softmax(mean / T) || softmax(logits_i / T))`` of expert logits
        (E, N, C), the mean detached; 0 when all experts agree."""
        temp = diversity_temperature(counts, self.diversity_temperature, self.reweight_factor)
        temp = temp.to(logits)
        with torch.no_grad():
            mean = torch.softmax(logits.mean(dim=0) / temp, dim=1)
        kl = torch.stack(
            [
                F.kl_div(F.log_softmax(item / temp, dim=1), mean, reduction="batchmean")
                for item in logits
            ]
        )
        return temp.mean() ** 2 * kl.sum()

    def router_loss(self, model: StageClassifier, batch: StageData) -> Tensor:
        """Mean over routing steps of the router's weighted binary cross-entropy."""
        head = model.head
        assert isinstance(head, RideHead) and head.router is not None
        with torch.no_grad():
            s, logits = self.expert_logits(model, batch.inputs, batch.prior)
            cumulative = logits.cumsum(dim=0)
            correct = cumulative.argmax(dim=2) == batch.target
        pos_weight = logits.new_tensor([self.router_pos_weight])
        losses = []
        for i in range(logits.shape[0] - 1):
            helps = (~correct[i]) & correct[i + 1 :].any(dim=0)
            pred = head.router(s, cumulative[i] / (i + 1), i)
            losses.append(
                F.binary_cross_entropy_with_logits(pred, helps.to(pred), pos_weight=pos_weight)
            )
        return torch.stack(losses).mean()

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
        """Train the experts (and prior branch), then the router with experts frozen."""
        head = model.head
        assert isinstance(head, RideHead)
        self.prepare(model, data, config)
        router = [] if head.router is None else list(head.router.parameters())
        router_ids = {id(p) for p in router}
        experts = [p for p in model.parameters() if id(p) not in router_ids]
        self.train(
            model, data, config, generator, parameters=experts, progress=progress,
            desc=f"{desc} (experts)",
        )  # fmt: skip
        if router and self.router_epochs > 0:
            settings = OptimSettings.of(config, epochs=self.router_epochs, lr=self.router_lr)
            with frozen(experts):
                self.train_balanced(
                    router, lambda idx: self.router_loss(model, data.batch(idx)), data,
                    settings, generator, progress=progress, desc=f"{desc} (router)",
                )  # fmt: skip
        model.eval()

    def logits(self, model: StageClassifier, inputs: Tensor, prior: Prior | None) -> Tensor:
        """Mean logits (N, C) of the experts the router consults for each sample."""
        head = model.head
        assert isinstance(head, RideHead)
        s, logits = self.expert_logits(model, inputs, prior)
        if head.router is None:
            return logits.mean(dim=0)
        total = logits[0].clone()
        used = torch.ones_like(total[:, :1])
        active = torch.ones(total.shape[0], dtype=torch.bool, device=total.device)
        for i in range(1, logits.shape[0]):
            active = active & (head.router(s, total / used, i - 1) > 0)
            total = total + active[:, None].to(total) * logits[i]
            used = used + active[:, None].to(used)
        return total / used
