"""The candidates of the selection's rounds as fold configurations: base methods (one
training per fold; post-hoc variants re-scored per tau, or per C along ``logreg``'s
path) and DLSA on top of the chosen base (shares and depths reusing each other's fits).

A round's parameters are resolved once (:func:`dlsa.cascade.resolve`); each candidate's
:class:`~dlsa.cascade.CascadeSpec` is that spec with :func:`dataclasses.replace` (its
base, or its depth and routed share), and the parameter dict it records
(:attr:`Candidate.params`) is only what it changes, for its name and the evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from dlsa.cascade import Cascade, CascadeSpec, resolve
from dlsa.config import SelectionConfig
from dlsa.selection.folds import FoldSpec, Variants
from dlsa.selection.rule import Candidate, describe
from dlsa.stage2.bases import BASES, balanced_mean, make_base


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
    return make_base(name).tunes_on_log_loss


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
    target = torch.from_numpy(y[rows])
    losses = [balanced_mean(torch.from_numpy(v[rows]), target) for v in nll]
    best = int(np.argmin(losses))
    return found[best], {cand.name: loss for cand, loss in zip(found, losses, strict=True)}


def fit_base_params(name: str) -> dict[str, Any]:
    """The hyper-parameters base candidate ``name`` is fitted with on every fold:
    ``inner_folds=0`` for a regularisation-path base (every solution of the path kept,
    re-scored per ``C``), else none (the method's defaults; a post-hoc tau is set per
    variant)."""
    return {"inner_folds": 0} if BASES[name].posthoc_params == ("c",) else {}


def base_spec(round_spec: CascadeSpec, name: str, cfg: SelectionConfig) -> FoldSpec:
    """The fold configuration of base candidate ``name``: ``round_spec`` (the round's
    resolved parameters, depth 0) with base ``name``. Methods with a post-hoc
    hyper-parameter (tau, or ``logreg``'s C) are fitted once and re-scored per value;
    the candidate records ``{"base": name, "base_params": {}}``."""
    over: dict[str, Any] = {"base": name, "base_params": {}}
    spec = dataclasses.replace(round_spec, base=make_base(name, fit_base_params(name)))
    posthoc = BASES[name].posthoc_params
    if posthoc == ("tau",):
        return FoldSpec(spec, describe(over), over, tau_variants(name, cfg.tau_grid))
    if posthoc == ("c",):
        return FoldSpec(spec, describe(over), over, c_variants(name, make_base(name).cs))
    group = "plain" if make_base(name).plain_phase else None
    return FoldSpec(spec, describe(over), over, group=group)


def base_round(params: dict[str, Any]) -> tuple[dict[str, Any], list[FoldSpec]]:
    """Round 1's fixed parameters (``selection`` None, depth 0) and its fold
    configurations, one per base of the selection, simplest first. The parameters are
    resolved once (:func:`~dlsa.cascade.spec.resolve`, with the reference base standing
    in); every candidate's spec is that spec with its own base."""
    cfg: SelectionConfig = params["selection"]
    fixed = params | {"selection": None, "depth": 0}
    round_spec = resolve(fixed | {"base": cfg.bases[0], "base_params": {}})
    return fixed, [base_spec(round_spec, name, cfg) for name in cfg.bases]


def dlsa_specs(
    fixed: dict[str, Any],
    depth: int,
    proportions: Sequence[float],
    base_models: Sequence[Cascade] | None,
) -> list[FoldSpec]:
    """The DLSA candidates of depth 1 ... ``depth`` (every routed share; 0.9+ only at
    depth 1: nothing is left below it) on the parameters ``fixed`` (a concrete base,
    ``selection`` None), as fold configurations that reuse: depth 1's first share
    reuses the base's fold models (``base_models``), the other shares its filters, depth
    d the filters of depth d - 1 of the same share.

    ``fixed`` is resolved once (:func:`~dlsa.cascade.spec.resolve`); each candidate's
    spec is that spec at depth d and routed share s (every candidate has the same flow
    filter config), and the candidate records ``{"depth": d, "routed_share": s}``."""
    round_spec = resolve(fixed)
    specs: list[FoldSpec] = []
    index: dict[tuple[int, float], int] = {}
    for d in range(1, depth + 1):
        for share in [p for p in proportions if d == 1 or p < 0.9]:
            over = {"depth": d, "routed_share": share}
            spec = dataclasses.replace(round_spec, depth=d, routed_share=share)
            parent = index.get((d - 1, share) if d > 1 else (1, proportions[0]))
            index[(d, share)] = len(specs)
            specs.append(
                FoldSpec(spec, describe(fixed | over), over, donors=base_models, parent=parent)
            )
    return specs
