"""Training the parts of one cascade, given its seed: the fallback (the base method on
all data), then the flow filter, routing and cluster-aided classifier of each level, then
the regular classifier. Which parts there are and how they are wired is
:mod:`dlsa.cascade.blueprint`'s; the safeguard and the checked donor come from
:func:`dlsa.cascade.fit.fit_cascade`, the public entry, which calls :func:`fit_levels`.

Each level's threshold is fixed on the training samples that reach it; the samples it
does not route go on to the next level.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dlsa.cascade.blueprint import Blueprint
from dlsa.cascade.model import Cascade
from dlsa.cascade.spec import CascadeSpec
from dlsa.engine import rng
from dlsa.engine.devices import resolve_device
from dlsa.engine.rows import HostRows, Rows, fits_on_device
from dlsa.engine.training import torch_generator
from dlsa.errors import DLSAInputError
from dlsa.metrics import HEAD_THRESHOLD, separation_from_counts
from dlsa.stage2.bases import BaseMethod, StageData
from dlsa.stage2.classifiers import Prior, StageClassifier
from dlsa.stage2.filter import FilterReport, FlowFilter

logger = logging.getLogger(__name__)


def fit_levels(
    spec: CascadeSpec,
    X: np.ndarray,
    y: np.ndarray,
    class_counts: np.ndarray,
    seed: np.random.SeedSequence,
    donor: Cascade | None = None,
) -> Cascade:
    """Fit filters, cluster-aided classifiers, the regular and the fallback classifier
    on features X (N, D) and class indices y (N,); every stage enabled.

    Args:
        spec: the configuration.
        X: (N, D) float32 features.
        y: (N,) class indices ``0 .. C-1``.
        class_counts: (C,) the model's class counts (which decide head and tail in the
            routing reports, also when fitting on a part of the data).
        seed: the cascade's seed.
        donor: a cascade fitted on the same data and filter config (:func:`check_donor`)
            whose filters (and base, if the same) are reused; its first filter is
            rerouted to ``spec.routed_share``, a later one reused only at the same share.
    """
    # The fallback's seed does not depend on depth, so it equals the depth=0 model.
    # A fresh copy: SeedSequence.spawn is stateful and this runs twice with the safeguard.
    seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
    fallback_seed, levels_seed = seed.spawn(2)
    gens = [torch_generator(s) for s in levels_seed.spawn(2 * spec.depth + 1)]
    gens.append(torch_generator(fallback_seed))
    device = resolve_device(spec.device)
    full = _TrainingSet.of(X, y, len(class_counts), class_counts, device, spec.features_on)
    plan = Blueprint.of(spec, X.shape[1], len(class_counts))
    cascade = Cascade(spec, X.shape[1], np.asarray(class_counts))
    if donor is not None and same_base(donor, spec.base, spec.head):
        # same data, seed, method and head config: the same model; tau set post hoc
        cascade.fallback = copy.deepcopy(donor.fallback)
        spec.base.posthoc(cascade.fallback)
    else:
        fallback = plan.fallback(gens[-1])
        cascade.fallback = _train_stage(cascade, fallback, full.x, None, full.y, gens[-1], "base")
    x, yl = full.x, full.y
    for level in range(spec.depth):
        reused = None
        if donor is not None and level < len(donor.filters):
            if level == 0 or donor.spec.routed_share == spec.routed_share:
                reused = (donor.filters[level], donor.reports[level], donor.spec.routed_share)
        gen_pair = gens[2 * level : 2 * level + 2]
        x, yl = _fit_level(cascade, plan, level, x, yl, full, gen_pair, reused)
    cascade.regular = _fit_regular(cascade, plan, x, yl, full.counts, gens[-2])
    cascade.stage_enabled = [True] * (spec.depth + 1)
    return cascade


def _fit_regular(
    cascade: Cascade,
    plan: Blueprint,
    x: Rows,
    y: Tensor,
    all_counts: Tensor,
    gen: torch.Generator,
) -> StageClassifier:
    """The regular classifier of the samples x (N, D), y (N,) that no filter took: the
    fallback with ``regular_data="all"`` or no filter, else one trained on them (on
    ``[x, z]`` and the cluster prior of the last filter when cluster-aided), whose
    loss takes ``all_counts`` (C,) as the class counts with
    ``regular_prior="global"``."""
    spec = cascade.spec
    if plan.fallback_is_regular:
        assert cascade.fallback is not None
        return cascade.fallback
    inputs, prior = x, None
    if plan.regular_is_cluster_aided:
        inputs, prior = cascade.last_filter_inputs(x)
    counts = all_counts if spec.regular_prior == "global" else None
    model = plan.regular(gen)
    return _train_stage(cascade, model, inputs, prior, y, gen, "regular", prior_counts=counts)


def _fit_level(
    cascade: Cascade,
    plan: Blueprint,
    level: int,
    x: Rows,
    y: Tensor,
    full: _TrainingSet,
    gens: list[torch.Generator],
    reused: tuple[FlowFilter, dict[str, Any], float] | None = None,
) -> tuple[Rows, Tensor]:
    """Fit filter ``level`` on the level's samples x (N, D), y (N,) and its
    cluster-aided classifier (built by ``plan``); append them to ``cascade``; return the
    samples that go on.

    ``full`` is all the data the cascade is fitted on (its class counts are the class
    prior of ``stage_prior="global"``; its samples make the cluster prior with
    ``cluster_prior_data="all"``). ``reused``: a donor's fitted filter of this level, its
    level report and the share it routes (rerouted here to ``spec.routed_share``)."""
    spec = cascade.spec
    share = spec.routed_share
    if reused is None:
        flt = plan.flow_filter(gens[0]).to(x.device)
        logger.info("level %d: flow filter on %d samples", level + 1, x.shape[0])
        report = flt.fit(x, y, generator=gens[0], share=share, progress=spec.verbose)
    else:
        flt, donor_report, donor_share = reused
        report = FilterReport(**donor_report["filter"])
        if report.n_samples != x.shape[0]:
            raise DLSAInputError(
                f"reuse_filters: level {level + 1} has {x.shape[0]} samples here but "
                f"{report.n_samples} in the donor model; fit it on the same data"
            )
        if donor_share != share:
            flt = flt.rerouted(share, x)
            report.threshold = float(flt.threshold)
    flt = _with_cluster_prior(spec, flt, x, y, full, fresh=reused is None)
    out = flt.transform(x)
    mask = flt.route(out.log_prob)
    train = mask | _coverage_samples(y, mask, gens[1]) if spec.cover_classes else mask
    inputs = cascade.cluster_inputs(x[train], out.z[train])
    prior = flt.cluster_prior(out.cluster[train])
    assert cascade.fallback is not None
    head = _train_stage(
        cascade,
        plan.head(gens[1], cascade.fallback),  # drawn after the coverage samples
        inputs,
        prior,
        y[train],
        gens[1],
        f"cluster-aided {level + 1}",
        prior_counts=full.counts if spec.stage_prior == "global" else None,
    )
    cascade.filters.append(flt)
    cascade.heads.append(head)
    cascade.reports.append(_level_report(report, y, mask, full.is_tail))
    return x[~mask], y[~mask]


def _with_cluster_prior(
    spec: CascadeSpec, flt: FlowFilter, x: Rows, y: Tensor, full: _TrainingSet, *, fresh: bool
) -> FlowFilter:
    """``flt`` with a cluster prior counted on the samples ``cluster_prior_data`` names:
    the level's x (N, D), y (N,) (what :meth:`FlowFilter.fit` counts) or all of
    ``full``. A reused (not ``fresh``) filter belongs to its donor and is copied before
    its counts change."""
    if fresh and spec.cluster_prior_data == "level":
        return flt
    xs, ys = (full.x, full.y) if spec.cluster_prior_data == "all" else (x, y)
    counts = flt.class_histogram(xs, ys)
    if torch.equal(counts, flt.cluster_counts):
        return flt
    if not fresh:
        flt = copy.deepcopy(flt)
    flt.cluster_counts.copy_(counts)
    return flt


def _train_stage(
    cascade: Cascade,
    model: StageClassifier,
    inputs: Rows,
    prior: Prior | None,
    y: Tensor,
    generator: torch.Generator,
    desc: str,
    prior_counts: Tensor | None = None,
) -> StageClassifier:
    """Train the untrained stage classifier ``model`` (moved to the device of the
    inputs) on inputs (N, W), the cluster prior (N, C) if it takes one, and classes y
    (N,). The base method's losses and post-hoc corrections use ``prior_counts`` (C,) as
    the class counts if given, else the counts of ``y``."""
    spec, n_classes = cascade.spec, cascade.n_classes
    model = model.to(inputs.device)
    counts = torch.bincount(y, minlength=n_classes).to(inputs.dtype)
    data = StageData(inputs, y, counts if prior_counts is None else prior_counts, prior)
    spec.base.fit(model, data, spec.head, generator, progress=spec.verbose, desc=desc)
    if spec.mask_unseen:
        model.set_seen_classes(counts)
    return model


@dataclasses.dataclass(frozen=True)
class _TrainingSet:
    """All the data one cascade is fitted on, as tensors.

    Attributes:
        x: (N, D) features, on the device or in host memory (:class:`HostRows`).
        y: (N,) int64 class indices.
        counts: (C,) samples per class (float, the dtype of x).
        is_tail: (C,) True for the classes counted as tail in the routing reports.
    """

    x: Rows
    y: Tensor
    counts: Tensor
    is_tail: Tensor

    @classmethod
    def of(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        class_counts: np.ndarray,
        device: torch.device,
        features_on: str = "device",
    ) -> _TrainingSet:
        """From features X (N, D), encoded labels y (N,) and the model's class counts
        (C,) (which decide head and tail, also when fitting on a part of the data);
        ``features_on`` as :attr:`dlsa.config.DLSAConfig.features_on`."""
        host = features_on == "host" or (
            features_on == "auto" and not fits_on_device(X.nbytes, device)
        )
        if host:
            logger.info("training features (%.1f GB) stay in host memory", X.nbytes / 1e9)
        x_all: Rows = torch.from_numpy(X)
        x_all = HostRows(x_all, device) if host else x_all.to(device)
        y_all = torch.from_numpy(y.astype(np.int64)).to(device)
        counts = torch.bincount(y_all, minlength=n_classes).to(x_all.dtype)
        is_tail = torch.from_numpy(class_counts <= HEAD_THRESHOLD).to(device)
        return cls(x_all, y_all, counts, is_tail)


def _coverage_samples(y: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """Mask (N,) of up to ``r = max(1, n_routed // C)`` randomly chosen non-routed samples
    of each class, for a cluster-aided classifier to see every class of its level.

    Args:
        y: (N,) classes of the level's samples.
        mask: (N,) True for the samples the filter routed.
        generator: draws which samples are taken.
    """
    n_classes = int(y.max()) + 1
    r = max(1, int(mask.sum()) // n_classes)
    extra = torch.zeros_like(mask)
    scores = rng.rand(y.numel(), generator, y.device)
    idx = torch.nonzero(~mask).flatten()
    idx = idx[torch.argsort(scores[idx])]  # by score, then (stably) by class:
    idx = idx[torch.argsort(y[idx], stable=True)]  # each class's lowest scores first
    cls = y[idx]
    rank = torch.arange(idx.numel(), device=y.device) - torch.searchsorted(cls, cls)
    extra[idx[rank < r]] = True  # the r lowest-scored of each class (all, if fewer)
    return extra


def _level_report(
    report: FilterReport, y: Tensor, mask: Tensor, is_tail: Tensor
) -> dict[str, Any]:
    """The level's diagnostics: its filter's training report and the head-tail
    separation of its training samples y (N,) routed by ``mask`` (N,), tail classes
    ``is_tail`` (C,) (:func:`dlsa.metrics.separation_from_counts`, the one formula)."""
    tail = is_tail[y]
    sep = separation_from_counts(
        int(mask.sum()), int(tail[mask].sum()), int(y.numel()), int(tail.sum())
    )
    keys = ("n_input", "n_routed", "tail_share_input", "tail_share_routed")
    return {"filter": dataclasses.asdict(report), **{k: sep[k] for k in keys}}


def check_donor(
    donor: Cascade | None, spec: CascadeSpec, n_features: int, class_counts: np.ndarray
) -> Cascade | None:
    """Validate a cascade whose filters a cascade of ``spec`` will reuse: same data, same
    filter config (the routed share is the level's, not the filter's: the first filter is
    rerouted to ``spec.routed_share``). Levels the donor lacks are trained; a level past
    the first is reused only with the same routed share (its samples depend on the level
    above)."""
    if donor is None:
        return None
    same = (
        donor.n_features == n_features
        and np.array_equal(donor.class_counts, class_counts)
        and donor.spec.flow_filter == spec.flow_filter
    )
    if not same:
        raise DLSAInputError(
            "reuse_filters: the donor model was fitted on other data or with another "
            "flow_filter config"
        )
    return donor


def same_base(donor: Cascade, base: BaseMethod, head_cfg: Any) -> bool:
    """Whether ``donor``'s base model is the one ``base`` would train with ``head_cfg``
    (equal up to post-hoc hyper-parameters)."""
    if type(donor.base) is not type(base) or donor.spec.head != head_cfg:
        return False
    return base.served_by(donor.base)
