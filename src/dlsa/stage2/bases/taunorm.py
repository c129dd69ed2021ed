"""tau-normalised classifier (``tau-norm``).

References:
    Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020, Sec. 4 ("tau-normalized classifier"). https://arxiv.org/abs/1910.09217
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.engine import rng
from dlsa.engine.splits import stratified_split
from dlsa.stage2.bases._base import BaseMethod, StageData, balanced_accuracy
from dlsa.stage2.classifiers import StageClassifier

TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))
"""Values of tau searched when ``tau=None``: 0, 0.1, ..., 2.0 (Kang et al.'s release)."""
FALLBACK_TAU = 1.0
"""tau used when the validation split is empty (a stage too small to hold samples out)."""


def tau_normalized_weight(weight: Tensor, tau: float | Tensor) -> Tensor:
    """``w_c / ||w_c||^tau`` for class vectors (C, D).

    Example:
        >>> w = torch.tensor([[3.0, 4.0]])
        >>> tau_normalized_weight(w, 1.0)
        tensor([[0.6000, 0.8000]])
    """
    return weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau)


class TauNormHead(nn.Module):
    """Bias-free linear head whose class vectors are divided by ``||w_c||^tau``.

    ``logits = x @ (w_c / ||w_c||^tau)^T``. The buffer ``tau`` is 0 while training (the
    plain linear classifier) and is set once training is done, so it is saved with the
    weights.

    Example:
        >>> head = TauNormHead(4, 3)
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(head(x), x @ head.weight.T)
        True
    """

    tau: Tensor

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes, bias=False)
        self.register_buffer("tau", torch.zeros(()))

    @property
    def weight(self) -> Tensor:
        """The raw class vectors (C, D)."""
        return self.linear.weight

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, D) to tau-normalised logits (N, C)."""
        return x @ tau_normalized_weight(self.weight, self.tau).T


def mean_class_accuracy(logits: Tensor, target: Tensor) -> float:
    """Mean over the classes present in ``target`` (N,) of the accuracy of logits (N, C)."""
    return balanced_accuracy(logits.argmax(dim=1), target)


def split_stage(
    data: StageData, fraction: float, generator: torch.Generator
) -> tuple[StageData, StageData]:
    """Stratified (fit, validation) split of a stage's data; the fit part gets its own
    class counts. At least one sample of every class stays in the fit part."""
    seed = rng.seed_from(generator, 2**31 - 1)
    fit_idx, val_idx = stratified_split(data.target.cpu().numpy(), fraction, seed=seed)
    device = data.target.device
    fit = data.subset(torch.from_numpy(fit_idx).to(device))
    counts = torch.bincount(fit.target, minlength=data.counts.numel()).to(data.counts)
    fit = StageData(fit.inputs, fit.target, counts, fit.prior)
    return fit, data.subset(torch.from_numpy(val_idx.astype(np.int64)).to(device))


@dataclass(frozen=True)
class TauNorm(BaseMethod):
    """Train a bias-free linear head with cross-entropy on uniform batches, then divide
    each class vector by ``||w_c||^tau`` at inference.

    With ``tau=None`` tau is chosen on a stratified validation split held out of the
    stage's training data (``val_fraction`` of each class, at least one sample of each
    class kept for fitting): a head is trained on the rest, and the tau of
    :data:`TAU_GRID` with the best mean per-class accuracy on the held-out samples wins
    (the smallest on ties); then the head is trained again on all the stage's data and
    keeps that tau. Kang et al. select tau on a validation set as well; their release
    sweeps the same grid. The chosen tau lives in the head's ``tau`` buffer.

    The bias is dropped as in Kang et al. (a bias is not normalised), so ``tau=0`` is the
    plain classifier. The cluster-prior branch of a cluster-aided classifier is added
    unchanged.
    """

    name: ClassVar[str] = "tau-norm"
    posthoc_params: ClassVar[tuple[str, ...]] = ("tau",)

    tau: float | None = 1.0
    """Normalisation exponent (Kang et al.: 1 is the plain L2 normalisation); None
    selects it on a validation split of the stage's training data."""
    val_fraction: float = 0.2
    """Share of each class held out to select tau when ``tau=None`` (not in the paper)."""

    def __post_init__(self) -> None:
        if self.tau is not None and not self.tau >= 0:
            raise ValueError(f"tau-norm: tau must be >= 0 or None, got {self.tau}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"tau-norm: val_fraction must be in (0, 1), got {self.val_fraction}")

    def posthoc(self, model: StageClassifier) -> None:
        """Store this method's tau in the head of a trained model (training does not
        depend on tau; with ``tau=None`` nothing changes)."""
        if self.tau is not None and isinstance(model.head, TauNormHead):
            model.head.tau.fill_(self.tau)

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`TauNormHead` (tau 0 until trained)."""
        return TauNormHead(n_inputs, n_classes)

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
        """Train the head (tau 0), pick tau if needed, store it in the head."""
        head = model.head
        assert isinstance(head, TauNormHead)
        tau = self.tau
        if tau is None:
            tau = self._select_tau(model, data, config, generator, progress, desc)
        head.tau.zero_()
        super().fit(model, data, config, generator, progress=progress, desc=desc)
        head.tau.fill_(tau)

    def _select_tau(
        self,
        model: StageClassifier,
        data: StageData,
        config: HeadConfig,
        generator: torch.Generator,
        progress: bool,
        desc: str,
    ) -> float:
        fit, val = split_stage(data, self.val_fraction, generator)
        if val.target.numel() == 0:
            return FALLBACK_TAU
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        super().fit(model, fit, config, generator, progress=progress, desc=f"{desc} (tau)")
        head = model.head
        assert isinstance(head, TauNormHead)
        scores = []
        with torch.no_grad():
            for tau in TAU_GRID:
                head.tau.fill_(tau)
                scores.append(mean_class_accuracy(val.logits(model), val.target))
        model.load_state_dict(initial)
        return TAU_GRID[int(np.argmax(scores))]
