"""The prior-shift guard: out-of-fold evidence on training features may not teach the
default to give the tail less help than the reference gives it.

A backbone trained on the training images fits the rare classes' images most closely,
so their held-out *training* features are cleaner than their test features will be.
Out-of-fold evidence then rewards any model that moves predictions from the rarer
classes to the frequent ones (a smaller learned class-prior correction: ``lws``,
``logit-adjust`` with tau < 1, class-weighted logistic regression), and the test set
punishes it: on ``cases/fa20`` such choices gained +1.0 out of fold and lost 3 to 5
points few-shot on test. No significance bar removes a bias, so the guard looks at the
direction instead: a departure whose predictions flow to the more frequent half of the
classes, against the reference's, more than ``z`` binomial standard errors is not
eligible (``SelectionConfig.prior_guard``). The flow is counted on the scored rows:
``to_head`` rows the reference puts in a rarer-half class and the candidate in the other
half, ``to_tail`` the reverse; under no systematic shift each discordant row goes
either way with probability 1/2, so ``z = (to_head - to_tail) / sqrt(to_head + to_tail)``.

The guard is off where the evidence is not biased: a validation split, or training
features the backbone never trained on (``SelectionConfig.train_features="unseen"``).
"""

from __future__ import annotations

import numpy as np


def rarer_classes(counts: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Mask (C,) of the rarer half (``ceil(C'/2)``, ties by class index) of the C' classes
    in ``present`` (C,) (default: those with a count), rarer by ``counts`` (C,).

    Example:
        >>> rarer_classes(np.array([50, 5, 0, 9, 100])).tolist()
        [False, True, False, True, False]
    """
    counts = np.asarray(counts)
    present = np.flatnonzero(counts > 0 if present is None else present)
    order = present[np.argsort(counts[present], kind="stable")]
    mask = np.zeros(len(counts), dtype=bool)
    mask[order[: (len(order) + 1) // 2]] = True
    return mask


def head_shift(pred: np.ndarray, ref: np.ndarray, rarer: np.ndarray) -> dict[str, float]:
    """How predictions ``pred`` (N,) move between the rarer half of the classes
    (``rarer`` (C,) mask) and the rest, against the reference's ``ref`` (N,).

    Returns:
        ``to_head`` (rows ``ref`` puts in a rarer class and ``pred`` does not),
        ``to_tail`` (the reverse) and ``shift_z``, the standardised net flow to the head
        (0 when no row moves).

    Example:
        >>> rarer = np.array([False, True])
        >>> head_shift(np.array([0, 0, 0, 1]), np.array([1, 1, 0, 1]), rarer)
        {'to_head': 2, 'to_tail': 0, 'shift_z': 1.414}
    """
    in_ref, in_pred = rarer[ref], rarer[pred]
    to_head = int(np.sum(in_ref & ~in_pred))
    to_tail = int(np.sum(~in_ref & in_pred))
    moved = to_head + to_tail
    z = (to_head - to_tail) / np.sqrt(moved) if moved else 0.0
    return {"to_head": to_head, "to_tail": to_tail, "shift_z": round(float(z), 3)}
