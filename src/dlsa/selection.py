"""Model selection on out-of-fold predictions of the training data.

Every data-driven choice of the default configuration (which base method and which tau,
DLSA on top or not, how deep, which share routed, "no routing") is made here, on the
pooled out-of-fold predictions of ``F`` stratified folds of the training data. The test
set is never seen.

The rule. Candidates are listed simplest first. Each is scored by its class-balanced
accuracy on the out-of-fold predictions (long-tail benchmarks test on balanced sets).
Let ``best`` be the top-scoring candidate; the chosen one is the *simplest* candidate
that ``best`` does not clearly beat, where "clearly" means a paired gain larger than
``margin`` standard errors and larger than ``min_gain``. The reference (the first
candidate) is therefore kept unless a departure wins by more than its uncertainty, and
ties go to the simpler option.

The paired gain of a over b is ``g = (1/C) sum_c mean_{i in c} (hit_a(i) - hit_b(i))``,
the difference of balanced accuracies over the same samples; its standard error treats
the out-of-fold samples of each class as independent draws:
``se^2 = (1/C^2) sum_c var_c(hit_a - hit_b) / n_c``.

Cost. Every base candidate is trained once per fold; ``tau-norm`` and ``logit-adjust``
are trained once per fold and re-scored for every tau (their tau is post hoc). DLSA
candidates of depth 1 that differ only in the routed share reuse one flow filter per fold
(the threshold is a quantile of the same log-likelihoods). The evidence records the
seconds spent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlsa.config import DLSAConfig, SelectionConfig, to_dict
from dlsa.data import stratified_folds

if TYPE_CHECKING:
    from dlsa.cascade import DLSAClassifier

logger = logging.getLogger(__name__)

TAIL_THRESHOLD = 50
"""Classes with this many training samples or fewer are "tail" in the separation
diagnostics (paper, Sec. 1)."""


@dataclass
class Candidate:
    """One model of a selection round and its out-of-fold predictions.

    Attributes:
        name: readable name, e.g. ``"tau-norm (tau=1.25)"``.
        params: estimator parameters that differ from the configuration.
        pred: (N,) out-of-fold predicted class index of every training sample.
        stage: (N,) out-of-fold stage of every sample (DLSA candidates), else None.
        models: the fitted fold models (shared by the variants of one training).
    """

    name: str
    params: dict[str, Any]
    pred: np.ndarray
    stage: np.ndarray | None = None
    models: list[DLSAClassifier] | None = None


def class_hits(pred: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class hit sums (C,) and class sizes (C,) of predictions (N,) for labels (N,)."""
    hits = np.bincount(y, weights=(pred == y).astype(np.float64), minlength=n_classes)
    return hits, np.bincount(y, minlength=n_classes).astype(np.float64)


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """Mean over the classes present in ``y`` (N,) of the accuracy of ``pred`` (N,).

    Example:
        >>> balanced_accuracy(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), 2)
        0.75
    """
    hits, sizes = class_hits(pred, y, n_classes)
    present = sizes > 0
    return float(np.mean(hits[present] / sizes[present]))


