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

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.engine.rng import randperm, seeded
from dlsa.engine.rows import SCORE_CHUNK, Rows, gather, take
from dlsa.engine.sampling import class_balanced_order
from dlsa.engine.training import OptimSettings, TrainHistory, train_epochs
from dlsa.errors import TrainingDivergedError
from dlsa.stage2.classifiers import LinearHead, Prior, StageClassifier

T = TypeVar("T")

__all__ = [
    "BaseMethod",
    "StageData",
    "balanced_accuracy",
    "balanced_mean",
    "class_balanced_order",
    "frozen",
    "run_phase",
    "seeded",
    "shared_phases",
]

_SHARED: ContextVar[dict[bytes, tuple[list[Tensor], Tensor, TrainHistory]] | None] = ContextVar(
    "dlsa_shared_phases", default=None
)


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
        prior = self.prior
        if prior is not None:
            prior = take(prior, index) if torch.is_tensor(prior) else prior[index]
        return StageData(gather(self.inputs, index), take(self.target, index), self.counts, prior)

    def logits(self, model: nn.Module, size: int = SCORE_CHUNK) -> Tensor:
        """``model(inputs, prior)`` (N, C) of every row, ``size`` rows at a time."""
        index = torch.arange(self.target.numel(), device=self.target.device)
        parts = [model(b.inputs, b.prior) for b in map(self.batch, torch.split(index, size))]
        return torch.cat(parts)


