"""Fitting the cascade: flow filter, cluster-aided classifier and routing of each level,
then the regular classifier and the fallback (the base method on all data).

Each level's threshold is fixed on the training samples that reach it; the samples it
does not route go on to the next level. :class:`CascadeFitting` is a mixin of
:class:`dlsa.cascade.DLSAClassifier`; it reads the estimator's parameters and sets its
fitted attributes ``filters_``, ``heads_``, ``regular_``, ``fallback_``, ``reports_``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from dlsa import rng
from dlsa.bases import BaseMethod, StageData
from dlsa.cascade.cluster_aided import ClusterAided
from dlsa.classifiers import Prior, StageClassifier
from dlsa.config import FilterConfig, HeadConfig
from dlsa.devices import resolve_device
from dlsa.errors import DLSAInputError
from dlsa.filter import FilterReport, FlowFilter
from dlsa.metrics import HEAD_THRESHOLD
from dlsa.rows import HostRows, Rows, fits_on_device
from dlsa.training import torch_generator

if TYPE_CHECKING:
    from dlsa.cascade.estimator import DLSAClassifier

logger = logging.getLogger(__name__)


class CascadeFitting(ClusterAided):
    """The fitting half of the estimator (a mixin; see the module docstring)."""

    depth: int
    device: str
    verbose: bool
    regular_data: str
    regular_prior: str
    regular_cluster_aided: bool
    cluster_prior_data: str
    classifier_layout: str
    mask_unseen: bool
    cover_classes: bool
    residual: bool
    stage_prior: str
    classes_: np.ndarray
    class_counts_: np.ndarray

    def _fit_cascade(
        self,
        X: np.ndarray,
        y_enc: np.ndarray,
        seed: np.random.SeedSequence,
        flt_cfg: FilterConfig,
        head_cfg: HeadConfig,
        donor: DLSAClassifier | None,
    ) -> None:
        """Fit filters, cluster-aided classifiers, the regular and the fallback classifier."""
        # The fallback's seed does not depend on depth, so it equals the depth=0 model.
        # A fresh copy: SeedSequence.spawn is stateful and this runs twice with the safeguard.
        seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
        fallback_seed, levels_seed = seed.spawn(2)
        gens = [torch_generator(s) for s in levels_seed.spawn(2 * self.depth + 1)]
        gens.append(torch_generator(fallback_seed))
        device = resolve_device(self.device)
        full = _TrainingSet.of(
            X, y_enc, len(self.classes_), self.class_counts_, device, self.features_on
        )
        self.filters_ = nn.ModuleList()
        self.heads_ = nn.ModuleList()
        self.reports_: list[dict[str, Any]] = []
        base = self.base_
        if donor is not None and same_base(donor, base, head_cfg):
            # same data, seed, method and head config: the same model; tau set post hoc
            self.fallback_ = copy.deepcopy(donor.fallback_)
            base.posthoc(self.fallback_)
        else:
            self.fallback_ = self._fit_stage(
                base, full.x, None, full.y, head_cfg, gens[-1], "base"
            )
        x, yl = full.x, full.y
        for level in range(self.depth):
            reused = None
            if donor is not None and level < len(donor.filters_):
                same_share = donor.filters_[level].config.proportion == flt_cfg.proportion
                if level == 0 or same_share:
                    reused = (donor.filters_[level], donor.reports_[level])
            x, yl = self._fit_level(
                level, x, yl, full, flt_cfg, head_cfg, gens[2 * level : 2 * level + 2], reused
            )
        self.regular_ = self._fit_regular(x, yl, full.counts, head_cfg, gens[-2])

    def _fit_regular(
        self, x: Rows, y: Tensor, all_counts: Tensor, head_cfg: HeadConfig, gen: torch.Generator
    ) -> StageClassifier:
        """The regular classifier of the samples x (N, D), y (N,) that no filter took: the
        fallback with ``regular_data="all"`` or no filter, else one trained on them (on
        ``[x, z]`` and the cluster prior of the last filter when cluster-aided), whose
        loss takes ``all_counts`` (C,) as the class counts with
        ``regular_prior="global"``."""
        if self.depth == 0 or self.regular_data == "all":
            return self.fallback_
        inputs, prior = x, None
        if self._regular_is_cluster_aided():
            inputs, prior = self._last_filter_inputs(x)
        counts = all_counts if self.regular_prior == "global" else None
        return self._fit_stage(
            self.base_,
            inputs,
            prior,
            y,
            head_cfg,
            gen,
            "regular",
            prior_counts=counts,
            twin=self._twin_heads,
        )

    def _regular_is_cluster_aided(self) -> bool:
        """Whether the regular classifier is cluster-aided: ``regular_cluster_aided``,
        trained on the remaining samples, with at least one filter."""
        applies = self.regular_data == "remaining" and len(self.filters_) >= 1
        return bool(self.regular_cluster_aided) and applies

    def _fit_level(
        self,
        level: int,
        x: Rows,
        y: Tensor,
        full: _TrainingSet,
        flt_cfg: FilterConfig,
        head_cfg: HeadConfig,
        gens: list[torch.Generator],
        reused: tuple[FlowFilter, dict[str, Any]] | None = None,
    ) -> tuple[Rows, Tensor]:
        """Fit filter ``level`` on the level's samples x (N, D), y (N,) and its
        cluster-aided classifier; return the samples that go on.

        ``full`` is all the data the cascade is fitted on (its class counts are the
        class prior of ``stage_prior="global"``; its samples make the cluster prior with
        ``cluster_prior_data="all"``)."""
        n_classes = len(self.classes_)
        if reused is None:
            flt = FlowFilter(x.shape[1], n_classes, flt_cfg, generator=gens[0]).to(x.device)
            logger.info("level %d: flow filter on %d samples", level + 1, x.shape[0])
            report = flt.fit(x, y, generator=gens[0], progress=self.verbose)
        else:
            flt = reused[0]
            report = FilterReport(**reused[1]["filter"])
            if report.n_samples != x.shape[0]:
                raise DLSAInputError(
                    f"reuse_filters: level {level + 1} has {x.shape[0]} samples here but "
                    f"{report.n_samples} in the donor model; fit it on the same data"
                )
            if flt.config.proportion != flt_cfg.proportion:
                flt = flt.with_proportion(flt_cfg, x)
                report.threshold = float(flt.threshold)
        flt = self._with_cluster_prior(flt, x, y, full, fresh=reused is None)
        out = flt.transform(x)
        mask = flt.route(out.log_prob)
        train = mask | _coverage_samples(y, mask, gens[1]) if self.cover_classes else mask
        inputs = self._cluster_inputs(x[train], out.z[train])
        prior = flt.cluster_prior(out.cluster[train])
        head = self._fit_stage(
            self.base_,
            inputs,
            prior,
            y[train],
            head_cfg,
            gens[1],
            f"cluster-aided {level + 1}",
            offset=self.fallback_ if self.residual else None,
            prior_counts=full.counts if self.stage_prior == "global" else None,
            twin=self._twin_heads,
        )
        self.filters_.append(flt)
        self.heads_.append(head)
        self.reports_.append(_level_report(report, y, mask, full.is_tail))
        return x[~mask], y[~mask]

    def _with_cluster_prior(
        self, flt: FlowFilter, x: Rows, y: Tensor, full: _TrainingSet, *, fresh: bool
    ) -> FlowFilter:
        """``flt`` with a cluster prior counted on the samples ``cluster_prior_data``
        names: the level's x (N, D), y (N,) (what :meth:`FlowFilter.fit` counts) or all
        of ``full``. A reused (not ``fresh``) filter belongs to its donor model and is
        copied before its counts change."""
        if fresh and self.cluster_prior_data == "level":
            return flt
        xs, ys = (full.x, full.y) if self.cluster_prior_data == "all" else (x, y)
        counts = flt.class_histogram(xs, ys)
        if torch.equal(counts, flt.cluster_counts):
            return flt
        if not fresh:
            flt = copy.deepcopy(flt)
        flt.cluster_counts.copy_(counts)
        return flt

    def _fit_stage(
        self,
        base: BaseMethod,
        inputs: Rows,
        prior: Prior | None,
        y: Tensor,
        head_cfg: HeadConfig,
        generator: torch.Generator,
        desc: str,
        offset: StageClassifier | None = None,
        prior_counts: Tensor | None = None,
        twin: bool = False,
    ) -> StageClassifier:
        """Build and train one stage classifier; with ``offset``, a residual one that
        starts as ``offset`` (see :meth:`StageClassifier.make_residual`); with ``twin``,
        the release's two summed maps. The base method's losses and post-hoc
        corrections use ``prior_counts`` (C,) as the class counts if given, else the
        counts of ``y``."""
        n_classes = len(self.classes_)
        model = base.build(
            inputs.shape[1],
            n_classes,
            use_prior=prior is not None,
            generator=generator,
            twin=twin,
        ).to(inputs.device)
        if offset is not None:
            model.make_residual(offset)
        counts = torch.bincount(y, minlength=n_classes).to(inputs.dtype)
        data = StageData(inputs, y, counts if prior_counts is None else prior_counts, prior)
        base.fit(model, data, head_cfg, generator, progress=self.verbose, desc=desc)
        if self.mask_unseen:
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
    tail = is_tail[y]
    routed = int(mask.sum())
    return {
        "filter": dataclasses.asdict(report),
        "n_input": int(y.numel()),
        "n_routed": routed,
        "tail_share_input": float(tail.float().mean()),
        "tail_share_routed": float(tail[mask].float().mean()) if routed else None,
    }


def check_donor(
    donor: DLSAClassifier | None, clf: DLSAClassifier, n_features: int, flt_cfg: FilterConfig
) -> DLSAClassifier | None:
    """Validate a model whose filters ``clf`` will reuse: same data, same filter config up
    to the routed share. Levels the donor lacks are trained; a level past the first is
    reused only with the same routed share (its samples depend on the level above)."""
    if donor is None:
        return None
    check_is_fitted(donor, "regular_")
    donor_flt = donor.fitted_params_["flow_filter"]
    same = (
        donor.n_features_in_ == n_features
        and np.array_equal(donor.classes_, clf.classes_)
        and np.array_equal(donor.class_counts_, clf.class_counts_)
        and dataclasses.replace(donor_flt, proportion=flt_cfg.proportion) == flt_cfg
    )
    if not same:
        raise DLSAInputError(
            "reuse_filters: the donor model was fitted on other data or with another "
            "flow_filter config"
        )
    return donor


def same_base(donor: DLSAClassifier, base: BaseMethod, head_cfg: HeadConfig) -> bool:
    """Whether ``donor``'s base model is the one ``base`` would train with ``head_cfg``
    (equal up to post-hoc hyper-parameters)."""
    if type(donor.base_) is not type(base) or donor.fitted_params_["head"] != head_cfg:
        return False

    def fixed(method: BaseMethod) -> dict[str, Any]:
        return {
            k: v for k, v in dataclasses.asdict(method).items() if k not in base.posthoc_params
        }

    return fixed(donor.base_) == fixed(base)
