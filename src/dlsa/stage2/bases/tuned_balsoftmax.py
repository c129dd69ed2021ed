"""Balanced Softmax fitted to convergence with a tuned L2 strength (``balsoftmax-tuned``):
the default's reference.

The linear head minimises ``(1/N) sum_i l_i + ||W||^2 / (2 C N)`` full batch by L-BFGS
on standardised inputs, ``l_i`` the Balanced Softmax loss (cross-entropy of
``logits + log n_j``; plain logits at prediction), the solver of
:class:`~dlsa.stage2.bases.logreg.BalancedLogisticRegression`. ``C`` is chosen on
held-out rows by the balanced log-loss (the mean over classes of each class's mean
negative log-likelihood), from 0.001 to 10 along one warm-started path: alone on 3 inner
folds; in model selection on the selection's own folds or validation split
(:func:`dlsa.selection.candidates.tuned_variant`), one path fit per fold.

Not in the DLSA paper. Why (issue 29, docs/selection.md): the Balanced Softmax head of
the other bases trains by SGD with one fixed weight decay (5e-4), which gives a class of
five samples too little regularisation, or too much for a well separated set; a tuned
strength gains up to 7 points over it (fm-digits 72.1 -> 79.5) and was level with it or
above on every panel set.
Log-loss rather than accuracy chooses ``C`` because it is smooth in ``C``: on the
shared case fa20 balanced accuracy chose C between 0.01 and 0.3 across six fold draws
(test 85.95-86.90), log-loss chose 0.3 on 6 of 6 (``benchmarks.studies.c_criterion``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlsa.stage2.bases.logreg import BalancedLogisticRegression

TUNED_GRID = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Grid of ``C``: the scikit-learn peer's, and 3 and 10 for sets that need little
regularisation (fm-digits and fmd-tail chose 3-10)."""


@dataclass(frozen=True)
class TunedBalancedSoftmax(BalancedLogisticRegression):
    """Balanced Softmax by full-batch L-BFGS, ``C`` chosen by held-out balanced
    log-loss (see the module doc)."""

    name: ClassVar[str] = "balsoftmax-tuned"

    cs: tuple[float, ...] = TUNED_GRID
    """Grid of ``C`` searched when ``c`` is None, and the warm-start path to ``c``."""
    objective: Literal["weighted", "balsoftmax"] = "balsoftmax"
    """Data term: the Balanced Softmax loss."""
    criterion: Literal["accuracy", "log-loss"] = "log-loss"
    """What chooses ``C`` on held-out rows: the balanced log-loss."""
