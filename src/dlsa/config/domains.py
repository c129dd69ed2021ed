"""The domain of every number of the configs: the values a field's training can run with.

The types of the fields (:mod:`dlsa.config.schema`) say int or float; :data:`DOMAINS` says
which of those numbers make sense (an SGD learning rate above 0, a share within [0, 1],
a count of at least 1, every float finite). :func:`dlsa.config.checks.check_field`, the
one check of every config field, refuses a number outside its domain in one
:class:`~dlsa.errors.DLSAInputError` naming the field, before any data is read; without
it, such a value fails (or silently misbehaves) deep inside a training run, after
earlier fits were paid for. Bounds that depend on the data (no more clusters or folds
than training samples) are checked when the data is there
(:mod:`dlsa.estimator.inputs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dlsa.errors import DLSAInputError

INT_MAX = 2**31 - 1
"""Largest count a field takes (sizes, epochs, folds): beyond it torch's 32-bit sizes
and indices, and any run's patience, give out."""

MAX_DEPTH = 100
"""Most flow filters a cascade may have: every level routes a share of the samples it
gets, so deeper cascades run out of samples on any data set long before it."""


@dataclass(frozen=True)
class Domain:
    """A closed or open interval of finite numbers.

    Example:
        >>> share = Domain(0.0, 1.0, open_low=True)
        >>> 0.5 in share, 0.0 in share, float("nan") in share, str(share)
        (True, False, False, 'in (0, 1]')
    """

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.low == -math.inf and self.high == math.inf:
            return "a finite number"
        low, high = _text(self.low), _text(self.high)
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {low}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{low}, {high}{right}"


def _text(bound: float) -> str:
    """A bound as written: ``2147483647``, ``0.5``, ``1e+30``."""
    whole = float(bound).is_integer() and abs(bound) < 1e15
    return str(int(bound)) if whole else f"{bound:g}"


FINITE = Domain()
POSITIVE = Domain(0.0, open_low=True)
NON_NEGATIVE = Domain(0.0)
UNIT = Domain(0.0, 1.0)
OPEN_UNIT = Domain(0.0, 1.0, open_low=True, open_high=True)
COUNT = Domain(1, INT_MAX)
"""An int of at least 1."""
SIZE = Domain(0, INT_MAX)
"""An int of at least 0."""

DOMAINS: dict[str, dict[str, Domain]] = {
    "FlowConfig": {
        "n_blocks": COUNT,
        "hidden_features": COUNT,
        "hidden_layers": COUNT,
        "max_hidden": COUNT,
        "bn_momentum": UNIT,
        "bn_eps": NON_NEGATIVE,
    },
    "MixtureConfig": {"n_components": COUNT, "sigma": NON_NEGATIVE},
    "FilterConfig": {
        "q": FINITE,
        "max_class_share": Domain(1.0),
        "lambda_mle": NON_NEGATIVE,
        "lambda_bal": NON_NEGATIVE,
        "lambda_pure": NON_NEGATIVE,
        "eta": Domain(0.0, 1.0, open_high=True),
        "purity_pairs": NON_NEGATIVE,
        "lr": POSITIVE,
        "momentum": UNIT,
        "weight_decay": NON_NEGATIVE,
        "batch_size": COUNT,
        "epochs": COUNT,
        "grad_clip": POSITIVE,
        "min_purity": UNIT,
        "min_cluster_size": SIZE,
        "selection_start": UNIT,
        "max_cluster_share": Domain(0.0, 1.0, open_low=True),
        "max_cluster_size": SIZE,
        "eval_batch_size": COUNT,
    },
    "HeadConfig": {
        "epochs": COUNT,
        "batch_size": COUNT,
        "max_steps": COUNT,
        "lr": POSITIVE,
        "momentum": UNIT,
        "weight_decay": NON_NEGATIVE,
    },
    "SelectionConfig": {
        "folds": Domain(2, INT_MAX),
        "margin": FINITE,
        "min_gain": FINITE,
        "tau_grid": NON_NEGATIVE,
        "drop_behind": POSITIVE,
        "prior_guard": POSITIVE,
        "proportions": OPEN_UNIT,
    },
    "DLSAConfig": {
        "depth": Domain(0, MAX_DEPTH),
        "routed_share": OPEN_UNIT,
        "validation_fraction": Domain(0.0, 0.5, open_high=True),
        "validation_folds": SIZE,
        "random_state": Domain(0),
    },
}
"""The domain of every int or float field, by config class and field name (a tuple's
domain is that of each of its items; None, where a field allows it, is always allowed)."""


def check_value(name: str, value: Any, domain: Domain) -> None:
    """Raise :class:`DLSAInputError` unless ``value`` (a number, a tuple of numbers or
    None) is in ``domain``; the message names ``name`` and the value.

    Example:
        >>> check_value("head.lr", -1.0, POSITIVE)
        Traceback (most recent call last):
        dlsa.errors.DLSAInputError: head.lr must be > 0, got -1.0
    """
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and item not in domain:
            raise DLSAInputError(f"{name} must be {domain}, got {value!r}")
