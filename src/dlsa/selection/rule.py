"""The selection rule: candidates listed simplest first are scored by their
class-balanced accuracy on the same out-of-fold predictions, and a departure from the
first (the reference) must win clearly to be chosen.

A candidate other than the reference is *eligible* when its paired gain over the
reference is larger than ``margin`` standard errors and larger than ``min_gain``, and it
does not lose accuracy on the rarer half of the classes. No eligible candidate: the
reference is kept. Otherwise the chosen one is the simplest eligible candidate that the
best eligible one does not clearly beat; ties go to the simpler option.

The paired gain and its standard error: :mod:`dlsa.selection.paired`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from dlsa.config import DropRuleName, to_dict
from dlsa.selection.multiplicity import (
    gain_covariance,
    max_t_threshold,
    nested_gain_correlation,
)
from dlsa.selection.paired import balanced_accuracy, paired_gain, rarer_half
from dlsa.selection.shift import head_shift, rarer_classes

if TYPE_CHECKING:
    from dlsa.cascade import Cascade


@dataclass
class Candidate:
    """One model of a selection round and its out-of-fold predictions.

    Attributes:
        name: readable name, e.g. ``"tau-norm (tau=1.25)"``.
        params: estimator parameters that differ from the configuration.
        pred: (N,) out-of-fold predicted class index of every training sample.
        stage: (N,) out-of-fold stage of every sample (DLSA candidates), else None.
        models: the fitted fold cascades (shared by the variants of one training).
        seen: (N,) True for the samples predicted so far, when the candidate was dropped
            before its last fold (:mod:`dlsa.selection.folds`); None: every sample.
        nll: (N,) out-of-fold negative log-likelihood of each sample's class (NaN where
            the fold model did not know the class, or the sample was not predicted),
            recorded for a base that tunes on log-loss
            (:attr:`~dlsa.stage2.bases.BaseMethod.tunes_on_log_loss`); None otherwise.
    """

    name: str
    params: dict[str, Any]
    pred: np.ndarray
    stage: np.ndarray | None = None
    models: list[Cascade] | None = None
    seen: np.ndarray | None = None
    nll: np.ndarray | None = None

    def rows(self, n: int) -> np.ndarray:
        """(N,) mask of the samples this candidate predicted (of N)."""
        return np.ones(n, dtype=bool) if self.seen is None else self.seen


def describe(params: dict[str, Any]) -> str:
    """Readable name of a candidate, e.g. ``"tau-norm (tau=1.25) + DLSA (depth 1, 30%)"``."""
    extra = params.get("base_params") or {}
    text = params["base"]
    if extra:
        text += " (" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in extra.items()) + ")"  # fmt: skip
    if params.get("depth", 0):
        share = params["routed_share"]
        text += f" + DLSA (depth {params['depth']}, {100 * share:.0f}% routed)"
    return text


def choose(
    candidates: Sequence[Candidate],
    y: np.ndarray,
    n_classes: int,
    *,
    margin: float,
    min_gain: float,
    multiplicity: str = "per-candidate",
    counts: np.ndarray | None = None,
    prior_guard: float | None = None,
    floor: bool = False,
) -> tuple[int, str, list[dict[str, Any]]]:
    """Apply the rule of this module to candidates listed simplest first.

    A candidate other than the first (the reference) is *eligible* when it beats the
    reference clearly (paired gain > ``margin`` standard errors and > ``min_gain``) and
    does not lose accuracy on the rarer half of the classes. The chosen candidate is the
    reference if no candidate is eligible; otherwise the simplest eligible candidate
    that the best eligible one does not clearly beat.

    With ``multiplicity="max-t"`` the bar against the reference is at least the max-t
    threshold of all the departures (:func:`~dlsa.selection.multiplicity.max_t_threshold`),
    so that the chance of a departure by luck does not grow with their number.
    ``counts`` (C,): training counts that define the rarer half when ``y`` is a
    validation set (see :func:`rarer_half`). ``prior_guard``: a departure whose
    predictions flow to the more frequent half of the classes by more than this many
    standard errors is not eligible (:mod:`dlsa.selection.shift`; None: no guard).
    ``floor``: standard errors with the per-class floor of :func:`paired_gain` (the
    selection sets it on a validation split).

    The tail condition guards against a bias of out-of-fold estimates on training
    features: a backbone fitted the training images of rare classes more closely than it
    will fit their test images, so held-out training features overrate classifiers that
    trade tail accuracy for head accuracy.

    Returns:
        The chosen index, the reason in words, and one evidence row per candidate
        (``name``, ``params``, ``balanced_accuracy``, ``gain`` and ``se`` against the
        first candidate, ``tail_gain`` and ``tail_se`` on the rarer half of the classes,
        ``se_plain`` and ``tail_se_plain`` without the per-class floor (what the drop
        rule uses), ``eligible``, ``chosen``).

    Example:
        >>> y = np.repeat([0, 1], 50)
        >>> ref = Candidate("ref", {}, y.copy())
        >>> noisy = y.copy(); noisy[:1] = 1
        >>> choose([ref, Candidate("b", {}, noisy)], y, 2, margin=2.0, min_gain=0.0)[0]
        0
    """
    tail = rarer_half(y, n_classes, counts)
    ref = candidates[0].pred
    bar = family_margin(candidates, y, n_classes, margin, multiplicity)
    rarer = rarer_classes(np.bincount(y, minlength=n_classes) if counts is None else counts)
    rows = [
        _evidence_row(i, cand, ref, y, n_classes, tail, rarer, bar, min_gain, prior_guard, floor)
        for i, cand in enumerate(candidates)
    ]
    chosen, reason = _decide(candidates, rows, y, n_classes, bar, margin, min_gain, floor)
    rows[chosen]["chosen"] = True
    return chosen, reason, rows


def _evidence_row(
    i: int,
    cand: Candidate,
    ref: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    tail: np.ndarray,
    rarer: np.ndarray,
    bar: float,
    min_gain: float,
    prior_guard: float | None,
    floor: bool,
) -> dict[str, Any]:
    """:func:`choose`'s evidence row of candidate ``i`` against the reference's
    predictions ``ref`` (N,) for labels ``y`` (N,), on the samples it predicted: its
    score, gain and rarer-half gain (``tail``: the mask (N,) of :func:`rarer_half`) with
    their standard errors, the prior guard's counts (``rarer``: the classes (C,) of the
    rarer half) and whether it is eligible (the reference always is) at the bar of ``bar``
    standard errors and ``min_gain``."""
    seen = cand.rows(len(y))
    score = balanced_accuracy(cand.pred[seen], y[seen], n_classes)
    gain, se = paired_gain(cand.pred[seen], ref[seen], y[seen], n_classes, floor=floor)
    part = seen & tail
    tail_gain, tail_se = paired_gain(cand.pred[part], ref[part], y[part], n_classes, floor=floor)
    plain = [
        paired_gain(cand.pred[m], ref[m], y[m], n_classes, floor=False)[1] for m in (seen, part)
    ]
    if i == 0:  # the reference against itself: no gain, no uncertainty
        se = tail_se = 0.0
    clear = gain > max(bar * se, min_gain)
    shift = head_shift(cand.pred[seen], ref[seen], rarer)
    guarded = prior_guard is not None and shift["shift_z"] > prior_guard
    return {
        "name": cand.name,
        "params": jsonable(cand.params),
        "balanced_accuracy": score,
        "gain": gain,
        "se": se,
        "tail_gain": tail_gain,
        "tail_se": tail_se,
        "se_plain": plain[0],
        "tail_se_plain": plain[1],
        "eligible": i == 0 or (cand.seen is None and clear and tail_gain >= 0.0 and not guarded),
        **shift,
        "prior_guard": bool(guarded),
        "chosen": False,
        "margin": bar,
        "n_scored": int(seen.sum()),
        "dropped": cand.seen is not None,
    }


def _decide(
    candidates: Sequence[Candidate],
    rows: list[dict[str, Any]],
    y: np.ndarray,
    n_classes: int,
    bar: float,
    margin: float,
    min_gain: float,
    floor: bool,
) -> tuple[int, str]:
    """:func:`choose`'s choice from the evidence ``rows`` (one per candidate): the index
    and the reason. The best eligible candidate (the simplest of equal scores; dropped
    ones score -inf): the reference when the best is the reference, else the simplest
    eligible departure the best does not clearly beat (:func:`_simplest_close`)."""
    scores = [row["balanced_accuracy"] if not row["dropped"] else -np.inf for row in rows]
    eligible = [i for i, row in enumerate(rows) if row["eligible"]]
    best = max(eligible, key=lambda i: (scores[i], -i))  # the simplest of equal scores
    if best == 0:
        return 0, _kept_reason(rows, int(np.argmax(scores)), bar)
    return _simplest_close(candidates, eligible, best, y, n_classes, margin, min_gain, floor)


def _kept_reason(rows: list[dict[str, Any]], top: int, bar: float) -> str:
    """Why the reference is kept: it scores best, or ``rows[top]`` (the best score) is
    not eligible (its gain, standard error and rarer-half gain, against the bar of ``bar``
    standard errors)."""
    if top == 0:
        return "the reference has the best balanced accuracy"
    t = rows[top]
    return (
        f"no departure beats the reference by {bar:.2f} standard errors without "
        f"losing on the rarer half of the classes (best: {t['name']}, "
        f"{100 * t['gain']:+.2f} ± {100 * t['se']:.2f} points, rarer half "
        f"{100 * t['tail_gain']:+.2f}); the reference is kept"
    )


def _simplest_close(
    candidates: Sequence[Candidate],
    eligible: list[int],
    best: int,
    y: np.ndarray,
    n_classes: int,
    margin: float,
    min_gain: float,
    floor: bool,
) -> tuple[int, str]:
    """The chosen index and reason when ``best`` (> 0) is the best eligible departure:
    the first eligible departure simpler than it that it does not beat by more than
    ``margin`` standard errors and ``min_gain`` (all samples), else ``best``."""
    for i in eligible:
        if i >= best:
            break
        gain, se = paired_gain(
            candidates[best].pred, candidates[i].pred, y, n_classes, floor=floor
        )
        if i > 0 and gain <= max(margin * se, min_gain):
            return i, (
                f"{candidates[best].name} scores {100 * gain:+.2f} ± {100 * se:.2f} points "
                f"over it, not above {margin:g} standard errors and "
                f"{100 * min_gain:.2f} points; the simpler option is kept"
            )
    return best, "the best balanced accuracy of the eligible departures"


def family_margin(
    candidates: Sequence[Candidate], y: np.ndarray, n_classes: int, margin: float, rule: str
) -> float:
    """Standard errors a departure from the reference (the first candidate) must clear:
    ``margin``, or with ``rule="max-t"`` at least the max-t threshold of all the
    departures' gains, dropped ones included (their correlations estimated on the
    samples they predicted: :func:`~dlsa.selection.multiplicity.nested_gain_correlation`)."""
    assert rule in ("per-candidate", "max-t"), rule  # selection.multiplicity, checked up front
    if rule == "per-candidate" or len(candidates) < 2:
        return margin
    preds = np.stack([c.pred for c in candidates[1:]])
    if all(c.seen is None for c in candidates):
        _, cov = gain_covariance(preds, candidates[0].pred, y, n_classes)
    else:
        seen = np.stack([c.rows(len(y)) for c in candidates[1:]])
        cov = nested_gain_correlation(preds, seen, candidates[0].pred, y, n_classes)
    return max(margin, max_t_threshold(cov))


@dataclass(frozen=True)
class DropRule:
    """When a candidate is dropped between folds (``selection.drop_behind`` and
    ``selection.drop_rule``).

    ``"behind"``: its gain is below ``-z`` standard errors on the samples seen so far.
    ``"futile"``: it cannot become eligible any more: even the ``z``-standard-error upper
    bound of its predicted final gain is below the bar. With a share ``r`` of the samples
    still unseen, a gain ``g`` of standard error ``s`` so far and a flat prior on the true
    gain, the final gain is ``(1 - r) g + r g_rest`` with ``g_rest ~ N(g, s^2 / r)``, so its
    upper bound is ``g + z s sqrt(r)``; the bar is ``max(margin * s * sqrt(1 - r),
    min_gain)`` (the final standard error is about ``s sqrt(1 - r)``; ``margin`` is the
    smallest bar, max-t only raises it) for the gain and 0 for the gain on the rarer
    half. After fold 1 of 3 (``r = 2/3``, z = margin = 2) that drops a gain below -0.48
    standard errors, or a rarer-half gain below -1.63; after fold 2, below +0.48 and -1.15.
    """

    z: float = 2.0
    rule: DropRuleName = "futile"
    margin: float = 2.0
    min_gain: float = 0.0

    def __post_init__(self) -> None:
        # selection.drop_rule is checked with the estimator's parameters, before any fit
        assert self.rule in get_args(DropRuleName), f"unknown drop rule {self.rule!r}"

    def drops(self, gain: float, se: float, unseen: float, *, tail: bool) -> bool:
        """Whether a gain (or rarer-half gain, ``tail``) of standard error ``se``, with a
        share ``unseen`` of the samples still to predict, drops the candidate.

        Example:
            >>> rule = DropRule(z=2.0, rule="futile", margin=2.0)
            >>> rule.drops(-0.01, 0.02, 2 / 3, tail=False)
            True
            >>> rule.drops(0.0, 0.02, 2 / 3, tail=False)
            False
        """
        if not se > 0:
            return False
        if self.rule == "behind":
            return gain < -self.z * se
        upper = gain + self.z * se * np.sqrt(unseen)
        bar = 0.0 if tail else max(self.margin * se * np.sqrt(1.0 - unseen), self.min_gain)
        return bool(upper < bar)


def ruled_out(
    cands: Sequence[Candidate],
    ref: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    rule: DropRule,
    counts: np.ndarray | None = None,
) -> bool:
    """Whether every candidate (of one training) is to be dropped by ``rule`` on the
    samples it has predicted so far: by its paired gain over the reference, or by its
    gain on the rarer half of the classes (:class:`DropRule`).

    Args:
        cands: candidates whose ``seen`` marks the samples predicted so far.
        ref: (N,) the reference's predictions (every sample).
        y: (N,) labels.
        n_classes: C.
        rule: the drop rule.
        counts: (C,) training counts that define the rarer half (see :func:`rarer_half`).

    Example:
        >>> y = np.repeat([0, 1], 50)
        >>> bad = y.copy(); bad[:20] = 1
        >>> ruled_out([Candidate("b", {}, bad)], y, y, 2, DropRule(rule="behind"))
        True
    """
    tail = rarer_half(y, n_classes, counts)

    def dropped(cand: Candidate) -> bool:
        seen = cand.rows(len(y))
        unseen = 1.0 - seen.mean()
        for part, is_tail in ((seen, False), (seen & tail, True)):
            gain, se = paired_gain(cand.pred[part], ref[part], y[part], n_classes, floor=False)
            if rule.drops(gain, se, unseen, tail=is_tail):
                return True
        return False

    return all(dropped(c) for c in cands)


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Candidate parameters as JSON-ready data (configs as dicts)."""
    return {
        k: to_dict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
        for k, v in params.items()
    }
