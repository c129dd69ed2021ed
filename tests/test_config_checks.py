"""The one check of every config field (:mod:`dlsa.config.checks`), before any fit.

The cases are generated from the dataclass declarations: every ``Literal`` field of
every config reachable from :class:`DLSAConfig`, every tuple field (of choices or of
numbers) and every scalar field of a plain type. A field added later is covered without
editing this file. Each bad value must fail as one :class:`DLSAInputError` naming the
field's path, from ``DLSAClassifier.fit`` before any cascade is fitted (every
``fit_cascade`` / ``fit_levels`` of the package is a tripwire), from ``check_params``
and from ``from_dict`` (YAML files, CLI flags, saved models).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from typing import Any, Literal

import numpy as np
import pytest

import dlsa.estimator  # noqa: F401 - every module that binds fit_cascade / fit_levels
from dlsa import DLSAClassifier
from dlsa.config import DLSAConfig, dataclass_in, from_dict, to_dict
from dlsa.config.domains import DOMAINS
from dlsa.errors import DLSAInputError


def _configs(cls: type = DLSAConfig, where: str = "") -> dict[type, str]:
    """Every config dataclass reachable from ``cls``, with its path ("" for the top)."""
    found = {cls: where}
    for name, hint in typing.get_type_hints(cls).items():
        sub = dataclass_in(hint)
        if sub is not None:
            found |= _configs(sub, f"{where}.{name}" if where else name)
    return found


def _kind(hint: Any) -> Any:
    """The type of a hint besides None (``X | None`` -> X)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (kind,) = (m for m in typing.get_args(hint) if m is not type(None))
        return kind
    return hint


def _fields() -> list[tuple[type, str, Any, str]]:
    """(config class, field name, its type besides None, path) of every field."""
    out = []
    for cls, where in _configs().items():
        for name, hint in typing.get_type_hints(cls).items():
            out.append((cls, name, _kind(hint), f"{where}.{name}" if where else name))
    return out


def _bad_cases() -> list[tuple[str, Any, str]]:
    """(path, bad value, the part of the path the message names) of every Literal field
    (a value not among its choices), every tuple field (a bad second item: a value not
    among the choices, or a NaN, outside every number's domain) and every scalar field
    of a plain type (a value of another type)."""
    cases = []
    for _, _, kind, path in _fields():
        origin = typing.get_origin(kind)
        if origin is Literal:
            cases.append((path, "nope", path))
        elif origin is tuple:
            item = typing.get_args(kind)[0]
            if typing.get_origin(item) is Literal:
                cases.append((path, (typing.get_args(item)[0], "nope"), f"{path}[1]"))
            else:
                cases.append((path, (0.5, math.nan), f"{path}[1]"))
        elif kind in (bool, int, float):
            cases.append((path, "3", path))
        elif kind is str:
            cases.append((path, 3, path))
    return cases


CASES = _bad_cases()


def _params_with(path: str, value: Any) -> dict[str, Any]:
    """The default's estimator parameters with the field ``path`` set to ``value``."""
    params = DLSAConfig().estimator_params()
    top, *rest = path.split(".")
    if not rest:
        return params | {top: value}

    def replaced(config: Any, names: list[str]) -> Any:
        first, *more = names
        new = replaced(getattr(config, first), more) if more else value
        return dataclasses.replace(config, **{first: new})

    return params | {top: replaced(params[top], rest)}


@pytest.fixture
def tripwire(monkeypatch):
    """Every ``fit_cascade`` and ``fit_levels`` bound in a module of the package raises."""

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cascade was fitted before the parameters were checked")

    wired = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("dlsa.") and module is not None:
            for attr in ("fit_cascade", "fit_levels"):
                if callable(getattr(module, attr, None)):
                    monkeypatch.setattr(module, attr, started)
                    wired.add(f"{name}.{attr}")
    assert {"dlsa.selection.folds.fit_cascade", "dlsa.estimator.final_fit.fit_cascade"} <= wired
    assert {"dlsa.cascade.fit.fit_levels", "dlsa.cascade.safeguard.fit_levels"} <= wired


