"""``DLSAClassifier``: the DLSA cascade as a scikit-learn estimator.

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

With ``depth=0`` the estimator is the base method alone, which is how the CLI reports
"base" beside "base + DLSA". This module holds the parameters, their checks and ``fit``;
the jobs live beside it: :mod:`~dlsa.cascade.fitting` (the levels),
:mod:`~dlsa.cascade.cluster_aided` (the cluster-aided classifier's inputs),
:mod:`~dlsa.cascade.inference` (routing and scoring), :mod:`~dlsa.cascade.safeguard`
(stage decisions on held-out data), :mod:`dlsa.selection` (the default's out-of-fold
model selection) and :mod:`~dlsa.cascade.persistence` (save / load, no pickle).

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022. https://arxiv.org/abs/2207.02173
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning

from dlsa.bases import BaseMethod, base_params, make_base
from dlsa.cascade.fitting import CascadeFitting, check_donor
from dlsa.cascade.inference import CascadeInference
from dlsa.cascade.persistence import load_model, save_model
from dlsa.cascade.safeguard import validate
from dlsa.config import (
    DLSAConfig,
    FilterConfig,
    HeadConfig,
    SelectionConfig,
    auto_components,
    choices,
)
from dlsa.devices import resolve_device
from dlsa.errors import DLSAInputError, TrainingDivergedError
from dlsa.features import check_features

DEFAULT = DLSAConfig()
_CHOICES = (
    "features_on",
    "stage_prior",
    "regular_data",
    "regular_prior",
    "cluster_prior_data",
    "classifier_layout",
)
"""Parameters whose allowed values are the ``Literal`` of their DLSAConfig field."""
"""The default configuration; the estimator's defaults are its fields."""

logger = logging.getLogger(__name__)


