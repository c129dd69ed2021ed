"""The interface shared by every stage-2 base method.

A base method builds a :class:`~dlsa.stage2.classifiers.StageClassifier` and trains it on frozen
inputs. The cascade uses the same method for its cluster-aided classifiers (inputs
``[x, z]`` plus the cluster prior) and for its regular classifier (inputs ``x``), so a
method never needs to know whether it runs inside DLSA.

To add a method: subclass :class:`BaseMethod` as a frozen dataclass whose fields are its
hyper-parameters (with the original paper's defaults), set ``name``, override what
differs (``build_head``, ``loss``, ``batch_loss``, ``epoch_order``, ``fit`` or
``logits``), and list it in ``dlsa.stage2.bases.BASES``. Everything the method learns must live
in the classifier module, so that saving the module's tensors saves the method.

Multi-phase methods (``tau-norm``, ``lws``, ``m2m``, ``ride``) run each phase through
:func:`run_phase`, and draw class-balanced epochs with
:func:`~dlsa.engine.sampling.class_balanced_order` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.engine.rng import randperm, seeded
from dlsa.engine.rows import SCORE_CHUNK, Rows, gather
from dlsa.engine.sampling import class_balanced_order
from dlsa.engine.training import OptimSettings, TrainHistory, train_epochs
from dlsa.errors import TrainingDivergedError
from dlsa.stage2.classifiers import LinearHead, Prior, StageClassifier

T = TypeVar("T")

__all__ = [
    "BaseMethod",
    "StageData",
    "class_balanced_order",
    "frozen",
    "run_phase",
    "seeded",
]


@dataclass(frozen=True)
class StageData:
    """Training data of one stage classifier.

    Attributes:
        inputs: (N, D_in) float inputs (``x``, or ``[x, z]`` for a cluster-aided stage),
            a tensor or :class:`~dlsa.engine.rows.HostRows`.
        target: (N,) int64 class indices in ``0 .. C-1``.
        counts: (C,) training samples per class *of this stage* (zeros allowed).
        prior: (N, C) cluster prior of each sample (a tensor or a compact
            :class:`~dlsa.stage2.classifiers.ClusterPrior`), or None for a regular classifier.
    """

    inputs: Rows
    target: Tensor
    counts: Tensor
    prior: Prior | None = None

    def subset(self, index: Tensor) -> StageData:
        """The rows ``index`` (B,), with the same ``counts``; inputs in host memory
        stay there."""
        prior = None if self.prior is None else self.prior[index]
        return StageData(self.inputs[index], self.target[index], self.counts, prior)

    def batch(self, index: Tensor) -> StageData:
        """The minibatch of rows ``index`` (B,), its inputs (B, D_in) a tensor on the
        device (copied there when they live in host memory)."""
        prior = None if self.prior is None else self.prior[index]
        return StageData(gather(self.inputs, index), self.target[index], self.counts, prior)

    def logits(self, model: nn.Module, size: int = SCORE_CHUNK) -> Tensor:
        """``model(inputs, prior)`` (N, C) of every row, ``size`` rows at a time."""
        index = torch.arange(self.target.numel(), device=self.target.device)
        parts = [model(b.inputs, b.prior) for b in map(self.batch, torch.split(index, size))]
        return torch.cat(parts)


def run_phase(
    parameters: Iterable[nn.Parameter],
    step_loss: Callable[[Tensor], Tensor],
    epoch_order: Callable[[], Tensor],
    settings: OptimSettings,
    *,
    method: str,
    progress: bool = False,
    desc: str = "classifier",
) -> TrainHistory:
    """One training phase of a base method: :func:`~dlsa.engine.training.train_epochs` that
    raises instead of returning a diverged run.

    Raises:
        TrainingDivergedError: if the loss became non-finite.
    """
    history = train_epochs(
        parameters, step_loss, epoch_order, settings, progress=progress, desc=desc
    )
    if history.diverged_epoch is not None:
        raise TrainingDivergedError(
            f"{desc}: the {method} loss became non-finite in epoch "
            f"{history.diverged_epoch}; lower the head learning rate (--head.lr), or "
            "standardize features of a very large scale"
        )
    return history


@contextmanager
def frozen(parameters: Iterable[nn.Parameter]) -> Iterator[None]:
    """Turn off ``requires_grad`` of ``parameters`` inside the block, then restore it.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> with frozen(layer.parameters()):
        ...     layer.weight.requires_grad
        False
        >>> layer.weight.requires_grad
        True
    """
    params = list(parameters)
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


@dataclass(frozen=True)
class BaseMethod:
    """Plain softmax cross-entropy with a linear head and uniform sampling (``ce``).

    Subclasses change one piece at a time; see the module docstring.
    """

    name: ClassVar[str] = "ce"
    balanced: ClassVar[bool] = True
    """Whether the logits are trained for a balanced test set (they estimate the
    posterior under the uniform prior); plain cross-entropy's carry the training prior
    (:mod:`dlsa.cascade.test_prior`)."""
    posthoc_params: ClassVar[tuple[str, ...]] = ()
    """Hyper-parameters that act only after training: a model trained with one value
    serves every value (:meth:`posthoc` applies it), which model selection exploits."""

    def posthoc(self, model: StageClassifier) -> None:
        """Apply this method's post-hoc hyper-parameters to a model trained by any
        instance of the method (default: nothing to apply)."""

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """The head mapping standardised inputs (N, D_in) to logits (N, C)."""
        return LinearHead(n_inputs, n_classes)

    def build_twin(self, n_inputs: int, n_classes: int) -> nn.Module:
        """The second head of a classifier built the original release's way
        (``classifier_layout="release"``): a linear map (N, D_in) -> (N, C)."""
        return LinearHead(n_inputs, n_classes)

    def build(
        self,
        n_inputs: int,
        n_classes: int,
        *,
        use_prior: bool,
        generator: torch.Generator,
        twin: bool = False,
    ) -> StageClassifier:
        """A freshly initialised stage classifier (weights drawn from ``generator``);
        with ``twin``, the release's two summed maps (:class:`StageClassifier`)."""

        def make() -> StageClassifier:
            head = self.build_head(n_inputs, n_classes)
            second = None
            if twin:
                second = self.build_twin(n_inputs + n_classes * use_prior, n_classes)
            return StageClassifier(head, n_inputs, n_classes, use_prior=use_prior, twin=second)

        return seeded(make, generator)

    def loss(self, logits: Tensor, target: Tensor, counts: Tensor) -> Tensor:
        """Training loss of logits (B, C) for targets (B,); ``counts`` (C,) of the stage."""
        return F.cross_entropy(logits, target)

    def batch_loss(self, model: StageClassifier, batch: StageData) -> Tensor:
        """Loss of one minibatch; override when the loss needs more than the logits."""
        return self.loss(model(batch.inputs, batch.prior), batch.target, batch.counts)

    def epoch_order(self, target: Tensor, counts: Tensor, generator: torch.Generator) -> Tensor:
        """Sample order of one epoch (N,): a uniform random permutation."""
        return randperm(target.numel(), generator, target.device)

    def settings(self, config: HeadConfig) -> OptimSettings:
        """SGD settings of the main training phase (learning-rate schedule from
        ``config.schedule``)."""
        return OptimSettings.of(config)

    def train(
        self,
        model: StageClassifier,
        data: StageData,
        config: HeadConfig,
        generator: torch.Generator,
        *,
        progress: bool = False,
        desc: str = "classifier",
    ) -> TrainHistory:
        """Train every parameter of ``model`` with :meth:`batch_loss` (one phase)."""
        return run_phase(
            model.parameters(),
            lambda idx: self.batch_loss(model, data.batch(idx)),
            lambda: self.epoch_order(data.target, data.counts, generator),
            self.settings(config),
            method=self.name,
            progress=progress,
            desc=desc,
        )

    def prepare(self, model: StageClassifier, data: StageData, config: HeadConfig) -> None:
        """Store the input statistics (if ``config.standardize``) and enter train mode;
        every ``fit`` starts with this."""
        if config.standardize:
            model.fit_standardization(data.inputs)
        model.train()

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
        """Standardise the inputs, then train; multi-phase methods override this."""
        self.prepare(model, data, config)
        self.train(model, data, config, generator, progress=progress, desc=desc)
        model.eval()

    def logits(self, model: StageClassifier, inputs: Tensor, prior: Prior | None) -> Tensor:
        """Inference logits (N, C); post-hoc methods adjust them here."""
        return model(inputs, prior)