@contextmanager
def shared_phases() -> Iterator[None]:
    """Inside the block, a plain cross-entropy phase (:attr:`BaseMethod.plain_phase`)
    that repeats one already run in the block (same initial parameters, input
    statistics, data, settings and generator state) is not trained again: the first
    run's parameters, generator state and history are copied. The model selection fits
    ``ce``, ``logit-adjust``, ``lws`` and ``m2m`` of one fold in one block: their first
    phase is one training (tested bit for bit against training each)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _phase_key(
    params: list[nn.Parameter],
    model: StageClassifier,
    data: StageData,
    settings: OptimSettings,
    generator: torch.Generator,
) -> bytes | None:
    """A digest of everything a plain phase's result depends on, or None when the phase
    is not shareable (a cluster prior, a residual offset, inputs in host memory)."""
    if (
        data.prior is not None
        or model.offset_model is not None
        or not torch.is_tensor(data.inputs)
    ):
        return None
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=32)
    digest.update(generator.get_state().numpy().tobytes())
    tensors = [data.inputs, data.target, data.counts, model.input_mean, model.input_std, *params]
    for t in tensors:
        t = t.detach()
        digest.update(repr((tuple(t.shape), t.dtype, t.device.type)).encode())
        digest.update(t.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def run_phase(
    parameters: Iterable[nn.Parameter],
    step_loss: Callable[[Tensor], Tensor],
    epoch_order: Callable[[], Tensor],
    settings: OptimSettings,
    *,
    method: str,
    progress: bool = False,
    desc: str = "classifier",
    shared: tuple[StageClassifier, StageData, torch.Generator] | None = None,
) -> TrainHistory:
    """One training phase of a base method: :func:`~dlsa.engine.training.train_epochs` that
    raises instead of returning a diverged run. ``shared`` = (model, data, generator)
    of a plain cross-entropy phase makes it reusable inside :func:`shared_phases`.

    Raises:
        TrainingDivergedError: if the loss became non-finite.
    """
    params = list(parameters)
    cache, key = _SHARED.get(), None
    if shared is not None and cache is not None:
        key = _phase_key(params, *shared[:2], settings, shared[2])
        if key is not None and key in cache:
            values, state, history = cache[key]
            with torch.no_grad():
                for p, v in zip(params, values, strict=True):
                    p.copy_(v)
            shared[2].set_state(state)
            return copy.deepcopy(history)
    history = train_epochs(params, step_loss, epoch_order, settings, progress=progress, desc=desc)
    if history.diverged_epoch is not None:
        raise TrainingDivergedError(
            f"{desc}: the {method} loss became non-finite in epoch "
            f"{history.diverged_epoch}; lower the head learning rate (--head.lr), or "
            "standardize features of a very large scale"
        )
    if cache is not None and key is not None:
        values = [p.detach().clone() for p in params]
        cache[key] = (values, shared[2].get_state(), copy.deepcopy(history))  # type: ignore[index]
    return history


def balanced_accuracy(pred: Tensor, target: Tensor) -> float:
    """Mean over the classes present in ``target`` (N,) of the recall of the predicted
    classes ``pred`` (N,) (float64 sums; both on one device).

    Example:
        >>> balanced_accuracy(torch.tensor([0, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
        0.75
    """
    return balanced_mean((pred == target).to(torch.float64), target)


def balanced_mean(values: Tensor, target: Tensor) -> float:
    """Mean over the classes present in ``target`` (N,) of each class's mean of
    ``values`` (N,) (float64 sums; both on one device): with per-row losses, the
    class-balanced loss.

    Example:
        >>> balanced_mean(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 0, 1]))
        6.0
    """
    classes, inverse = torch.unique(target, return_inverse=True)
    sums = torch.zeros(classes.numel(), dtype=torch.float64, device=target.device)
    sums.index_add_(0, inverse, values.to(torch.float64))
    sizes = torch.bincount(inverse, minlength=classes.numel()).to(torch.float64)
    return float((sums / sizes).mean())


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
    (:mod:`dlsa.cascade.deployment_prior`)."""
    plain_head: ClassVar[bool] = False
    """Set True by a method whose head computes, in :meth:`train` (its first phase), the
    same logits from the same initial weights as ``ce``'s linear head (``ce``,
    ``logit-adjust``, ``lws``, ``m2m``; tested bit for bit). With the loss, batch order
    and settings of this class it makes :attr:`plain_phase`."""

    @property
    def plain_phase(self) -> bool:
        """Whether :meth:`train` is ``ce``'s training (plain cross-entropy on uniform
        batches of the same linear head): such phases are trained once inside
        :func:`shared_phases`."""
        cls = type(self)
        same = all(
            getattr(cls, name) is getattr(BaseMethod, name)
            for name in ("loss", "batch_loss", "epoch_order", "settings", "train")
        )
        return self.plain_head and same

    posthoc_params: ClassVar[tuple[str, ...]] = ()
    """Hyper-parameters that act only after training: a model trained with one value
    serves every value (:meth:`posthoc` applies it), which model selection exploits."""

    @property
    def search_folds(self) -> int:
        """Stratified folds a fit of this method draws from its stage's data to choose a
        hyper-parameter (0: none), its ``inner_folds`` parameter; the training data must
        have a class with as many samples."""
        return 0

    @property
    def tunes_on_log_loss(self) -> bool:
        """Whether the method chooses a hyper-parameter by held-out log-loss; model
        selection then records its out-of-fold log-losses and chooses it the same way
        (:func:`dlsa.selection.candidates.tuned_variant`)."""
        return False

    def served_by(self, trained: BaseMethod) -> bool:
        """Whether a model that ``trained`` fitted is, after :meth:`posthoc`, the model
        this method would fit (same data and seed): the same method with the same
        hyper-parameters but the post-hoc ones."""

        def fixed(method: BaseMethod) -> dict[str, object]:
            items = dataclasses.asdict(method).items()
            return {k: v for k, v in items if k not in self.posthoc_params}

        return type(trained) is type(self) and fixed(trained) == fixed(self)

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
        parameters: Iterable[nn.Parameter] | None = None,
        progress: bool = False,
        desc: str = "classifier",
    ) -> TrainHistory:
        """Train ``parameters`` (default: every parameter of ``model``) with
        :meth:`batch_loss` on :meth:`epoch_order` (one phase)."""
        return run_phase(
            model.parameters() if parameters is None else parameters,
            lambda idx: self.batch_loss(model, data.batch(idx)),
            lambda: self.epoch_order(data.target, data.counts, generator),
            self.settings(config),
            method=self.name,
            progress=progress,
            desc=desc,
            shared=(model, data, generator) if self.plain_phase else None,
        )

    def train_balanced(
        self,
        parameters: Iterable[nn.Parameter],
        step_loss: Callable[[Tensor], Tensor],
        data: StageData,
        settings: OptimSettings,
        generator: torch.Generator,
        *,
        progress: bool = False,
        desc: str = "classifier",
    ) -> TrainHistory:
        """A later phase of a multi-phase method: ``step_loss`` of batches of
        class-balanced epochs of the stage's samples (``lws``'s scales, ``ride``'s router,
        ``m2m``'s f)."""
        return run_phase(
            parameters,
            step_loss,
            lambda: class_balanced_order(data.target, data.target.numel(), generator),
            settings,
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
