"""Class-balanced L2 logistic regression with a tuned regularisation strength (``logreg``).

The linear head is fitted full batch by L-BFGS to the convex objective

``(1/N) sum_i w_i l_i + ||W||^2 / (2 C N)``,

``l_i`` the cross-entropy of sample i, on standardised inputs. ``objective="weighted"`` uses
scikit-learn's ``class_weight="balanced"`` weights ``w_i = N / (K n_{y_i})`` (K classes
with samples), so the data term is the mean over classes of each class's mean loss;
``objective="balsoftmax"`` uses unit weights and the Balanced Softmax loss (cross-entropy of
``logits + log n_j``). Biases are not penalised. With this scaling ``C`` means what it
means in :class:`sklearn.linear_model.LogisticRegression` (penalty ``||W||^2 / 2``
against ``C`` times the summed weighted loss).

``C`` is chosen much as :class:`sklearn.linear_model.LogisticRegressionCV` chooses it
(which averages per-fold scores where this pools the held-out predictions): the
grid ``cs`` is fitted from the strongest regularisation to the weakest, each fit
starting from the previous solution, on ``inner_folds`` stratified folds of the stage's
data; the ``C`` of the best pooled held-out balanced accuracy (ties: the stronger
regularisation) is then fitted on all the data. Model selection instead fits the path
once per fold (``inner_folds=0``), keeps every solution in the head and scores each
``C`` as a post-hoc variant (:meth:`BalancedLogisticRegression.posthoc`), so that ``C``
is chosen on the selection's held-out evidence like every other choice.

Not in the DLSA paper: the fixed weight decay of the other heads cannot give a class of
five samples the regularisation it needs (issue 29: scikit-learn's tuned peer beat the
default by up to 2.6 points).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.config import HeadConfig
from dlsa.config.domains import COUNT, POSITIVE, Domain, check_value
from dlsa.engine import rng
from dlsa.engine.rows import SCORE_CHUNK
from dlsa.engine.splits import stratified_folds
from dlsa.errors import TrainingDivergedError
from dlsa.stage2.bases._base import BaseMethod, StageData, balanced_accuracy, balanced_mean
from dlsa.stage2.classifiers import LinearHead, StageClassifier
from dlsa.stage2.losses import balanced_softmax_loss

C_GRID = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
"""Default grid of ``C`` (the issue's scikit-learn peer searches the same values)."""
C_DOMAIN = Domain(1e-30, 1e30)
"""Values of ``C`` a fit can use: ``C`` and the penalty's ``1 / C`` are float32 numbers
(the head keeps ``C`` in float32 buffers, and the penalty multiplies float32 weights)."""


class PathHead(LinearHead):
    """Linear head (N, D) -> (N, C) that also keeps the solutions of a regularisation
    path, so that a post-hoc ``C`` can be chosen after one fit.

    Buffers: ``path_c`` (P,), ``path_weight`` (P, C, D), ``path_bias`` (P, C); P = 0
    when no path is kept. ``c`` () holds the regularisation strength of the current
    weights (0 until fitted).

    Example:
        >>> head = PathHead(4, 3, n_path=2)
        >>> head.path_weight.shape, head(torch.randn(5, 4)).shape
        (torch.Size([2, 3, 4]), torch.Size([5, 3]))
    """

    path_c: Tensor
    path_weight: Tensor
    path_bias: Tensor
    c: Tensor

    def __init__(self, in_features: int, n_classes: int, *, n_path: int = 0) -> None:
        super().__init__(in_features, n_classes)
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()
        self.register_buffer("path_c", torch.zeros(n_path))
        self.register_buffer("path_weight", torch.zeros(n_path, n_classes, in_features))
        self.register_buffer("path_bias", torch.zeros(n_path, n_classes))
        self.register_buffer("c", torch.zeros(()))

    def drop_path(self) -> None:
        """Keep no path (P = 0), only the current weights."""
        for name in ("path_c", "path_weight", "path_bias"):
            buffer = getattr(self, name)
            setattr(self, name, buffer.new_zeros((0, *buffer.shape[1:])))

    @torch.no_grad()
    def use(self, c: float) -> None:
        """Set the weights to the path's solution at ``c``.

        Raises:
            ValueError: if the path holds no solution at ``c``.
        """
        hit = torch.isclose(self.path_c, torch.tensor(float(c), device=self.path_c.device))
        if not bool(hit.any()):
            raise ValueError(f"logreg: the fitted path holds no solution at C={c}")
        i = int(hit.nonzero()[0, 0])
        self.weight.copy_(self.path_weight[i])
        self.bias.copy_(self.path_bias[i])
        self.c.fill_(float(c))


@dataclass(frozen=True)
class BalancedLogisticRegression(BaseMethod):
    """Full-batch, class-balanced, L2-regularised logistic regression; ``C`` chosen on
    held-out folds (see the module doc)."""

    name: ClassVar[str] = "logreg"
    posthoc_params: ClassVar[tuple[str, ...]] = ("c",)

    c: float | None = None
    """Inverse regularisation strength (scikit-learn's ``C``); None chooses it from
    ``cs`` on ``inner_folds`` folds."""
    cs: tuple[float, ...] = C_GRID
    """Grid of ``C`` searched when ``c`` is None, and the warm-start path to ``c``."""
    inner_folds: int = 3
    """Stratified folds that choose ``C`` when ``c`` is None; 0 keeps the whole path's
    solutions in the head instead (model selection scores each ``C`` post hoc)."""
    objective: Literal["weighted", "balsoftmax"] = "weighted"
    """Data term: class-weighted cross-entropy (scikit-learn's ``class_weight=
    "balanced"``) or the Balanced Softmax loss (:meth:`loss`)."""
    criterion: Literal["accuracy", "log-loss"] = "accuracy"
    """What chooses ``C`` on held-out rows: the pooled balanced accuracy, or the
    balanced log-loss (the mean over classes of each class's mean negative
    log-likelihood of its rows; smooth in ``C``, so the choice is stable across seeds:
    :class:`~dlsa.stage2.bases.tuned_balsoftmax.TunedBalancedSoftmax`). Model selection
    scores a log-loss method's ``C`` the same way on its own evidence
    (:func:`dlsa.selection.candidates.tuned_variant`)."""
    max_iter: int = 50
    """L-BFGS iterations per value of ``C``."""
    tol: float = 1e-4
    """L-BFGS stops when the largest gradient entry of the objective is below this."""

    def __post_init__(self) -> None:
        """Refuse a value of another type or out of its range (``cs`` may be any
        sequence; it is kept as a tuple)."""
        if self.c is not None:
            check_value("logreg: c", self.c, C_DOMAIN)
        if isinstance(self.cs, list | tuple):
            object.__setattr__(self, "cs", tuple(self.cs))
        if not isinstance(self.cs, tuple) or not self.cs or None in self.cs:
            raise ValueError(f"logreg: cs must be a non-empty list of numbers, got {self.cs!r}")
        check_value("logreg: cs", self.cs, C_DOMAIN)
        if not _is_int(self.inner_folds) or self.inner_folds == 1 or self.inner_folds < 0:
            raise ValueError(
                f"logreg: inner_folds must be 0 or an int >= 2, got {self.inner_folds!r}"
            )
        if self.objective not in ("weighted", "balsoftmax"):
            raise ValueError(
                f"logreg: objective must be 'weighted' or 'balsoftmax', got {self.objective!r}"
            )
        if self.criterion not in ("accuracy", "log-loss"):
            raise ValueError(
                f"logreg: criterion must be 'accuracy' or 'log-loss', got {self.criterion!r}"
            )
        if not _is_int(self.max_iter) or self.max_iter not in COUNT:
            raise ValueError(f"logreg: max_iter must be an int {COUNT}, got {self.max_iter!r}")
        check_value("logreg: tol", self.tol, POSITIVE)

    @property
    def search_folds(self) -> int:
        """Stratified folds a fit draws from its stage's data to choose ``C``."""
        return self.inner_folds if self.c is None else 0

    @property
    def keeps_path(self) -> bool:
        """Whether a fit keeps every solution of the path (model selection's mode)."""
        return self.c is None and self.inner_folds == 0

    @property
    def tunes_on_log_loss(self) -> bool:
        """Whether ``C`` is chosen by held-out log-loss (:attr:`criterion`)."""
        return self.criterion == "log-loss"

    def path(self, c: float | None = None) -> list[float]:
        """The values of ``C`` fitted in order, strongest regularisation first: the grid
        up to ``c`` (default: this method's) and ``c`` itself, or the whole grid when
        there is no ``c``."""
        c = self.c if c is None else c
        grid = sorted(set(self.cs))
        return grid if c is None else [v for v in grid if v < c] + [c]

    def build_head(self, n_inputs: int, n_classes: int) -> nn.Module:
        """A :class:`PathHead` (zero weights), holding the path in model selection."""
        return PathHead(n_inputs, n_classes, n_path=len(self.path()) if self.keeps_path else 0)

    def served_by(self, trained: BaseMethod) -> bool:
        """Also a path fit (``inner_folds=0``) with the same grid and solver serves every
        ``c`` of its grid: the solution at ``c`` is the one a fit at ``c`` reaches (the
        same warm-started path, up to ``c``)."""
        if super().served_by(trained):
            return True
        if not isinstance(trained, BalancedLogisticRegression) or not trained.keeps_path:
            return False
        solver = ("cs", "objective", "max_iter", "tol")  # not the criterion: no part of a fit
        same = all(getattr(trained, k) == getattr(self, k) for k in solver)
        return same and self.c is not None and self.c in trained.cs

    def posthoc(self, model: StageClassifier) -> None:
        """Set the weights of a model fitted with ``inner_folds=0`` to its solution at
        this method's ``c`` (nothing to do for other fits); a method that keeps no path
        drops it, so that the model is the one it would have fitted."""
        head = model.head
        if self.c is not None and isinstance(head, PathHead) and head.path_c.numel():
            head.use(self.c)
            if not self.keeps_path:
                head.drop_path()

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
        """Standardise the inputs (always: the grid of ``C`` assumes unit-scale inputs),
        choose ``C`` if needed, then fit the path to it on all the data."""
        head = model.head
        assert isinstance(head, PathHead)
        model.fit_standardization(data.inputs)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        initial = [p.detach().clone() for p in params]
        c = self.c
        if c is None and self.inner_folds >= 2:
            c = self._choose_c(model, params, initial, data, generator, desc)
        _restore(params, initial)
        path = self.path(c)
        for i, value in enumerate(path):
            self._minimise(model, params, data, value, desc)
            if self.keeps_path:
                with torch.no_grad():
                    head.path_c[i] = value
                    head.path_weight[i].copy_(head.weight)
                    head.path_bias[i].copy_(head.bias)
        with torch.no_grad():
            head.c.fill_(path[-1])
        model.eval()

    def _choose_c(
        self,
        model: StageClassifier,
        params: list[nn.Parameter],
        initial: list[Tensor],
        data: StageData,
        generator: torch.Generator,
        desc: str,
    ) -> float:
        """The ``C`` of the grid with the best pooled held-out score on stratified folds
        of ``data`` (:attr:`criterion`; ties: the smaller ``C``)."""
        target = data.target
        seed = rng.seed_from(generator)
        folds = stratified_folds(target.cpu().numpy(), self.inner_folds, seed=seed)
        grid = self.path()
        # per C and row: the predicted class (accuracy) or the true class's NLL (log-loss)
        held_out = torch.zeros((len(grid), target.numel()), dtype=torch.float64)
        for held in folds:
            held_t = torch.as_tensor(held, device=target.device)
            keep = torch.ones(target.numel(), dtype=torch.bool, device=target.device)
            keep[held_t] = False
            train, test = data.subset(keep.nonzero()[:, 0]), data.subset(held_t)
            _restore(params, initial)
            for j, value in enumerate(grid):
                self._minimise(model, params, train, value, f"{desc} (C search)")
                with torch.no_grad():
                    logits = test.logits(model)
                    if self.criterion == "log-loss":  # rows of a class the fold lacks: NaN
                        rows = F.cross_entropy(logits, test.target, reduction="none")
                        seen = torch.bincount(train.target, minlength=logits.shape[1]) > 0
                        rows = rows.masked_fill(~seen[test.target], float("nan"))
                    else:
                        rows = logits.argmax(1)
                    held_out[j, torch.as_tensor(held)] = rows.cpu().to(torch.float64)
        truth = target.cpu()
        if self.criterion == "log-loss":
            known = ~held_out[0].isnan()  # the same rows for every C
            scores = [-balanced_mean(row[known], truth[known]) for row in held_out]
        else:
            scores = [balanced_accuracy(row.long(), truth) for row in held_out]
        return grid[int(np.argmax(scores))]

    def _minimise(
        self, model: StageClassifier, params: list[nn.Parameter], data: StageData, c: float,
        desc: str,
    ) -> None:  # fmt: skip
        """Minimise the objective at ``C = c`` by L-BFGS, from the current parameters."""
        n = data.target.numel()
        objective = self._objective(model, params, data, 1.0 / (c * max(n, 1)))
        opt = torch.optim.LBFGS(
            params, lr=1.0, max_iter=self.max_iter, history_size=10,
            tolerance_grad=self.tol, tolerance_change=1e-9, line_search_fn="strong_wolfe",
        )  # fmt: skip
        loss = opt.step(objective)
        if not all(torch.isfinite(p).all() for p in params) or not np.isfinite(float(loss)):
            raise TrainingDivergedError(f"{desc}: the logreg objective became non-finite")

    def loss(self, logits: Tensor, target: Tensor, counts: Tensor) -> Tensor:
        """The data term of logits (B, C) for targets (B,): the mean of
        ``w_{y_i} l_i`` with ``w_c = N / (K n_c)`` for class counts ``n`` (C,) of N rows
        and K classes with samples ("weighted"), or the Balanced Softmax loss.

        Example:
            >>> m = BalancedLogisticRegression()
            >>> logits, target = torch.zeros(3, 2), torch.tensor([0, 0, 1])
            >>> round(float(m.loss(logits, target, torch.tensor([2, 1]))), 4)  # log 2
            0.6931
        """
        if self.objective == "balsoftmax":
            return balanced_softmax_loss(logits, target, counts)
        counts = counts.to(logits.dtype)
        weight = counts.sum() / ((counts > 0).sum() * counts.clamp_min(1.0))
        return (F.cross_entropy(logits, target, reduction="none") * weight[target]).mean()

    def _objective(
        self, model: StageClassifier, params: list[nn.Parameter], data: StageData, lam: float
    ) -> Callable[[], Tensor]:
        """The L-BFGS closure: objective and gradients over all rows, in chunks."""
        target, n = data.target, data.target.numel()
        counts = data.counts.to(device=target.device)
        if self.objective == "weighted":  # the weights of the rows at hand
            counts = torch.bincount(target, minlength=model.n_classes)
        penalised = [p for p in params if p.dim() >= 2]
        chunks = torch.split(torch.arange(n, device=target.device), SCORE_CHUNK)

        def closure() -> Tensor:
            for p in params:
                p.grad = None
            total = torch.zeros((), device=target.device)
            for idx in chunks:
                batch = data.batch(idx)
                logits = model(batch.inputs, batch.prior)
                part = self.loss(logits, batch.target, counts) * (idx.numel() / n)
                part.backward()
                total = total + part.detach()
            penalty = 0.5 * lam * sum((p * p).sum() for p in penalised)
            penalty.backward()
            return total + penalty.detach()

        return closure


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _restore(params: Sequence[nn.Parameter], values: Sequence[Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