def _data() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    return X, np.repeat(np.arange(3), 20)


def test_the_tripwire_trips_on_a_valid_config(tripwire):
    with pytest.raises(AssertionError, match="fitted before"):
        DLSAClassifier(selection=None, base="ce", depth=0).fit(*_data())
    with pytest.raises(AssertionError, match="fitted before"):
        DLSAClassifier().fit(*_data())


def test_the_cases_cover_the_choices_tuples_and_nested_configs():
    paths = {path for path, _, _ in CASES}
    expected = {
        "base", "stage_prior", "features_on", "selection.multiplicity", "selection.drop_rule",
        "selection.train_features", "selection.bases", "selection.tau_grid",
        "selection.proportions", "flow_filter.precision", "flow_filter.batch_sampler",
        "head.schedule", "head.precision", "flow_filter.flow.zero_init", "depth", "device",
    }  # fmt: skip
    assert expected <= paths
    literal = [p for _, _, k, p in _fields() if typing.get_origin(k) is Literal]
    assert len(literal) >= 18 and set(literal) <= paths


@pytest.mark.parametrize(("path", "value", "named"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_value_fails_naming_the_field_before_any_fit(tripwire, path, value, named):
    clf = DLSAClassifier(**_params_with(path, value))
    with pytest.raises(DLSAInputError, match=f"^{re.escape(named)} (must|has|may)") as err:
        clf.fit(*_data())
    assert repr(value[-1] if isinstance(value, tuple) else value) in str(err.value)
    with pytest.raises(DLSAInputError, match=f"^{re.escape(named)} "):
        clf.check_params()


@pytest.mark.parametrize(("path", "value", "named"), CASES, ids=[c[0] for c in CASES])
def test_from_dict_names_the_same_field(path, value, named):
    """YAML files, CLI flags and saved models go through ``from_dict``: the same check."""
    data = to_dict(DLSAConfig())
    *parents, leaf = path.split(".")
    node = data
    for name in parents:
        node = node[name]
    node[leaf] = list(value) if isinstance(value, tuple) else value
    with pytest.raises(DLSAInputError, match=f"^{re.escape('config: ' + named)} "):
        from_dict(DLSAConfig, data)


def test_every_choice_and_a_number_at_its_bound_pass():
    """Valid values are untouched: each choice of every Literal field (alone, or as a
    one-item tuple) passes the estimator's check, and from_dict returns it as given."""
    for _, _, kind, path in _fields():
        item = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else kind
        if typing.get_origin(item) is not Literal:
            continue
        for choice in typing.get_args(item):
            value = (choice,) if item is not kind else choice
            DLSAClassifier(**_params_with(path, value)).check_params()
    config = from_dict(DLSAConfig, {"selection": {"proportions": [1e-9, 0.99]}})
    assert config.selection is not None and config.selection.proportions == (1e-9, 0.99)


def test_every_tuple_of_numbers_is_checked_item_by_item():
    for cls, name, kind, path in _fields():
        if typing.get_origin(kind) is tuple and name in DOMAINS.get(cls.__name__, {}):
            with pytest.raises(DLSAInputError, match=re.escape(f"{path}[2] must be")):
                DLSAClassifier(**_params_with(path, (0.5, 0.5, -1.0))).check_params()


def test_the_late_checks_of_the_selection_are_internal_assertions():
    """The selection no longer raises its own ValueErrors for its config: a bad value
    reaching it is a bug of the caller (the estimator checks first)."""
    from dlsa.selection.rule import DropRule, family_margin

    with pytest.raises(AssertionError):
        DropRule(rule="nope")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        family_margin([], np.zeros(1, dtype=int), 1, 2.0, "nope")
