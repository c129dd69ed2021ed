"""One configuration of the cascade, resolved and checked: what fitting, scoring, the
safeguard, the selection and persistence read (never an estimator's attributes).

:func:`resolve` turns estimator parameters (a :class:`dlsa.DLSAClassifier`'s
``get_params()``, or a candidate of the selection) into a :class:`CascadeSpec`, raising
one :class:`~dlsa.errors.DLSAInputError` that names the first bad parameter. The allowed
values of every choice are the ``Literal`` fields of :class:`dlsa.config.DLSAConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, SelectionConfig, choices
from dlsa.config.domains import DOMAINS, check_domains, check_value
from dlsa.engine.devices import resolve_device
from dlsa.errors import DLSAInputError
from dlsa.stage2.bases import BaseMethod, make_base

DEFAULT = DLSAConfig()
"""The default configuration; the estimator's defaults are its fields."""

CHOICES = (
    "features_on",
    "stage_prior",
    "regular_data",
    "regular_prior",
    "cluster_prior_data",
    "classifier_layout",
)
"""Parameters whose allowed values are the ``Literal`` of their DLSAConfig field."""


@dataclass(frozen=True)
class CascadeSpec:
    """A concrete configuration of the cascade (see :class:`dlsa.config.DLSAConfig` for
    each field); ``base`` is the built base method, never "auto"."""

    depth: int
    base: BaseMethod
    flow_filter: FilterConfig
    head: HeadConfig
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
    """The checked selection config of estimator parameters ("default" = the default's).

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
    if sel is not None:
        check_domains(sel, "selection")
    return sel


def resolve(params: Mapping[str, Any]) -> CascadeSpec:
    """Check estimator parameters and build their :class:`CascadeSpec` (with
    ``base="auto"``, Balanced Softmax stands in until the selection chooses).

    Raises:
        DLSAInputError: naming the first invalid parameter and its value.
    """
    depth = params.get("depth", DEFAULT.depth)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise DLSAInputError(f"depth must be an int >= 0, got {depth!r}")
    check_value("depth", depth, DOMAINS["DLSAConfig"]["depth"])
    flt = params.get("flow_filter") or DEFAULT.flow_filter
    head = params.get("head") or DEFAULT.head
    if not isinstance(flt, FilterConfig):
        raise DLSAInputError(f"flow_filter must be a FilterConfig, got {type(flt).__name__}")
    if not isinstance(head, HeadConfig):
        raise DLSAInputError(f"head must be a HeadConfig, got {type(head).__name__}")
    if not 0.0 < flt.proportion < 1.0:
        raise DLSAInputError(f"flow_filter.proportion must be in (0, 1), got {flt.proportion}")
    check_domains(flt, "flow_filter")
    check_domains(head, "head")
    device = params.get("device", DEFAULT.device)
    resolve_device(device)  # a device that is not here: one line, before training
    _check_choice("flow_filter.precision", flt.precision, choices(FilterConfig, "precision"))
    _check_choice("head.precision", head.precision, choices(HeadConfig, "precision"))
    n_jobs = params.get("n_jobs", DEFAULT.n_jobs)
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0):
        raise DLSAInputError(f"n_jobs must be None or a non-zero int, got {n_jobs!r}")
    values = {name: params.get(name, getattr(DEFAULT, name)) for name in CHOICES}
    for name, value in values.items():
        _check_choice(name, value, choices(DLSAConfig, name))
    fraction = params.get("validation_fraction", DEFAULT.validation_fraction)
    if not 0.0 <= fraction < 0.5:
        raise DLSAInputError(f"validation_fraction must be in [0, 0.5), got {fraction!r}")
    folds = params.get("validation_folds", DEFAULT.validation_folds)
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 0 or folds == 1:
        raise DLSAInputError(f"validation_folds must be 0 (off) or an int >= 2, got {folds!r}")
    check_value("validation_folds", folds, DOMAINS["DLSAConfig"]["validation_folds"])
    seed = params.get("random_state", DEFAULT.random_state)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise DLSAInputError(f"random_state must be an int >= 0 or None, got {seed!r}")
    selection_of(params)
    name = params.get("base", DEFAULT.base)
    own = params.get("base_params") if name != "auto" else None  # auto: a stand-in
    base = make_base("balsoftmax" if name == "auto" else name, own)
    flags = ("regular_cluster_aided", "mask_unseen", "stack_base", "cover_classes", "residual")
    return CascadeSpec(
        depth=depth, base=base, flow_filter=flt, head=head, validation_fraction=fraction,
        validation_folds=folds, random_state=seed, device=device, n_jobs=n_jobs,
        verbose=params.get("verbose", DEFAULT.verbose),
        **values, **{k: params.get(k, getattr(DEFAULT, k)) for k in flags},
    )  # fmt: skip


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Raise DLSAInputError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        text = " or ".join(repr(c) for c in allowed)
        raise DLSAInputError(f"{name} must be {text}, got {value!r}")
