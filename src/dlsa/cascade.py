"""``DLSAClassifier``: the cascade of flow filters and classifiers, as an estimator.

::

    x -> Filter 1 --(top 30% log p(x))--> Cluster-aided Classifier 1
           | rest
           v
         Filter 2 --(top 30%)--> Cluster-aided Classifier 2
           | rest
           v
         Filter 3 --(top 30%)--> Cluster-aided Classifier 3
           | rest
           v
         Regular Classifier (the base method alone; cluster-aided on the last
                             filter's [z, prior] with ``regular_cluster_aided``)

Each level's threshold is fixed on the training samples that reach it; a new sample
follows the same route. With ``depth=0`` the estimator is the base method alone, which
is how the CLI reports "base" beside "base + DLSA".

This is the only module that knows the stage order. It does no file IO except
:meth:`DLSAClassifier.save` / :meth:`DLSAClassifier.load`, which write and read
safetensors + JSON and never execute code on load.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022. https://arxiv.org/abs/2207.02173
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from dlsa import rng
from dlsa.atomic import atomic_dir
from dlsa.bases import BaseMethod, StageData, base_params, make_base
from dlsa.classifiers import StageClassifier
from dlsa.config import (
    DLSAConfig,
    FilterConfig,
    HeadConfig,
    SelectionConfig,
    auto_components,
    from_dict,
    to_dict,
)
from dlsa.data import stratified_folds, stratified_split
from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.features import check_features
from dlsa.filter import FilterOutput, FilterReport, FlowFilter
from dlsa.integrity import checksums, read_tensors, verify_checksums
from dlsa.metrics import HEAD_THRESHOLD
from dlsa.training import torch_generator

logger = logging.getLogger(__name__)

FORMAT = "dlsa-model"
FORMAT_VERSION = 1
DEFAULT = DLSAConfig()
"""The default configuration; the estimator's defaults are its fields."""
TENSOR_FILE = "model.safetensors"
"""The one tensor file of a model folder (its SHA-256 is kept in ``model.json``)."""
SCORE_CHUNK = 65536
"""Rows scored at once by ``predict`` / ``route``: bounds the device memory of inference."""