def paired_gain(
    pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[float, float]:
    """Balanced-accuracy gain of a over b on the same samples, and its standard error.

    Args:
        pred_a: (N,) predictions of a.
        pred_b: (N,) predictions of b.
        y: (N,) labels.
        n_classes: C.

    Returns:
        ``(gain, se)`` with ``gain = (1/C') sum_c mean_{i in c} d_i`` for
        ``d_i = hit_a(i) - hit_b(i)`` over the C' classes present, and
        ``se = sqrt(sum_c var_c(d) / n_c) / C'`` (sample variance within each class).

    Example:
        >>> y = np.array([0, 0, 1, 1])
        >>> g, se = paired_gain(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), y, 2)
        >>> g, round(se, 3)
        (0.5, 0.354)
    """
    d = (pred_a == y).astype(np.float64) - (pred_b == y).astype(np.float64)
    sizes = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = sizes > 0
    mean = np.bincount(y, weights=d, minlength=n_classes)[present] / sizes[present]
    sq = np.bincount(y, weights=d * d, minlength=n_classes)[present]
    n = sizes[present]
    var = np.where(n > 1, (sq - n * mean**2) / np.maximum(n - 1, 1), 0.0)
    c = float(present.sum())
    return float(mean.sum() / c), float(np.sqrt(np.sum(np.maximum(var, 0.0) / n)) / c)


def rarer_half(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Mask (N,) of the samples whose class is in the rarer half of the classes present
    in ``y`` (N,) (by count; ``ceil(C / 2)`` classes, ties by class index).

    Example:
        >>> rarer_half(np.array([0, 0, 0, 1, 2, 2]), 3).tolist()
        [False, False, False, True, True, True]
    """
    counts = np.bincount(y, minlength=n_classes)
    present = np.flatnonzero(counts)
    order = present[np.argsort(counts[present], kind="stable")]
    return np.isin(y, order[: (len(order) + 1) // 2])


def choose(
    candidates: Sequence[Candidate],
    y: np.ndarray,
    n_classes: int,
    *,
    margin: float,
    min_gain: float,
) -> tuple[int, str, list[dict[str, Any]]]:
    """Apply the rule of this module to candidates listed simplest first.

    A candidate other than the first (the reference) is *eligible* when it beats the
    reference clearly (paired gain > ``margin`` standard errors and > ``min_gain``) and
    does not lose accuracy on the rarer half of the classes. The chosen candidate is the
    reference if no candidate is eligible; otherwise the simplest eligible candidate
    that the best eligible one does not clearly beat.

    The tail condition guards against a bias of out-of-fold estimates on training
    features: a backbone fitted the training images of rare classes more closely than it
    will fit their test images, so held-out training features overrate classifiers that
    trade tail accuracy for head accuracy.

    Returns:
        The chosen index, the reason in words, and one evidence row per candidate
        (``name``, ``params``, ``balanced_accuracy``, ``gain`` and ``se`` against the
        first candidate, ``tail_gain`` and ``tail_se`` on the rarer half of the classes,
        ``eligible``, ``chosen``).

    Example:
        >>> y = np.repeat([0, 1], 50)
        >>> ref = Candidate("ref", {}, y.copy())
        >>> noisy = y.copy(); noisy[:1] = 1
        >>> choose([ref, Candidate("b", {}, noisy)], y, 2, margin=2.0, min_gain=0.0)[0]
        0
    """
    scores = [balanced_accuracy(c.pred, y, n_classes) for c in candidates]
    tail = rarer_half(y, n_classes)
    ref = candidates[0].pred
    rows = []
    for i, cand in enumerate(candidates):
        gain, se = paired_gain(cand.pred, ref, y, n_classes)
        tail_gain, tail_se = paired_gain(cand.pred[tail], ref[tail], y[tail], n_classes)
        clear = gain > max(margin * se, min_gain)
        rows.append(
            {
                "name": cand.name,
                "params": jsonable(cand.params),
                "balanced_accuracy": scores[i],
                "gain": gain,
                "se": se,
                "tail_gain": tail_gain,
                "tail_se": tail_se,
                "eligible": i == 0 or (clear and tail_gain >= 0.0),
                "chosen": False,
            }
        )
    eligible = [i for i, row in enumerate(rows) if row["eligible"]]
    best = max(eligible, key=lambda i: (scores[i], -i))  # the simplest of equal scores
    top = int(np.argmax(scores))
    if best == 0:
        chosen = 0
        if top == 0:
            reason = "the reference has the best out-of-fold balanced accuracy"
        else:
            t = rows[top]
            reason = (
                f"no departure beats the reference clearly without losing on the rarer half "
                f"of the classes (best: {t['name']}, {100 * t['gain']:+.2f} ± "
                f"{100 * t['se']:.2f} points, rarer half {100 * t['tail_gain']:+.2f}); "
                "the reference is kept"
            )
    else:
        chosen, reason = best, "best eligible out-of-fold balanced accuracy"
        for i in eligible:
            if i >= best:
                break
            gain, se = paired_gain(candidates[best].pred, candidates[i].pred, y, n_classes)
            if i > 0 and gain <= max(margin * se, min_gain):
                chosen = i
                reason = (
                    f"{candidates[best].name} scores {100 * gain:+.2f} ± {100 * se:.2f} points "
                    f"over it, not above {margin:g} standard errors and "
                    f"{100 * min_gain:.2f} points; the simpler option is kept"
                )
                break
    rows[chosen]["chosen"] = True
    return chosen, reason, rows


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Candidate parameters as JSON-ready data (configs as dicts)."""
    return {
        k: to_dict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
        for k, v in params.items()
    }


Variants = Callable[["DLSAClassifier"], Iterator[tuple[str, dict[str, Any]]]]
"""Puts a fitted fold model in the state of each post-hoc variant in turn and yields the
variant's ``(name, params)``."""


def out_of_fold(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    *,
    variants: Variants | None = None,
    donors: Sequence[DLSAClassifier] | None = None,
) -> tuple[list[Candidate], list[DLSAClassifier]]:
    """Fit the fixed configuration ``params`` once per fold and pool the held-out
    predictions (of every post-hoc variant, if given).

    Args:
        params: estimator parameters (``selection`` None, a concrete base).
        X: (N, D) features.
        y: (N,) class indices ``0 .. C-1``.
        folds: validation index arrays that cover ``0 .. N-1`` once.
        variants: post-hoc variants of each fitted fold model; None scores it as is.
        donors: per fold, a model whose flow filters the fold model reuses.

    Returns:
        The candidates (one per variant) and the fitted fold models.
    """
    from dlsa.cascade import DLSAClassifier

    every = np.arange(len(y))
    preds: dict[str, np.ndarray] = {}
    stages: dict[str, np.ndarray] = {}
    named: dict[str, dict[str, Any]] = {}
    models = []
    for f, val_idx in enumerate(folds):
        fit_idx = np.setdiff1d(every, val_idx, assume_unique=True)
        clf = DLSAClassifier(**params)
        donor = None if donors is None else donors[f]
        clf.fit(X[fit_idx], y[fit_idx], reuse_filters=donor, min_class_samples=1)
        models.append(clf)
        for name, cand_params in (variants or _as_fitted)(clf):
            proba, stage = clf.predict_proba_and_route(X[val_idx])
            pred = preds.setdefault(name, np.zeros(len(y), dtype=np.int64))
            pred[val_idx] = clf.classes_[proba.argmax(1)]
            stages.setdefault(name, np.zeros(len(y), dtype=np.int64))[val_idx] = stage
            named[name] = cand_params
    deep = params["depth"] > 0
    out = [Candidate(k, named[k], preds[k], stages[k] if deep else None, models) for k in named]
    return out, models


def _as_fitted(clf: DLSAClassifier) -> Iterator[tuple[str, dict[str, Any]]]:
    params = clf.get_params()
    yield describe(params), {}


def describe(params: dict[str, Any]) -> str:
    """Readable name of a candidate, e.g. ``"tau-norm (tau=1.25) + DLSA (depth 1, 30%)"``."""
    extra = params.get("base_params") or {}
    text = params["base"]
    if extra:
        text += " (" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in extra.items()) + ")"  # fmt: skip
    if params.get("depth", 0):
        share = params["flow_filter"].proportion
        text += f" + DLSA (depth {params['depth']}, {100 * share:.0f}% routed)"
    return text


def tau_variants(name: str, grid: Sequence[float]) -> Variants:
    """Variants of a base whose ``tau`` acts after training (``tau-norm``,
    ``logit-adjust``): the fold model is trained once and re-scored for every tau."""
    from dlsa.bases import make_base

    def apply(clf: DLSAClassifier) -> Iterator[tuple[str, dict[str, Any]]]:
        for tau in grid:
            method = make_base(name, {"tau": float(tau)})
            clf.base_ = method
            for module in (clf.regular_, clf.fallback_, *clf.heads_):
                method.posthoc(module)
            params = {"base": name, "base_params": {"tau": float(tau)}}
            yield describe(params), params

    return apply


def _round(
    what: str,
    candidates: list[Candidate],
    y: np.ndarray,
    n_classes: int,
    cfg: SelectionConfig,
    start: float,
) -> tuple[Candidate, dict[str, Any]]:
    idx, reason, rows = choose(candidates, y, n_classes, margin=cfg.margin, min_gain=cfg.min_gain)
    record = {
        "what": what,
        "reference": candidates[0].name,
        "chosen": candidates[idx].name,
        "reason": reason,
        "seconds": time.perf_counter() - start,
        "candidates": rows,
    }
    return candidates[idx], record


def select_base(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    n_classes: int,
) -> tuple[Candidate, dict[str, Any]]:
    """Round 1: the base method and its tau, each alone (depth 0), simplest first."""
    from dlsa.bases import BASES

    cfg: SelectionConfig = params["selection"]
    start = time.perf_counter()
    fixed = params | {"selection": None, "depth": 0}
    candidates: list[Candidate] = []
    for name in cfg.bases:
        over = {"base": name, "base_params": {}}
        if BASES[name].posthoc_params == ("tau",):
            runner = tau_variants(name, cfg.tau_grid)
            found, _ = out_of_fold(fixed | over, X, y, folds, variants=runner)
        else:
            found, _ = out_of_fold(fixed | over, X, y, folds)
            found[0].params = over
        candidates.extend(found)
        logger.info("selection: base %s scored", name)
    return _round("base method", candidates, y, n_classes, cfg, start)


def select_dlsa(
    params: dict[str, Any],
    base: Candidate,
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[np.ndarray],
    n_classes: int,
    tail: np.ndarray,
    base_models: list[DLSAClassifier] | None = None,
) -> tuple[Candidate, dict[str, Any]]:
    """Round 2: DLSA on top of the chosen base (depth 1 ... ``params["depth"]``, every
    routed share of the selection), against the base alone. ``base_models`` are the
    base's fold models, whose base classifier the DLSA fold models reuse."""
    cfg: SelectionConfig = params["selection"]
    start = time.perf_counter()
    fixed = params | {"selection": None} | base.params
    alone = Candidate(describe(fixed | {"depth": 0}), {"depth": 0}, base.pred)
    candidates = [alone]
    flt = params["flow_filter"]
    donors: dict[float, list[DLSAClassifier]] = {}
    first = base_models
    for depth in range(1, params["depth"] + 1):
        for share in cfg.proportions:
            if depth > 1 and share >= 0.9:
                continue  # "no routing" leaves nothing for a second filter
            over = {"depth": depth, "flow_filter": dataclasses.replace(flt, proportion=share)}
            reuse = first if depth == 1 else donors.get(share)
            found, models = out_of_fold(fixed | over, X, y, folds, donors=reuse)
            found[0].params = over
            candidates.extend(found)
            donors[share] = models
            if depth == 1 and share == cfg.proportions[0]:
                first = models
            logger.info("selection: %s scored", found[0].name)
    chosen, record = _round("DLSA on the chosen base", candidates, y, n_classes, cfg, start)
    for row, cand in zip(record["candidates"], candidates, strict=True):
        row |= separation(cand.stage, y, tail)
    return chosen, record


def separation(stage: np.ndarray | None, y: np.ndarray, tail: np.ndarray) -> dict[str, Any]:
    """Head-tail separation of filter 1 on out-of-fold samples: the tail share of the
    samples it routes (stage 0) against the tail share of all samples.

    Args:
        stage: (N,) out-of-fold stages, or None for a model without filters.
        y: (N,) classes.
        tail: (C,) True for tail classes.
    """
    if stage is None or not tail.any():
        return {"tail_share_routed": None, "tail_share_input": None, "n_routed": None}
    routed = stage == 0
    is_tail = tail[y]
    share = float(is_tail[routed].mean()) if routed.any() else None
    return {
        "tail_share_routed": share,
        "tail_share_input": float(is_tail.mean()),
        "n_routed": int(routed.sum()),
    }


def select(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose the base method (if ``params["base"] == "auto"``) and DLSA on top (if
    ``params["depth"] >= 1``) by the rule of this module.

    Args:
        params: estimator parameters with a :class:`SelectionConfig` in ``selection``
            and a concrete ``flow_filter`` (K resolved).
        X: (N, D) features.
        y: (N,) class indices ``0 .. C-1``.
        n_classes: C.

    Returns:
        The concrete parameters to fit on all the data (``selection`` None), and the
        evidence: folds, rule, per round every candidate's out-of-fold balanced accuracy
        and paired gain ± standard error over the round's reference, what was chosen and
        why, and the seconds spent.
    """
    cfg: SelectionConfig = params["selection"]
    if cfg.folds < 2:
        raise ValueError(f"selection.folds must be >= 2, got {cfg.folds}")
    start = time.perf_counter()
    if params["base"] != "auto" and params["depth"] == 0:
        chosen = params | {"selection": None}
        return chosen, {"folds": cfg.folds, "margin": cfg.margin, "min_gain": cfg.min_gain,
                        "rounds": [], "chosen": describe(chosen), "seconds": 0.0}  # fmt: skip
    folds = stratified_folds(y, cfg.folds, seed=_fold_seed(params["random_state"]))
    rounds = []
    if params["base"] == "auto":
        base, record = select_base(params, X, y, folds, n_classes)
        rounds.append(record)
    else:
        fixed = params | {"selection": None, "depth": 0}
        found, _ = out_of_fold(fixed, X, y, folds)
        base = found[0]
        base.params = {"base": params["base"], "base_params": dict(params["base_params"] or {})}
    chosen = params | {"selection": None} | base.params | {"depth": 0}
    if params["depth"] >= 1:
        counts = np.bincount(y, minlength=n_classes)
        tail = counts <= TAIL_THRESHOLD
        dlsa, record = select_dlsa(params, base, X, y, folds, n_classes, tail, base.models)
        rounds.append(record)
        chosen |= dlsa.params
    evidence = {
        "folds": cfg.folds,
        "margin": cfg.margin,
        "min_gain": cfg.min_gain,
        "rounds": rounds,
        "chosen": describe(chosen),
        "seconds": time.perf_counter() - start,
    }
    return chosen, evidence


def reference_params(config: DLSAConfig, reference: str | None = None) -> dict[str, Any]:
    """Estimator parameters of the reference model that a chosen model is reported
    against: ``reference`` (default: the configured base, or Balanced Softmax when the
    base is chosen by selection) alone, without selection.

    Example:
        >>> p = reference_params(DLSAConfig())
        >>> p["base"], p["depth"], p["selection"]
        ('balsoftmax', 0, None)
    """
    name = reference or (config.base if config.base != "auto" else "balsoftmax")
    own = dict(config.base_params) if name == config.base else {}
    return config.estimator_params() | {
        "depth": 0,
        "base": name,
        "base_params": own,
        "selection": None,
    }


def _fold_seed(random_state: int | None) -> int:
    return int(np.random.SeedSequence(random_state).spawn(3)[2].generate_state(1)[0])
