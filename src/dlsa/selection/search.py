"""Model selection on out-of-fold predictions of the training data, or on a validation
set.

Every data-driven choice of the default configuration (which base method and which tau,
DLSA on top or not, how deep, which share routed, "no routing") is made here, with the
rule of :mod:`dlsa.selection.rule`, on the pooled out-of-fold predictions of ``F``
stratified folds of the training data, or, when the user has one, on a validation set
of images the backbone never trained on (every candidate fitted once on all the training
data). The test set is never seen.

Cost. Every base candidate is trained once per fold; ``tau-norm`` and ``logit-adjust``
are trained once per fold and re-scored for every tau (their tau is post hoc). DLSA
candidates of depth 1 that differ only in the routed share reuse one flow filter per fold
(the threshold is a quantile of the same log-likelihoods), and every DLSA fold model
reuses the base trained on that fold. The evidence records the seconds spent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlsa.cascade import Cascade, resolve
from dlsa.config import DLSAConfig, SelectionConfig
from dlsa.engine.progress import Phase
from dlsa.engine.splits import append_validation, stratified_folds
from dlsa.errors import TrainingDivergedError
from dlsa.metrics import HEAD_THRESHOLD, head_tail_separation
from dlsa.selection.candidates import base_round, dlsa_specs, tuned_variant, tunes_on_log_loss
from dlsa.selection.folds import fold_candidates, out_of_fold
from dlsa.selection.rule import Candidate, DropRule, choose, describe, ruled_out

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    """Where candidates are fitted and scored.

    Attributes:
        X: (N', D) the rows the folds index: the training features, then the validation
            features if any.
        y: (N',) their classes.
        folds: held-out index arrays (one per fit of a candidate).
        scored: (S,) the rows candidates are scored on (all training rows out of fold,
            or the validation rows).
        counts: (C,) training samples per class (the rarer half of the rule).
        source: ``"out-of-fold"`` or ``"validation"``.
    """

    X: np.ndarray
    y: np.ndarray
    folds: list[np.ndarray]
    scored: np.ndarray
    counts: np.ndarray
    source: str

    @property
    def y_scored(self) -> np.ndarray:
        """(S,) classes of the scored rows."""
        return self.y[self.scored]

    @classmethod
    def build(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        n_folds: int,
        seed: int,
        val: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Evidence:
        """Out-of-fold evidence of ``n_folds`` stratified folds of X (N, D), y (N,), or
        with ``val`` = (X_val (M, D), y_val (M,)) one fit on all of X scored on it."""
        counts = np.bincount(y, minlength=n_classes)
        if val is None:
            folds = stratified_folds(y, n_folds, seed=seed)
            return cls(X, y, folds, np.arange(len(y)), counts, "out-of-fold")
        X_all, y_all, rows = append_validation(X, y, val)
        return cls(X_all, y_all, [rows], rows, counts, "validation")

    def ruled_out_configs(
        self, pooled: list[list[Candidate] | None], ref: np.ndarray, rule: DropRule
    ) -> list[int]:
        """Indices of the configurations whose candidates ``rule`` all rules out against
        the reference predictions ``ref`` (N',) on the folds so far
        (:func:`~dlsa.selection.rule.ruled_out`)."""
        n_classes = len(self.counts)
        y, counts = self.y, self.counts
        return [
            i
            for i, cands in enumerate(pooled)
            if cands is not None and ruled_out(cands, ref, y, n_classes, rule, counts)
        ]

    def scored_candidates(self, found: list[Candidate]) -> list[Candidate]:
        """The candidates' predictions and stages on the scored rows only."""
        for cand in found:
            cand.pred = cand.pred[self.scored]
            cand.stage = None if cand.stage is None else cand.stage[self.scored]
            cand.seen = None if cand.seen is None else cand.seen[self.scored]
            cand.nll = None if cand.nll is None else cand.nll[self.scored]
        return found


def _round(
    what: str,
    candidates: list[Candidate],
    ev: Evidence,
    n_classes: int,
    cfg: SelectionConfig,
    start: float,
) -> tuple[Candidate, dict[str, Any]]:
    idx, reason, rows = choose(
        candidates,
        ev.y_scored,
        n_classes,
        margin=cfg.margin,
        min_gain=cfg.min_gain,
        multiplicity=cfg.multiplicity,
        counts=ev.counts,
        prior_guard=guard(cfg, ev.source),
        floor=ev.source == "validation",
    )
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
    params: dict[str, Any], ev: Evidence, n_classes: int
) -> tuple[Candidate, dict[str, Any]]:
    """Round 1: the base method and its tau, each alone (depth 0), simplest first."""
    cfg: SelectionConfig = params["selection"]
    start = time.perf_counter()
    specs = base_round(params)[1]
    candidates: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    tuned: dict[str, dict[str, float]] = {}

    rule = drop_rule(cfg)

    def configs_to_drop(pooled: list[list[Candidate] | None]) -> list[int]:
        ref = pooled[0]  # the reference: never dropped
        if ref is not None and tunes_on_log_loss(cfg.bases[0]):
            ref = [tuned_variant(ref, ev.y)[0]]  # its rows so far: the others are NaN
        return [] if ref is None else ev.ruled_out_configs([None, *pooled[1:]], ref[0].pred, rule)

    judge = configs_to_drop if cfg.drop_behind is not None else None
    phase = Phase("selection: base method", counter=FITS)
    results = fold_candidates(specs, ev.X, ev.y, ev.folds, params.get("n_jobs"), judge, phase)
    for config, result in zip(specs, results, strict=True):
        if isinstance(result, TrainingDivergedError):
            if not candidates:  # the reference must train
                raise result
            skipped.append(_skip(config.name, result))
            continue
        found = ev.scored_candidates(result[0])
        name = config.params["base"]
        if tunes_on_log_loss(name):
            best, tuned[name] = tuned_variant(found, ev.y_scored)
            found = [best]
        candidates.extend(found)
        logger.info("selection: base %s scored", name)
    chosen, record = _round("base method", candidates, ev, n_classes, cfg, start)
    phase.end(_scored(candidates, chosen))
    record["skipped"] = skipped
    record["log_loss"] = tuned
    return chosen, record


def select_dlsa(
    params: dict[str, Any],
    base: Candidate,
    ev: Evidence,
    n_classes: int,
    base_models: list[Cascade] | None = None,
) -> tuple[Candidate, dict[str, Any]]:
    """Round 2: DLSA on top of the chosen base (depth 1 ... ``params["depth"]``, every
    routed share of the selection), against the base alone. ``base_models`` are the
    base's fold models, whose base classifier the DLSA fold models reuse."""
    cfg: SelectionConfig = params["selection"]
    start = time.perf_counter()
    fixed = params | {"selection": None} | base.params
    alone = Candidate(describe(fixed | {"depth": 0}), {"depth": 0}, base.pred)
    candidates = [alone]
    specs = dlsa_specs(fixed, params["depth"], cfg.proportions, base_models)
    skipped: list[dict[str, str]] = []

    rule = drop_rule(cfg)

    def configs_to_drop(pooled: list[list[Candidate] | None]) -> list[int]:
        return ev.ruled_out_configs(pooled, base.pred, rule)

    judge = configs_to_drop if cfg.drop_behind is not None else None
    phase = Phase("selection: DLSA on the chosen base", counter=FITS)
    results = fold_candidates(specs, ev.X, ev.y, ev.folds, params.get("n_jobs"), judge, phase)
    for config, result in zip(specs, results, strict=True):
        if isinstance(result, TrainingDivergedError):
            skipped.append(_skip(config.name, result))
            continue
        found = ev.scored_candidates(result[0])
        candidates.extend(found)
        logger.info("selection: %s scored", found[0].name)
    chosen, record = _round("DLSA on the chosen base", candidates, ev, n_classes, cfg, start)
    phase.end(_scored(candidates, chosen))
    for row, cand in zip(record["candidates"], candidates, strict=True):
        seen = cand.rows(len(ev.y_scored))
        stage = None if cand.stage is None else cand.stage[seen]
        row |= separation(stage, ev.y_scored[seen], ev.counts)
    record["skipped"] = skipped
    return chosen, record


FITS = "{done}/{total} fold fits"
"""The count of a selection round's progress lines."""


def _scored(candidates: list[Candidate], chosen: Candidate) -> str:
    """The last progress line of a round: candidates scored and the one chosen."""
    return f"{len(candidates)} candidates scored, chosen: {chosen.name}"


def guard(cfg: SelectionConfig, source: str) -> float | None:
    """The prior guard's bar for evidence from ``source``: none on a validation split or
    on training features the backbone never trained on (:mod:`dlsa.selection.shift`).

    Example:
        >>> guard(SelectionConfig(), "out-of-fold"), guard(SelectionConfig(), "validation")
        (2.0, None)
    """
    if source != "out-of-fold" or cfg.train_features == "unseen":
        return None
    return cfg.prior_guard


def drop_rule(cfg: SelectionConfig) -> DropRule:
    """The selection's rule for dropping candidates between folds."""
    z = cfg.drop_behind if cfg.drop_behind is not None else 0.0
    return DropRule(z=z, rule=cfg.drop_rule, margin=cfg.margin, min_gain=cfg.min_gain)


def _skip(name: str, err: Exception) -> dict[str, str]:
    """The evidence of a candidate whose training diverged: it is not eligible."""
    logger.warning("selection: %s skipped, its training diverged: %s", name, err)
    return {"name": name, "error": str(err)}


def separation(
    stage: np.ndarray | None, y: np.ndarray, train_counts: np.ndarray
) -> dict[str, Any]:
    """Head-tail separation of filter 1 on out-of-fold samples
    (:func:`dlsa.metrics.head_tail_separation` of the samples it routes, stage 0), with
    the keys a selection record writes: ``tail_share_routed``, ``tail_share_input`` and
    ``n_routed``, all None for a model without filters or data without a tail class.

    Args:
        stage: (N,) out-of-fold stages, or None for a model without filters.
        y: (N,) classes.
        train_counts: (C,) training samples per class.
    """
    if stage is None or not (train_counts <= HEAD_THRESHOLD).any():
        return {"tail_share_routed": None, "tail_share_input": None, "n_routed": None}
    sep = head_tail_separation(stage == 0, y, train_counts)
    return {k: sep[k] for k in ("tail_share_routed", "tail_share_input", "n_routed")}


def select(
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Cascade | None]:
    """Choose the base method (if ``params["base"] == "auto"``) and DLSA on top (if
    ``params["depth"] >= 1``) by the rule of this module.

    Args:
        params: estimator parameters with a :class:`SelectionConfig` in ``selection``
            and a concrete ``flow_filter`` (K resolved), checked as
            :meth:`dlsa.DLSAClassifier.fit` checks them first
            (:func:`dlsa.cascade.spec.check_params`; a round resolves its parameters
            once into the spec its candidates are built from, not per fold).
        X: (N, D) features.
        y: (N,) class indices ``0 .. C-1``.
        n_classes: C.
        val: optional (X_val (M, D), y_val (M,) class indices): candidates are fitted
            once on all of X and scored on it instead of out of fold.

    Returns:
        The concrete parameters to fit on all the data (``selection`` None); the
        evidence: folds, rule, per round every candidate's out-of-fold balanced accuracy
        and paired gain ± standard error over the round's reference, what was chosen and
        why, and the seconds spent; and, on a validation split, the chosen candidate's
        cascade fitted on all of X (the final fit's donor: its filters and base are the
        final model's, :func:`chosen_fit`), else None.
    """
    cfg: SelectionConfig = params["selection"]  # checked with the estimator's params
    start = time.perf_counter()
    source = "out-of-fold" if val is None else "validation"
    if params["base"] != "auto" and params["depth"] == 0:
        chosen = params | {"selection": None}
        return chosen, {"folds": cfg.folds, "margin": cfg.margin, "min_gain": cfg.min_gain,
                        "source": source, "rounds": [], "chosen": describe(chosen),
                        "seconds": 0.0}, None  # fmt: skip
    seed = _fold_seed(params["random_state"])
    ev = Evidence.build(X, y, n_classes, cfg.folds, seed, val)
    rounds = []
    if params["base"] == "auto":
        base, record = select_base(params, ev, n_classes)
        rounds.append(record)
    else:
        fixed = params | {"selection": None, "depth": 0}
        own = {"base": params["base"], "base_params": dict(params["base_params"] or {})}
        with Phase(f"selection: base {params['base']} out of fold", counter=FITS) as phase:
            found, _ = out_of_fold(
                resolve(fixed), ev.X, ev.y, ev.folds, name=describe(fixed), params=own,
                n_jobs=params.get("n_jobs"), phase=phase,
            )  # fmt: skip
        base = ev.scored_candidates(found)[0]
    chosen = params | {"selection": None} | base.params | {"depth": 0}
    fitted = base
    if params["depth"] >= 1:
        dlsa, record = select_dlsa(params, base, ev, n_classes, base.models)
        rounds.append(record)
        chosen |= dlsa.params
        fitted = dlsa if dlsa.models else base
    evidence = {
        "folds": cfg.folds if val is None else None,
        "source": source,
        "n_scored": int(len(ev.scored)),
        "multiplicity": cfg.multiplicity,
        "train_features": cfg.train_features,
        "prior_guard": guard(cfg, source),
        "margin": cfg.margin,
        "min_gain": cfg.min_gain,
        "rounds": rounds,
        "chosen": describe(chosen),
        "seconds": time.perf_counter() - start,
    }
    return chosen, evidence, chosen_fit(ev, fitted)


def chosen_fit(ev: Evidence, chosen: Candidate) -> Cascade | None:
    """The chosen candidate's cascade fitted on all the training rows: on a validation
    split its one fit is on exactly the data, seed and configuration of the final fit
    (up to post-hoc values), so the final fit reuses its filters and base; out of fold
    there is none (None)."""
    if ev.source != "validation" or not chosen.models:
        return None
    return chosen.models[0]


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
