"""One configuration of the cascade, resolved and checked: what fitting, scoring, the
safeguard, the selection and persistence read (never an estimator's attributes).

:func:`resolve` turns estimator parameters (a :class:`dlsa.DLSAClassifier`'s
``get_params()``, or a candidate of the selection) into a :class:`CascadeSpec`, raising
one :class:`~dlsa.errors.DLSAInputError` that names the first bad parameter: every field
of :class:`dlsa.config.DLSAConfig` and of its nested configs is checked by the one check
of :mod:`dlsa.config.checks` (types, ``Literal`` choices, number domains), before any
data is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, SelectionConfig, check_fields
from dlsa.engine.devices import resolve_device
from dlsa.errors import DLSAInputError
from dlsa.stage2.bases import BaseMethod, make_base

DEFAULT = DLSAConfig()
"""The default configuration; the estimator's defaults are its fields."""


@dataclass(frozen=True)
class CascadeSpec:
    """A concrete configuration of the cascade (see :class:`dlsa.config.DLSAConfig` for
    each field); ``base`` is the built base method, never "auto"."""

    depth: int
    base: BaseMethod
    flow_filter: FilterConfig
    head: HeadConfig
    routed_share: float = DEFAULT.routed_share
    regular_data: str = DEFAULT.regular_data
    regular_prior: str = DEFAULT.regular_prior
    regular_cluster_aided: bool = DEFAULT.regular_cluster_aided
    cluster_prior_data: str = DEFAULT.cluster_prior_data
    classifier_layout: str = DEFAULT.classifier_layout
    mask_unseen: bool = DEFAULT.mask_unseen
    stack_base: bool = DEFAULT.stack_base
    cover_classes: bool = DEFAULT.cover_classes
    residual: bool = DEFAULT.residual
    stage_prior: str = DEFAULT.stage_prior
    validation_fraction: float = DEFAULT.validation_fraction
    validation_folds: int = DEFAULT.validation_folds
    random_state: int | None = DEFAULT.random_state
    device: str = DEFAULT.device
    features_on: str = DEFAULT.features_on
    n_jobs: int | None = DEFAULT.n_jobs
    verbose: bool = DEFAULT.verbose

    @property
    def twin(self) -> bool:
        """Whether the classifiers are the release's two summed maps
        (``classifier_layout="release"``): cluster-aided ones then take x, not [x, z]."""
        return self.classifier_layout == "release"

    @property
    def regular_is_cluster_aided(self) -> bool:
        """Whether the regular classifier is cluster-aided: ``regular_cluster_aided``,
        trained on the remaining samples, with at least one filter."""
        applies = self.regular_data == "remaining" and self.depth >= 1
        return bool(self.regular_cluster_aided) and applies

    @property
    def safeguarded(self) -> bool:
        """Whether the safeguard decides which stages to keep."""
        return self.depth > 0 and (self.validation_fraction > 0 or self.validation_folds >= 2)


def selection_of(params: Mapping[str, Any]) -> SelectionConfig | None:
    """The selection config of estimator parameters ("default" = the default's).

    Raises:
        DLSAInputError: for anything but a SelectionConfig, "default" or None, or for
            ``base="auto"`` without a selection.
    """
    sel = params.get("selection", None)
    sel = DEFAULT.selection if sel == "default" else sel
    if sel is not None and not isinstance(sel, SelectionConfig):
        raise DLSAInputError(
            f"selection must be a SelectionConfig, 'default' or None, got {sel!r}"
        )
    if sel is None and params.get("base") == "auto":
        raise DLSAInputError('base="auto" needs a selection config (selection=None given)')
    return sel


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check estimator parameters, every field of :class:`DLSAConfig` and of its nested
    configs (:func:`dlsa.config.checks.check_fields`: types, choices, domains), and
    return them as config values: a missing parameter is the default's, None for
    ``flow_filter``, ``head`` or ``base_params`` the default's, "default" for
    ``selection`` the default's selection.

    Raises:
        DLSAInputError: naming the first invalid parameter by its path (e.g.
            ``selection.multiplicity``) and its value.
    """
    values = {f.name: params.get(f.name, getattr(DEFAULT, f.name)) for f in fields(DLSAConfig)}
    for name in ("flow_filter", "head", "base_params"):
        if values[name] is None:
            values[name] = getattr(DEFAULT, name)
    if isinstance(values["selection"], str) and values["selection"] == "default":
        values["selection"] = DEFAULT.selection
    check_fields(DLSAConfig, values)  # in the fields' order: the first bad one is named
    selection_of(values)  # base="auto" needs a selection
    return values


def resolve(params: Mapping[str, Any]) -> CascadeSpec:
    """Check estimator parameters (:func:`check_params`) and build their
    :class:`CascadeSpec` (with ``base="auto"``, Balanced Softmax stands in until the
    selection chooses).

    Raises:
        DLSAInputError: naming the first invalid parameter and its value.
    """
    values = check_params(params)
    resolve_device(values["device"])  # a device that is not here: one line, before training
    name = values["base"]
    own = params.get("base_params") if name != "auto" else None  # auto: a stand-in
    base = make_base("balsoftmax" if name == "auto" else name, own)
    given = {f.name for f in fields(CascadeSpec)} - {"base"}
    return CascadeSpec(base=base, **{k: values[k] for k in given})