class DLSAClassifier(CascadeFitting, CascadeInference, ClassifierMixin, BaseEstimator):
    """Dynamic Label Space Adjustment on frozen features.

    Args:
        depth: number of flow filters (0: the base method alone).
        base: stage-2 base method, a key of :data:`dlsa.bases.BASES`.
        base_params: hyper-parameters of the base method.
        flow_filter: configuration of every flow filter (default :class:`FilterConfig`).
        head: training of every classifier (default :class:`HeadConfig`).
        selection: the out-of-fold selection (:class:`SelectionConfig`); "default" is
            the default configuration's, None fits the configuration as given.
        regular_data, regular_prior, regular_cluster_aided, cluster_prior_data,
            classifier_layout, mask_unseen, stack_base, cover_classes, residual,
            stage_prior, validation_fraction, validation_folds: see
            :class:`dlsa.config.DLSAConfig`.
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
        selection: SelectionConfig | str | None = "default",
        regular_data: str = DEFAULT.regular_data,
        regular_prior: str = DEFAULT.regular_prior,
        regular_cluster_aided: bool = DEFAULT.regular_cluster_aided,
        cluster_prior_data: str = DEFAULT.cluster_prior_data,
        classifier_layout: str = DEFAULT.classifier_layout,
        mask_unseen: bool = DEFAULT.mask_unseen,
        stack_base: bool = DEFAULT.stack_base,
        cover_classes: bool = DEFAULT.cover_classes,
        residual: bool = DEFAULT.residual,
        stage_prior: str = DEFAULT.stage_prior,
        validation_fraction: float = DEFAULT.validation_fraction,
        validation_folds: int = DEFAULT.validation_folds,
        random_state: int | None = DEFAULT.random_state,
        device: str = DEFAULT.device,
        features_on: str = DEFAULT.features_on,
        n_jobs: int | None = DEFAULT.n_jobs,
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
        self.classifier_layout = classifier_layout
        self.mask_unseen = mask_unseen
        self.stack_base = stack_base
        self.cover_classes = cover_classes
        self.residual = residual
        self.stage_prior = stage_prior
        self.validation_fraction = validation_fraction
        self.validation_folds = validation_folds
        self.random_state = random_state
        self.device = device
        self.features_on = features_on
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _selection(self) -> SelectionConfig | None:
        """The selection config, checked."""
        sel = DEFAULT.selection if self.selection == "default" else self.selection
        if sel is not None and not isinstance(sel, SelectionConfig):
            raise DLSAInputError(
                f"selection must be a SelectionConfig, 'default' or None, got {sel!r}"
            )
        if sel is None and self.base == "auto":
            raise DLSAInputError('base="auto" needs a selection config (selection=None given)')
        return sel

    def check_params(self) -> None:
        """Check every parameter without data (what :meth:`fit` checks first).

        Raises:
            DLSAInputError: naming the first invalid parameter and its value.
        """
        self._resolved()

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
        resolve_device(self.device)  # a device that is not here: one line, before training
        _check_choice("flow_filter.precision", flt.precision, choices(FilterConfig, "precision"))
        _check_choice("head.precision", head.precision, choices(HeadConfig, "precision"))
        if self.n_jobs is not None and (not isinstance(self.n_jobs, int) or self.n_jobs == 0):
            raise DLSAInputError(f"n_jobs must be None or a non-zero int, got {self.n_jobs!r}")
        for name in _CHOICES:  # the domains declared once, by the config's Literal fields
            _check_choice(name, getattr(self, name), choices(DLSAConfig, name))
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
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        reuse_filters: DLSAClassifier | None = None,
        min_class_samples: int = 1,
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

        With a validation set (``X_val``, ``y_val``: features of images the backbone
        did not train on, labels among y's) the selection and the safeguard decide on
        it instead of on held-out training samples: each candidate is fitted once on all
        of X and scored on the validation set. The model itself is fitted on X only.

        Args:
            X: features (N, D).
            y: labels (N,).
            X_val: optional validation features (M, D).
            y_val: optional validation labels (M,), each one of y's classes.
            reuse_filters: a model fitted on the same X, y with the same ``flow_filter``
                config and ``random_state``, whose flow filters are reused instead of
                trained again (the paper trains the filters once and shares them across
                base methods). Not used for the validation run of the safeguard.
            min_class_samples: fewest training samples a class may have (default 1).
                A class of one sample is learned from it; in the out-of-fold selection
                and safeguard it is missing from the fit part of the fold that holds it
                out, so every candidate misses it there alike (no candidate gains).

        Raises:
            ValueError: on invalid features/labels, a class with too few samples, a
                level with fewer samples than clusters, or a bad hyper-parameter (mostly
                :class:`dlsa.errors.DLSAInputError`).
            FloatingPointError: if a filter or classifier diverges in training (lower
                its learning rate, or scale features of huge magnitude).
        """
        flt_cfg, head_cfg, base = self._resolved()
        if y is None:
            raise DLSAInputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is raveled "
                "to shape (n_samples,)",
                DataConversionWarning,
                stacklevel=2,
            )
        X, y_raw = check_features(X, y, source="X")
        assert y_raw is not None
        if self.depth > 0 and X.shape[1] < 2 and self._selection() is None:
            raise DLSAInputError(
                f"X has {X.shape[1]} feature(s); the flow filters (depth={self.depth}) need "
                "at least 2 (use depth=0)"
            )
        self.classes_, y_enc = np.unique(y_raw, return_inverse=True)
        counts = np.bincount(y_enc, minlength=len(self.classes_))
        _check_class_counts(self.classes_, counts, min_class_samples)
        val = _encoded_validation(X_val, y_val, self.classes_, X.shape[1])
        self.test_prior_: np.ndarray | None = None  # uniform until set_test_prior
        if flt_cfg.mixture.n_components is None:
            k = auto_components(len(self.classes_), len(y_enc))
            flt_cfg = dataclasses.replace(
                flt_cfg, mixture=dataclasses.replace(flt_cfg.mixture, n_components=k)
            )
        params = self.get_params() | {"flow_filter": flt_cfg, "head": head_cfg}
        if X.shape[1] < 2:  # a flow needs 2 features: the selection only picks the base
            params["depth"] = 0
        if self._selection() is not None:
            return self._fit_selected(X, y_enc, params, min_class_samples, val)
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
            enabled, self.validation_ = validate(
                self, X, y_enc, split_seed, cascade_seed, flt_cfg, head_cfg, val
            )
        donor = check_donor(reuse_filters, self, X.shape[1], flt_cfg)
        self._fit_cascade(X, y_enc, cascade_seed, flt_cfg, head_cfg, donor)
        self.stage_enabled_ = enabled
        return self

    def _fit_selected(
        self,
        X: np.ndarray,
        y_enc: np.ndarray,
        params: dict[str, Any],
        min_class_samples: int,
        val: tuple[np.ndarray, np.ndarray] | None,
    ) -> DLSAClassifier:
        """Choose the concrete configuration on out-of-fold predictions or on ``val``
        (:func:`dlsa.selection.select`), then fit it on all the data."""
        from dlsa.selection import describe, select

        start = time.perf_counter()
        chosen, evidence = select(
            params | {"selection": self._selection(), "verbose": False},
            X,
            y_enc,
            len(self.classes_),
            val,
        )
        classes = self.classes_
        fitted = DLSAClassifier(**(chosen | {"verbose": self.verbose}))
        X_val, y_val = (None, None) if val is None else val
        try:
            fitted.fit(X, y_enc, X_val=X_val, y_val=y_val, min_class_samples=min_class_samples)
        except TrainingDivergedError as err:
            if chosen["depth"] == 0:
                raise
            # the chosen DLSA trained in every fold but diverged on all the data: keep the
            # chosen base alone, as for a candidate that diverges in the selection
            logger.warning("the chosen %s diverged on all the data: %s", evidence["chosen"], err)
            evidence["final_fit_diverged"] = str(err)
            chosen = chosen | {"depth": 0}
            evidence["chosen"] = describe(chosen)
            fitted = DLSAClassifier(**(chosen | {"verbose": self.verbose}))
            fitted.fit(X, y_enc, X_val=X_val, y_val=y_val, min_class_samples=min_class_samples)
        for key, value in vars(fitted).items():
            if key.endswith("_") and not key.startswith("_"):
                setattr(self, key, value)
        self.classes_ = classes
        evidence["seconds_final_fit"] = time.perf_counter() - start - evidence["seconds"]
        self.selection_ = evidence
        return self

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to the folder ``path``: tensors in
        ``model.safetensors``, everything else in ``model.json`` (with the SHA-256 of
        the tensor file, checked by :meth:`load`). The folder is written beside its
        destination and renamed into place, so a failure leaves nothing half-written."""
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> DLSAClassifier:
        """Read a model written by :meth:`save`. No code is executed: tensors come from
        safetensors and the rest from JSON. The model's parameters are the concrete ones
        it was fitted with (after selection); the selection evidence is in
        ``selection_``.

        Raises:
            ModelFileError: if the folder is not a dlsa model, a file is damaged, a
                weight is not finite, or the tensors do not match the metadata
                (:func:`dlsa.cascade.persistence.load_model`).
        """
        return load_model(cls, path, device)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise DLSAInputError(f"{name} must be {allowed}, got {value!r}")


def _encoded_validation(
    X_val: np.ndarray | None, y_val: np.ndarray | None, classes: np.ndarray, n_features: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation set as (features (M, D) float32, class indices (M,)), or None.

    Raises:
        DLSAInputError: if only one of the two is given, the width differs from the
            training features, or a label is not a training class.
    """
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise DLSAInputError("X_val and y_val must be given together")
    X_v, y_v = check_features(X_val, np.asarray(y_val), source="X_val")
    assert y_v is not None
    if X_v.shape[1] != n_features:
        raise DLSAInputError(
            f"X_val has {X_v.shape[1]} features, the training features have {n_features}"
        )
    idx = np.searchsorted(classes, y_v)
    unknown = (idx >= len(classes)) | (classes[np.minimum(idx, len(classes) - 1)] != y_v)
    if unknown.any():
        raise DLSAInputError(
            f"y_val has label {y_v[unknown][0].tolist()!r}, which is not a training class"
        )
    return X_v, idx.astype(np.int64)


def _check_class_counts(classes: np.ndarray, counts: np.ndarray, minimum: int = 1) -> None:
    if len(classes) < 2:
        raise DLSAInputError(
            f"y has 1 class ({classes[0].tolist()!r}); a classifier needs at least 2 classes"
        )
    small = np.flatnonzero(counts < minimum)
    if small.size:
        shown = ", ".join(f"{classes[i].tolist()!r} ({counts[i]} sample)" for i in small[:5])
        raise DLSAInputError(
            f"{small.size} class(es) have fewer than {minimum} training samples: {shown}; "
            f"DLSA needs at least {minimum} per class (drop those classes or merge them)"
        )
