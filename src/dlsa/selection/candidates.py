"""The candidates of the selection's rounds as fold configurations: base methods (one
training per fold; post-hoc variants re-scored per tau, or per C along ``logreg``'s
path) and DLSA on top of the chosen base (shares and depths reusing each other's fits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dlsa.cascade import Cascade
from dlsa.config import FilterConfig, SelectionConfig
from dlsa.selection.folds import FoldSpec, Variants
from dlsa.selection.rule import Candidate, describe
from dlsa.stage2.bases import BASES, make_base


def tau_variants(name: str, grid: Sequence[float]) -> Variants:
    """Variants of a base whose ``tau`` acts after training (``tau-norm``,
    ``logit-adjust``): the fold cascade is trained once and re-scored for every tau
    (:meth:`Cascade.with_base`)."""

    def apply(cascade: Cascade) -> Iterator[tuple[str, dict[str, Any], Cascade]]:
        for tau in grid:
            params = {"base": name, "base_params": {"tau": float(tau)}}
            yield describe(params), params, cascade.with_base(make_base(name, {"tau": tau}))

    return apply


def c_variants(name: str, grid: Sequence[float]) -> Variants:
    """Variants of a regularisation-path base (``logreg``, ``balsoftmax-tuned``) at every
    ``C`` of ``grid``: the fold cascade is fitted once along the path (``inner_folds=0``
    keeps every solution) and re-scored at each ``C``, strongest regularisation (the
    simplest model) first."""

    def apply(cascade: Cascade) -> Iterator[tuple[str, dict[str, Any], Cascade]]:
        for c in sorted(grid):
            params = {"base": name, "base_params": {"c": float(c)}}
            yield describe(params), params, cascade.with_base(make_base(name, {"c": c}))

    return apply


def tunes_on_log_loss(name: str) -> bool:
    """Whether base ``name`` chooses its ``C`` by held-out log-loss (then the selection
    chooses it that way too: :func:`tuned_variant`)."""
    return getattr(make_base(name), "criterion", None) == "log-loss"


def tuned_variant(found: list[Candidate], y: np.ndarray) -> tuple[Candidate, dict[str, float]]:
    """The one candidate of a base that tunes its ``C`` by log-loss: of its variants
    (one per ``C``, scored on the same rows y (S,)), the one of the lowest balanced
    log-loss (the mean over classes of each class's mean ``nll``; rows some variant has
    no finite loss for are left out of all), ties to the stronger regularisation; and
    each variant's balanced log-loss by name.

    Its ``C`` is chosen on the evidence that then scores it against the other
    candidates: one value of a smooth criterion, so the optimism is small, and it lies
    with the reference (departures from it need more, not less, evidence)."""
    nll = np.stack([cand.nll for cand in found])  # type: ignore[misc]
    rows = np.isfinite(nll).all(axis=0)
    classes, inverse = np.unique(y[rows], return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(classes))
    losses = [float(np.mean(np.bincount(inverse, v[rows], len(classes)) / sizes)) for v in nll]
    best = int(np.argmin(losses))
    return found[best], {cand.name: loss for cand, loss in zip(found, losses, strict=True)}


def base_spec(fixed: dict[str, Any], name: str, cfg: SelectionConfig) -> FoldSpec:
    """The fold configuration of base candidate ``name``: methods with a post-hoc
    hyper-parameter (tau, or ``logreg``'s C) are fitted once and re-scored per value."""
    posthoc = BASES[name].posthoc_params
    if posthoc == ("tau",):
        over = {"base": name, "base_params": {}}
        return FoldSpec(fixed | over, tau_variants(name, cfg.tau_grid))
    if posthoc == ("c",):
        over = {"base": name, "base_params": {"inner_folds": 0}}
        return FoldSpec(fixed | over, c_variants(name, make_base(name).cs))
    group = "plain" if make_base(name).plain_phase else None
    return FoldSpec(fixed | {"base": name, "base_params": {}}, None, group=group)


def dlsa_specs(
    fixed: dict[str, Any],
    flt: FilterConfig,
    depth: int,
    proportions: Sequence[float],
    base_models: Sequence[Cascade] | None,
) -> tuple[list[dict[str, Any]], list[FoldSpec]]:
    """The DLSA candidates of depth 1 ... ``depth`` (every routed share; 0.9+ only at
    depth 1: nothing is left below it) as fold configurations that reuse: depth 1's
    first share reuses the base's fold models (``base_models``), the other shares its
    filters, depth d the filters of depth d - 1 of the same share."""
    overs: list[dict[str, Any]] = []
    specs: list[FoldSpec] = []
    index: dict[tuple[int, float], int] = {}
    for d in range(1, depth + 1):
        for share in [p for p in proportions if d == 1 or p < 0.9]:
            over = {"depth": d, "flow_filter": dataclasses.replace(flt, proportion=share)}
            parent = index.get((d - 1, share) if d > 1 else (1, proportions[0]))
            index[(d, share)] = len(specs)
            overs.append(over)
            specs.append(FoldSpec(fixed | over, donors=base_models, parent=parent))
    return overs, specs