class DLSAClassifier(ClassifierMixin, BaseEstimator):
    """Dynamic Label Space Adjustment on frozen features.

    Args:
        depth: number of flow filters (0: the base method alone).
        base: stage-2 base method, a key of :data:`dlsa.bases.BASES`.
        base_params: hyper-parameters of the base method.
        flow_filter: configuration of every flow filter (default :class:`FilterConfig`).
        head: training of every classifier (default :class:`HeadConfig`).
        regular_data, regular_prior, regular_cluster_aided, cluster_prior_data,
            stack_base, cover_classes, residual, stage_prior, validation_fraction,
            validation_folds: see :class:`dlsa.config.DLSAConfig`.
        random_state: seed; each stage gets a child seed of it.
        device: torch device.
        verbose: progress bars and per-epoch logs.

    Fitted attributes:
        classes_: (C,) the labels, in the column order of :meth:`predict_proba`.
        n_features_in_: D.
        class_counts_: (C,) training samples per class.
        filters_: the fitted :class:`FlowFilter` of each level.
        heads_: the cluster-aided :class:`StageClassifier` of each level.
        regular_: the regular :class:`StageClassifier` (with ``regular_cluster_aided``, a
            cluster-aided one on ``[x, z]`` and the cluster prior of the last filter).
        base_: the resolved base method.
        reports_: per level, a dict of training diagnostics.

    Example:
        >>> from dlsa.synthetic import make_long_tailed_features
        >>> from dlsa.config import FilterConfig, MixtureConfig, HeadConfig
        >>> d = make_long_tailed_features(
        ...     n_classes=6, n_features=4, n_max=100, imbalance=20, seed=0)
        >>> clf = DLSAClassifier(depth=1, head=HeadConfig(epochs=2),
        ...     flow_filter=FilterConfig(mixture=MixtureConfig(8), epochs=2, batch_size=64))
        >>> clf.fit(d.X_train, d.y_train).predict(d.X_test[:3]).shape
        (3,)
    """

    def __init__(
        self,
        *,
        depth: int = DEFAULT.depth,
        base: str = DEFAULT.base,
        base_params: Mapping[str, Any] | None = None,
        flow_filter: FilterConfig | None = None,
        head: HeadConfig | None = None,
        selection: SelectionConfig | None = DEFAULT.selection,
        regular_data: str = DEFAULT.regular_data,
        regular_prior: str = DEFAULT.regular_prior,
        regular_cluster_aided: bool = DEFAULT.regular_cluster_aided,
        cluster_prior_data: str = DEFAULT.cluster_prior_data,
        stack_base: bool = DEFAULT.stack_base,
        cover_classes: bool = DEFAULT.cover_classes,
        residual: bool = DEFAULT.residual,
        stage_prior: str = DEFAULT.stage_prior,
        validation_fraction: float = DEFAULT.validation_fraction,
        validation_folds: int = DEFAULT.validation_folds,
        random_state: int | None = DEFAULT.random_state,
        device: str = DEFAULT.device,
        verbose: bool = DEFAULT.verbose,
    ) -> None:
        self.depth = depth
        self.base = base
        self.base_params = base_params
        self.flow_filter = flow_filter
        self.head = head
        self.selection = selection
        self.regular_data = regular_data
        self.regular_prior = regular_prior
        self.regular_cluster_aided = regular_cluster_aided
        self.cluster_prior_data = cluster_prior_data
        self.stack_base = stack_base
        self.cover_classes = cover_classes
        self.residual = residual
        self.stage_prior = stage_prior
        self.validation_fraction = validation_fraction
        self.validation_folds = validation_folds
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _selection(self) -> SelectionConfig | None:
        """The selection config, checked."""
        sel = self.selection
        if sel is not None and not isinstance(sel, SelectionConfig):
            raise DLSAInputError(f"selection must be a SelectionConfig or None, got {sel!r}")
        if sel is None and self.base == "auto":
            raise DLSAInputError('base="auto" needs a selection config (selection=None given)')
        return sel

    def _resolved(self) -> tuple[FilterConfig, HeadConfig, BaseMethod]:
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 0:
            raise DLSAInputError(f"depth must be an int >= 0, got {self.depth!r}")
        flt = DEFAULT.flow_filter if self.flow_filter is None else self.flow_filter
        head = DEFAULT.head if self.head is None else self.head
        if not isinstance(flt, FilterConfig):
            raise DLSAInputError(f"flow_filter must be a FilterConfig, got {type(flt).__name__}")
        if not isinstance(head, HeadConfig):
            raise DLSAInputError(f"head must be a HeadConfig, got {type(head).__name__}")
        if not 0.0 < flt.proportion < 1.0:
            raise DLSAInputError(f"flow_filter.proportion must be in (0, 1), got {flt.proportion}")
        _check_choice("stage_prior", self.stage_prior, ("routed", "global"))
        _check_choice("regular_data", self.regular_data, ("remaining", "all"))
        _check_choice("regular_prior", self.regular_prior, ("reaching", "global"))
        _check_choice("cluster_prior_data", self.cluster_prior_data, ("level", "all"))
        if not 0.0 <= self.validation_fraction < 0.5:
            raise DLSAInputError(
                f"validation_fraction must be in [0, 0.5), got {self.validation_fraction!r}"
            )
        if (
            not isinstance(self.validation_folds, int)
            or isinstance(self.validation_folds, bool)
            or self.validation_folds < 0
            or self.validation_folds == 1
        ):
            raise DLSAInputError(
                f"validation_folds must be 0 (off) or an int >= 2, got {self.validation_folds!r}"
            )
        if self.random_state is not None and not isinstance(self.random_state, int):
            raise DLSAInputError(f"random_state must be an int or None, got {self.random_state!r}")
        self._selection()
        if self.base == "auto":
            return flt, head, make_base("balsoftmax")  # placeholder until selection
        return flt, head, make_base(self.base, self.base_params)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        reuse_filters: DLSAClassifier | None = None,
        min_class_samples: int = 2,
    ) -> DLSAClassifier:
        """Fit the cascade on features X (N, D) and labels y (N,).

        With ``validation_fraction > 0`` (and ``depth > 0``) a stratified validation
        split is first held out: the cascade is fitted on the rest, and every stage
        whose classifier is less accurate on the validation samples it handles than the
        base method trained on the same data falls back to the base method (the
        safeguard). With ``validation_folds >= 2`` the decision instead pools the
        held-out predictions of that many cascades, each fitted without one stratified
        fold, so every training sample is used for validation once. Accuracies are
        class-balanced (each validation class weighs the same), because long-tail
        benchmarks test on balanced sets. The cascade is then refitted on all the data
        with those decisions.

        Args:
            X: features (N, D).
            y: labels (N,).
            reuse_filters: a model fitted on the same X, y with the same ``flow_filter``
                config and ``random_state``, whose flow filters are reused instead of
                trained again (the paper trains the filters once and shares them across
                base methods). Not used for the validation run of the safeguard.
            min_class_samples: fewest training samples a class may have (2: the
                safeguard and the selection hold samples out of every class). The fold
                models of the selection, which hold nothing out, pass 1: a class of two
                samples has one left in some folds.

        Raises:
            ValueError: on invalid features/labels, a class with too few samples, a
                level with fewer samples than clusters, or a bad hyper-parameter (mostly
                :class:`dlsa.errors.DLSAInputError`).
            FloatingPointError: if a filter or classifier diverges in training (lower
                its learning rate, or scale features of huge magnitude).
        """
        flt_cfg, head_cfg, base = self._resolved()
        X, y_raw = check_features(X, y, source="X")
        assert y_raw is not None
        if self.depth > 0 and X.shape[1] < 2:
            raise DLSAInputError(
                f"X has {X.shape[1]} feature; the flow filters (depth={self.depth}) need "
                "at least 2 (use depth=0)"
            )
        self.classes_, y_enc = np.unique(y_raw, return_inverse=True)
        counts = np.bincount(y_enc, minlength=len(self.classes_))
        _check_class_counts(self.classes_, counts, min_class_samples)
        if flt_cfg.mixture.n_components is None:
            k = auto_components(len(self.classes_), len(y_enc))
            flt_cfg = dataclasses.replace(
                flt_cfg, mixture=dataclasses.replace(flt_cfg.mixture, n_components=k)
            )
        params = self.get_params() | {"flow_filter": flt_cfg, "head": head_cfg}
        if self._selection() is not None:
            return self._fit_selected(X, y_enc, params)
        self.fitted_params_ = params | {"base_params": base_params(base)}
        self.selection_: dict[str, Any] | None = None
        self.n_features_in_ = X.shape[1]
        self.class_counts_ = counts
        self.base_ = base
        root = np.random.SeedSequence(self.random_state)
        split_seed, cascade_seed = root.spawn(2)
        self.validation_: dict[str, Any] | None = None
        enabled = [True] * (self.depth + 1)
        if (self.validation_fraction > 0 or self.validation_folds >= 2) and self.depth > 0:
            enabled = self._validate(X, y_enc, split_seed, cascade_seed, flt_cfg, head_cfg)
        donor = _check_donor(reuse_filters, self, X.shape[1], flt_cfg)
        self._fit_cascade(X, y_enc, cascade_seed, flt_cfg, head_cfg, donor)
        self.stage_enabled_ = enabled
        return self

    def _fit_selected(
        self, X: np.ndarray, y_enc: np.ndarray, params: dict[str, Any]
    ) -> DLSAClassifier:
        """Choose the concrete configuration on out-of-fold predictions
        (:func:`dlsa.selection.select`), then fit it on all the data."""
        from dlsa.selection import select

        start = time.perf_counter()
        chosen, evidence = select(
            params | {"selection": self._selection(), "verbose": False},
            X,
            y_enc,
            len(self.classes_),
        )
        classes = self.classes_
        fitted = DLSAClassifier(**(chosen | {"verbose": self.verbose})).fit(X, y_enc)
        for key, value in vars(fitted).items():
            if key.endswith("_") and not key.startswith("_"):
                setattr(self, key, value)
        self.classes_ = classes
        evidence["seconds_final_fit"] = time.perf_counter() - start - evidence["seconds"]
        self.selection_ = evidence
        return self

    def _validation_splits(
        self, y: np.ndarray, split_seed: np.random.SeedSequence
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(fit, validation) index pairs of the safeguard: one stratified split of
        ``validation_fraction``, or the folds of ``validation_folds``."""
        seed = int(split_seed.generate_state(1)[0])
        if self.validation_folds >= 2:
            folds = stratified_folds(y, self.validation_folds, seed=seed)
            every = np.arange(len(y))
            return [(np.setdiff1d(every, f, assume_unique=True), f) for f in folds]
        return [stratified_split(y, self.validation_fraction, seed=seed, min_per_class=2)]

    def _validate(
        self,
        X: np.ndarray,
        y: np.ndarray,
        split_seed: np.random.SeedSequence,
        cascade_seed: np.random.SeedSequence,
        flt_cfg: FilterConfig,
        head_cfg: HeadConfig,
    ) -> list[bool]:
        """Fit on train parts, decide on the held-out samples which stages to keep.

        With folds, every training sample is held out once: its stage and logits come
        from the cascade fitted without its fold, and the decision pools all folds.
        """
        device = torch.device(self.device)
        logits, stage, base_logits, target = [], [], [], []
        splits = self._validation_splits(y, split_seed)
        for fit_idx, val_idx in splits:
            logger.info(
                "safeguard: fitting on %d samples, validating on %d", len(fit_idx), len(val_idx)
            )
            self._fit_cascade(X[fit_idx], y[fit_idx], cascade_seed, flt_cfg, head_cfg, None)
            self.stage_enabled_ = [True] * (len(self.filters_) + 1)
            x_val = torch.from_numpy(X[val_idx]).to(device)
            with torch.no_grad():
                fold_logits, fold_stage = self._logits_and_stage(x_val)
                base_logits.append(self._stage_logits(self.fallback_, x_val, None))
            logits.append(fold_logits)
            stage.append(fold_stage)
            target.append(torch.from_numpy(y[val_idx]).to(device))
        rows = _stage_decisions(
            torch.cat(logits),
            torch.cat(stage),
            torch.cat(base_logits),
            torch.cat(target),
            n_classes=len(self.classes_),
            n_stages=len(self.filters_) + 1,
        )
        self.validation_ = {
            "n_fit": int(np.mean([len(f) for f, _ in splits])),
            "n_val": int(sum(len(v) for _, v in splits)),
            "n_folds": len(splits) if len(splits) > 1 else None,
            "stages": rows,
        }
        return [bool(r["kept"]) for r in rows]

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
        device = torch.device(self.device)
        full = _TrainingSet.of(X, y_enc, len(self.classes_), self.class_counts_, device)
        self.filters_ = nn.ModuleList()
        self.heads_ = nn.ModuleList()
        self.reports_: list[dict[str, Any]] = []
        base = self.base_
        if donor is not None and _same_base(donor, base, head_cfg):
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
        self, x: Tensor, y: Tensor, all_counts: Tensor, head_cfg: HeadConfig, gen: torch.Generator
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
            self.base_, inputs, prior, y, head_cfg, gen, "regular", prior_counts=counts
        )

    def _regular_is_cluster_aided(self) -> bool:
        """Whether the regular classifier is cluster-aided: ``regular_cluster_aided``,
        trained on the remaining samples, with at least one filter."""
        applies = self.regular_data == "remaining" and len(self.filters_) >= 1
        return bool(self.regular_cluster_aided) and applies

    def _fit_level(
        self,
        level: int,
        x: Tensor,
        y: Tensor,
        full: _TrainingSet,
        flt_cfg: FilterConfig,
        head_cfg: HeadConfig,
        gens: list[torch.Generator],
        reused: tuple[FlowFilter, dict[str, Any]] | None = None,
    ) -> tuple[Tensor, Tensor]:
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
        )
        self.filters_.append(flt)
        self.heads_.append(head)
        self.reports_.append(_level_report(report, y, mask, full.is_tail))
        return x[~mask], y[~mask]

    def _with_cluster_prior(
        self, flt: FlowFilter, x: Tensor, y: Tensor, full: _TrainingSet, *, fresh: bool
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
        inputs: Tensor,
        prior: Tensor | None,
        y: Tensor,
        head_cfg: HeadConfig,
        generator: torch.Generator,
        desc: str,
        offset: StageClassifier | None = None,
        prior_counts: Tensor | None = None,
    ) -> StageClassifier:
        """Build and train one stage classifier; with ``offset``, a residual one that
        starts as ``offset`` (see :meth:`StageClassifier.make_residual`). The base
        method's losses and post-hoc corrections use ``prior_counts`` (C,) as the class
        counts if given, else the counts of ``y``."""
        n_classes = len(self.classes_)
        model = base.build(
            inputs.shape[1], n_classes, use_prior=prior is not None, generator=generator
        ).to(inputs.device)
        if offset is not None:
            model.make_residual(offset)
        counts = torch.bincount(y, minlength=n_classes).to(inputs.dtype)
        data = StageData(inputs, y, counts if prior_counts is None else prior_counts, prior)
        base.fit(model, data, head_cfg, generator, progress=self.verbose, desc=desc)
        model.set_seen_classes(counts)
        return model

    def _last_filter_inputs(
        self, x: Tensor, out: FilterOutput | None = None
    ) -> tuple[Tensor, Tensor]:
        """Inputs ``[x, z]`` (N, 2D, + C with ``stack_base``) and cluster prior (N, C) of
        samples x (N, D) under the last filter, whose output on x is ``out`` if given."""
        flt = self.filters_[-1]
        out = flt.transform(x) if out is None else out
        return self._cluster_inputs(x, out.z), flt.cluster_prior(out.cluster)

    def _cluster_inputs(self, x: Tensor, z: Tensor) -> Tensor:
        """Inputs of a cluster-aided classifier: ``[x, z]`` (N, 2D), plus the base
        method's logits (N, C) when ``stack_base`` is set (unseen classes at -1e4)."""
        parts = [x, z]
        if self.stack_base:
            with torch.no_grad():
                parts.append(self._stage_logits(self.fallback_, x, None).clamp_min(-1e4))
        return torch.cat(parts, dim=1)

    def _stage_logits(
        self, model: StageClassifier, inputs: Tensor, prior: Tensor | None
    ) -> Tensor:
        """Inference logits (N, C) of one stage; classes it never saw are -inf."""
        return model.masked_logits(self.base_.logits(model, inputs, prior))

    # --------------------------------------------------------------- inference
    def _check_X(self, X: np.ndarray) -> Tensor:
        """Validated features (N, D) as a CPU tensor."""
        check_is_fitted(self, "regular_")
        X, _ = check_features(X, source="X")
        if X.shape[1] != self.n_features_in_:
            raise DLSAInputError(
                f"X has {X.shape[1]} features, but this model was fitted with "
                f"{self.n_features_in_} features"
            )
        return torch.from_numpy(X)

    def _scored(self, X: np.ndarray) -> tuple[Tensor, Tensor]:
        """Logits (N, C) and stages (N,) of X (N, D), on the CPU. The cascade runs on
        chunks of :data:`SCORE_CHUNK` rows, so the device holds one chunk at a time; each
        row is routed and scored on its own, so chunking does not change the result."""
        x = self._check_X(X)
        parts = [
            self._logits_and_stage(x[i : i + SCORE_CHUNK].to(self._device()))
            for i in range(0, x.shape[0], SCORE_CHUNK)
        ]
        return torch.cat([p[0].cpu() for p in parts]), torch.cat([p[1].cpu() for p in parts])

    def _device(self) -> torch.device:
        return self.regular_.input_mean.device

    @torch.no_grad()
    def _logits_and_stage(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (N, C) from the stage that handles each sample, and that stage (N,).

        A stage switched off by the safeguard hands its samples to the base method
        trained on all data; the stage index still says which filter routed them.
        """
        n = x.shape[0]
        logits = x.new_zeros(n, len(self.classes_))
        stage = torch.full((n,), len(self.filters_), dtype=torch.long, device=x.device)
        remaining = torch.arange(n, device=x.device)
        rest: FilterOutput | None = None  # the last filter's output on what goes on
        for level, (flt, head) in enumerate(zip(self.filters_, self.heads_, strict=True)):
            if remaining.numel() == 0:
                break
            out = flt.transform(x[remaining])
            mask = flt.route(out.log_prob)
            idx = remaining[mask]
            if idx.numel() > 0:
                if self.stage_enabled_[level]:
                    inputs = self._cluster_inputs(x[idx], out.z[mask])
                    prior = flt.cluster_prior(out.cluster[mask])
                    logits[idx] = self._stage_logits(head, inputs, prior)
                else:
                    logits[idx] = self._stage_logits(self.fallback_, x[idx], None)
                stage[idx] = level
            remaining = remaining[~mask]
            rest = FilterOutput(out.z[~mask], out.log_prob[~mask], out.cluster[~mask])
        if remaining.numel() > 0:
            logits[remaining] = self._regular_logits(x[remaining], rest)
        return logits, stage

    def _regular_logits(self, x: Tensor, out: FilterOutput | None) -> Tensor:
        """Logits (N, C) of the samples x (N, D) that no filter took, whose output under
        the last filter is ``out`` (used by a cluster-aided regular classifier)."""
        if not self.stage_enabled_[-1]:
            return self._stage_logits(self.fallback_, x, None)
        if not self.regular_.use_prior:
            return self._stage_logits(self.regular_, x, None)
        return self._stage_logits(self.regular_, *self._last_filter_inputs(x, out))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits (N, C) of the stage that handles each sample."""
        return self._scored(X)[0].numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes_``."""
        return torch.softmax(self._scored(X)[0], dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (N,), values from ``classes_``."""
        best = self._scored(X)[0].argmax(dim=1).numpy()
        return self.classes_[best]

    def route(self, X: np.ndarray) -> np.ndarray:
        """Stage of each sample (N,): ``l`` (0-based) for the cluster-aided classifier of
        level ``l``, ``len(filters_)`` for the regular classifier."""
        return self._scored(X)[1].numpy()

    def predict_proba_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_proba` (N, C) and :meth:`route` (N,) in one pass of the cascade."""
        logits, stage = self._scored(X)
        return torch.softmax(logits, dim=1).numpy(), stage.numpy()

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to the folder ``path``: tensors in
        ``model.safetensors``, everything else in ``model.json`` (with the SHA-256 of
        the tensor file, checked by :meth:`load`). The folder is written beside its
        destination and renamed into place, so a failure leaves nothing half-written."""
        check_is_fitted(self, "regular_")
        dest = Path(path)
        _check_replaceable(dest)
        with atomic_dir(dest) as tmp:
            save_file(self._state_tensors(), str(tmp / TENSOR_FILE))
            meta = self._metadata() | {"checksums": checksums(tmp, [TENSOR_FILE])}
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
        return dest

    def _modules(self) -> list[tuple[str, nn.Module]]:
        """The fitted modules by prefix; the fallback is listed only if distinct."""
        modules: list[tuple[str, nn.Module]] = [
            ("filters", self.filters_),
            ("heads", self.heads_),
            ("regular", self.regular_),
        ]
        if self.fallback_ is not self.regular_:
            modules.append(("fallback", self.fallback_))
        return modules

    def _state_tensors(self) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for prefix, module in self._modules():
            for key, value in module.state_dict().items():
                tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous()
        return tensors

    def _metadata(self) -> dict[str, Any]:
        from dlsa import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dlsa_version": __version__,
            "params": _params_to_json(self.fitted_params_),
            "classes": self.classes_.tolist(),
            "class_counts": self.class_counts_.tolist(),
            "n_features_in": int(self.n_features_in_),
            "n_levels": len(self.filters_),
            "stage_enabled": self.stage_enabled_,
            "fallback_is_regular": self.fallback_ is self.regular_,
            "reports": self.reports_,
            "validation": self.validation_,
            "selection": self.selection_,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> DLSAClassifier:
        """Read a model written by :meth:`save`. No code is executed: tensors come from
        safetensors and the rest from JSON. The model's parameters are the concrete ones
        it was fitted with (after selection); the selection evidence is in
        ``selection_``.

        Raises:
            ModelFileError: if the folder is not a dlsa model, a file is damaged (its
                SHA-256 differs from the one saved; folders saved without checksums skip
                this check), a weight is not finite, or the tensors do not match the
                metadata. The message names the file.
        """
        folder = Path(path)
        meta = _read_metadata(folder)
        verify_checksums(folder, meta.get("checksums"))
        try:
            params = _params_from_json(meta["params"])
            clf = cls(**(params | {"device": device}))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{folder / 'model.json'}: invalid model params ({err})") from err
        tensors = read_tensors(folder / TENSOR_FILE)
        try:
            clf._restore(meta, tensors, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            reason = str(err).replace("\n", " ").replace("\t", "")
            raise ModelFileError(
                f"{folder}: model.json does not match {TENSOR_FILE} ({reason[:300]})"
            ) from err
        clf.fitted_params_ = clf.get_params()
        clf.selection_ = meta.get("selection")
        return clf

    def _restore(self, meta: dict[str, Any], tensors: dict[str, Tensor], device: str) -> None:
        flt_cfg, _, base = self._resolved()
        self.classes_ = np.asarray(meta["classes"])
        self.class_counts_ = np.asarray(meta["class_counts"], dtype=np.int64)
        self.n_features_in_ = int(meta["n_features_in"])
        self.base_ = base
        self.reports_ = meta.get("reports", [])
        self.validation_ = meta.get("validation")
        self.stage_enabled_ = [bool(v) for v in meta["stage_enabled"]]
        d, c, n_levels = self.n_features_in_, len(self.classes_), int(meta["n_levels"])
        dummy = torch.Generator().manual_seed(0)
        self.filters_ = nn.ModuleList(
            FlowFilter(d, c, flt_cfg, generator=dummy) for _ in range(n_levels)
        )
        self.heads_ = nn.ModuleList(
            base.build(2 * d + c * self.stack_base, c, use_prior=True, generator=dummy)
            for _ in range(n_levels)
        )
        self.regular_ = (
            base.build(2 * d + c * self.stack_base, c, use_prior=True, generator=dummy)
            if self._regular_is_cluster_aided()
            else base.build(d, c, use_prior=False, generator=dummy)
        )
        self.fallback_ = (
            self.regular_
            if meta["fallback_is_regular"]
            else base.build(d, c, use_prior=False, generator=dummy)
        )
        for prefix, module in self._modules():
            state = {
                k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")
            }
            module.load_state_dict(state, strict=True)
            module.to(device).eval()
        if self.residual:
            for head in self.heads_:
                head.make_residual(self.fallback_, zero=False)


def _params_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Estimator parameters as JSON-ready data (configs as dicts; device and verbosity,
    which belong to the machine and not to the model, are left out)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("device", "verbose"):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[key] = value
    return out


LEGACY_PARAMS: dict[str, Any] = {
    "residual": False,
    "stage_prior": "routed",
    "validation_folds": 0,
    "selection": None,
}
"""Values of parameters that models saved before the parameter existed were fitted with."""


def _params_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_params_to_json`, checking every field against
    :class:`DLSAConfig` (unknown keys raise)."""
    fields = LEGACY_PARAMS | {k: v for k, v in data.items() if k not in ("device", "verbose")}
    config = from_dict(DLSAConfig, fields, where="model params")
    return {k: getattr(config, k) for k in fields}


@dataclasses.dataclass(frozen=True)
class _TrainingSet:
    """All the data one cascade is fitted on, as tensors.

    Attributes:
        x: (N, D) features.
        y: (N,) int64 class indices.
        counts: (C,) samples per class (float, the dtype of x).
        is_tail: (C,) True for the classes counted as tail in the routing reports.
    """

    x: Tensor
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
    ) -> _TrainingSet:
        """From features X (N, D), encoded labels y (N,) and the model's class counts
        (C,) (which decide head and tail, also when fitting on a part of the data)."""
        x_all = torch.from_numpy(X).to(device)
        y_all = torch.from_numpy(y.astype(np.int64)).to(device)
        counts = torch.bincount(y_all, minlength=n_classes).to(x_all.dtype)
        is_tail = torch.from_numpy(class_counts <= HEAD_THRESHOLD).to(device)
        return cls(x_all, y_all, counts, is_tail)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise DLSAInputError(f"{name} must be {allowed}, got {value!r}")


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
    for c in torch.unique(y[~mask]):
        idx = torch.nonzero((y == c) & ~mask).flatten()
        extra[idx[torch.argsort(scores[idx])[:r]]] = True
    return extra


def _stage_decisions(
    logits: Tensor,
    stage: Tensor,
    base_logits: Tensor,
    target: Tensor,
    *,
    n_classes: int,
    n_stages: int,
) -> list[dict[str, Any]]:
    """Per stage, class-balanced accuracy of the cascade and of the base method on the
    held-out samples (N,) the stage handles, and whether to keep the stage (ties and
    stages without samples are kept).

    Args:
        logits: (N, C) the cascade's logits.
        stage: (N,) the stage of each sample.
        base_logits: (N, C) the base method's logits.
        target: (N,) classes.
        n_classes: C.
        n_stages: number of stages (filters + 1).
    """
    # Long-tail benchmarks test on balanced sets: weigh each validation class equally.
    weight = 1.0 / torch.bincount(target, minlength=n_classes).to(logits)[target]
    rows = []
    for s in range(n_stages):
        mask = stage == s
        n = int(mask.sum())
        acc = _weighted_accuracy(logits[mask], target[mask], weight[mask]) if n else None
        acc_base = _weighted_accuracy(base_logits[mask], target[mask], weight[mask]) if n else None
        keep = acc is None or acc_base is None or acc >= acc_base
        rows.append({"stage": s, "n": n, "accuracy": acc, "base_accuracy": acc_base, "kept": keep})
    return rows


def _weighted_accuracy(logits: Tensor, target: Tensor, weight: Tensor) -> float:
    """Accuracy of logits (N, C) on targets (N,) with sample weights (N,)."""
    correct = (logits.argmax(dim=1) == target).to(weight)
    return float((weight * correct).sum() / weight.sum())


def _check_donor(
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


def _same_base(donor: DLSAClassifier, base: BaseMethod, head_cfg: HeadConfig) -> bool:
    """Whether ``donor``'s base model is the one ``base`` would train with ``head_cfg``
    (equal up to post-hoc hyper-parameters)."""
    if type(donor.base_) is not type(base) or donor.fitted_params_["head"] != head_cfg:
        return False

    def fixed(method: BaseMethod) -> dict[str, Any]:
        return {
            k: v for k, v in dataclasses.asdict(method).items() if k not in base.posthoc_params
        }

    return fixed(donor.base_) == fixed(base)


def _check_class_counts(classes: np.ndarray, counts: np.ndarray, minimum: int = 2) -> None:
    small = np.flatnonzero(counts < minimum)
    if small.size:
        shown = ", ".join(f"{classes[i].tolist()!r} ({counts[i]} sample)" for i in small[:5])
        raise DLSAInputError(
            f"{small.size} class(es) have fewer than {minimum} training samples: {shown}; "
            f"DLSA needs at least {minimum} per class (drop those classes or merge them)"
        )


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


def _check_replaceable(dest: Path) -> None:
    """Refuse to save over anything but a dlsa model folder (or an empty folder)."""
    if dest.exists() and not (dest / "model.json").is_file():
        if not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(
                f"{dest} exists and is not a dlsa model folder; not replacing it"
            )


def _read_metadata(folder: Path) -> dict[str, Any]:
    meta_path = folder / "model.json"
    if not meta_path.is_file() or not (folder / TENSOR_FILE).is_file():
        raise ModelFileError(
            f"{folder}: not a dlsa model folder (needs model.json and model.safetensors)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as err:
        raise ModelFileError(f"{meta_path}: invalid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} file "
            f"(format={meta.get('format')!r}, version={meta.get('format_version')!r})"
        )
    return meta
