"""Stage-2 base methods of the paper's tables, each usable alone and as DLSA's base.

``BASES`` maps a method's name to its class; :func:`make_base` builds one from a name
and a mapping of hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from dlsa.errors import DLSAInputError
from dlsa.stage2.bases._base import (
    BaseMethod,
    StageData,
    balanced_mean,
    class_balanced_order,
    frozen,
    run_phase,
    seeded,
    shared_phases,
)
from dlsa.stage2.bases.balsoftmax import BalancedSoftmax
from dlsa.stage2.bases.cbs import ClassBalancedSampling
from dlsa.stage2.bases.ce import CrossEntropy
from dlsa.stage2.bases.cosine import Cosine
from dlsa.stage2.bases.crt import ClassifierRetraining
from dlsa.stage2.bases.logit_adjust import LogitAdjustment
from dlsa.stage2.bases.logreg import BalancedLogisticRegression
from dlsa.stage2.bases.lws import LearnableWeightScaling
from dlsa.stage2.bases.m2m import MajorToMinor
from dlsa.stage2.bases.ride import Ride
from dlsa.stage2.bases.taunorm import TauNorm
from dlsa.stage2.bases.tuned_balsoftmax import TunedBalancedSoftmax

BASES: Mapping[str, type[BaseMethod]] = types.MappingProxyType(
    {
        "ce": CrossEntropy,
        "balsoftmax": BalancedSoftmax,
        "balsoftmax-tuned": TunedBalancedSoftmax,
        "logreg": BalancedLogisticRegression,
        "cbs": ClassBalancedSampling,
        "cosine": Cosine,
        "crt": ClassifierRetraining,
        "tau-norm": TauNorm,
        "lws": LearnableWeightScaling,
        "logit-adjust": LogitAdjustment,
        "m2m": MajorToMinor,
        "ride": Ride,
    }
)
"""Read-only mapping from base-method name to class."""


def make_base(name: str, params: Mapping[str, Any] | None = None) -> BaseMethod:
    """Build the base method ``name`` with hyper-parameters ``params``.

    Raises:
        DLSAInputError: (a ``ValueError``) for an unknown name, an unknown
            hyper-parameter, or a value the method refuses (of another type, or out of
            its range).

    Example:
        >>> make_base("balsoftmax").name
        'balsoftmax'
    """
    if name not in BASES:
        raise DLSAInputError(f"unknown base method {name!r}; choose one of {sorted(BASES)}")
    cls = BASES[name]
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known, key=str)
    if unknown:
        raise DLSAInputError(
            f"base_params: base method {name!r} has no hyper-parameter(s) {unknown}; "
            f"known: {sorted(known)}"
        )
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:  # a method's own check, or a value of a wrong type
        raise DLSAInputError(f"base_params of {name!r} {params}: {err}") from err


def base_params(method: BaseMethod) -> dict[str, Any]:
    """The hyper-parameters of ``method`` as a JSON-ready dict."""
    return dataclasses.asdict(method)


__all__ = [
    "BASES",
    "BalancedLogisticRegression",
    "BalancedSoftmax",
    "BaseMethod",
    "ClassBalancedSampling",
    "ClassifierRetraining",
    "Cosine",
    "CrossEntropy",
    "LearnableWeightScaling",
    "LogitAdjustment",
    "MajorToMinor",
    "Ride",
    "StageData",
    "TauNorm",
    "TunedBalancedSoftmax",
    "balanced_mean",
    "base_params",
    "class_balanced_order",
    "frozen",
    "make_base",
    "run_phase",
    "seeded",
    "shared_phases",
]
