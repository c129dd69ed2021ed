"""The one check of every config field: its type, its choices and its domain, read from
the dataclass declarations, in one style (like scikit-learn's ``_parameter_constraints``,
but declared by the fields' own types).

* a ``Literal`` field (``stage_prior``, ``selection.multiplicity``, ...) takes one of
  the Literal's values;
* a number takes the type its hint says (an int where ``int``, an int or a float where
  ``float``; never a bool) and lies in its domain (:data:`dlsa.config.domains.DOMAINS`);
* a tuple (``selection.bases``, ``tau_grid``, ``proportions``) is non-empty and each item
  is checked as above, its index named (``selection.bases[1]``);
* a nested config is checked field by field (its path named: ``flow_filter.mixture.sigma``);
* None only where the hint allows it.

:func:`check_config` checks a config object, :func:`check_fields` a mapping of field
values (the estimator's parameters), :func:`check_field` one value; every failure is one
:class:`~dlsa.errors.DLSAInputError` (a ValueError) whose message starts with the field's
path, e.g. ``selection.multiplicity must be one of 'per-candidate', 'max-t', got 'nope'``.
:func:`dlsa.config.from_dict` (YAML files, CLI flags, saved models) and the estimator's
parameter check (:func:`dlsa.cascade.resolve`, run by ``DLSAClassifier.fit`` and
``check_params`` before any data is read) both call it, so a bad value never reaches a fit.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from dlsa.config.domains import DOMAINS
from dlsa.errors import DLSAInputError

EXCLUDED: dict[tuple[str, str], tuple[Any, str]] = {
    ("DLSAConfig", "validation_folds"): (1, "0 (off) or an int >= 2"),
    ("DLSAConfig", "n_jobs"): (0, "None or a non-zero int"),
}
"""A value inside a field's type and domain that the field still refuses, and what the
field takes instead (by config class and field name)."""


@functools.cache
def field_hints(cls: type[Any]) -> dict[str, Any]:
    """The evaluated type hint of every field of the config dataclass ``cls``."""
    return typing.get_type_hints(cls)


def dataclass_in(hint: Any) -> type[Any] | None:
    """The dataclass type named by ``hint`` (also inside ``X | None``), if any."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            return kind
    return None


def check_config(config: Any, where: str) -> None:
    """Check every field of the config dataclass ``config`` (nested configs too);
    ``where`` is its path in messages ("flow_filter", "selection", ...).

    Raises:
        DLSAInputError: naming the first bad field by its path.

    Example:
        >>> from dlsa.config import SelectionConfig
        >>> check_config(SelectionConfig(multiplicity="nope"), "selection")
        Traceback (most recent call last):
        dlsa.errors.DLSAInputError: selection.multiplicity must be one of 'per-candidate', \
'max-t', got 'nope'
    """
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    check_fields(type(config), values, where)


def check_fields(cls: type[Any], values: Mapping[str, Any], where: str = "") -> None:
    """Check the values of fields of the config dataclass ``cls``, by field name (a
    field not in ``values`` is not checked); ``where`` is the path of ``cls`` in messages
    ("" at the top: the field's own name).

    Raises:
        DLSAInputError: naming the first bad field by its path.
    """
    for name, value in values.items():
        check_field(cls, name, value, _join(where, name))


def check_field(cls: type[Any], name: str, value: Any, where: str, *, plain: bool = False) -> Any:
    """Check one value of the field ``name`` of the config dataclass ``cls`` (its type,
    choices, domain) and return it; ``where`` is its path in messages.

    With ``plain`` (values read from JSON / YAML: :func:`dlsa.config.from_dict`) a list
    is taken for a tuple and an int for a float, and the value returned is converted
    (a tuple, a float, a dict).

    Raises:
        DLSAInputError: naming ``where`` and the value.

    Example:
        >>> from dlsa.config import HeadConfig
        >>> check_field(HeadConfig, "lr", 1, "head.lr", plain=True)
        1.0
        >>> check_field(HeadConfig, "lr", -1.0, "head.lr")
        Traceback (most recent call last):
        dlsa.errors.DLSAInputError: head.lr must be > 0, got -1.0
    """
    value = _typed(field_hints(cls)[name], value, where, plain)
    domain = DOMAINS.get(cls.__name__, {}).get(name)
    if domain is not None:
        items = value if isinstance(value, tuple | list) else (value,)
        for i, item in enumerate(items):
            if item is not None and item not in domain:
                at = f"{where}[{i}]" if isinstance(value, tuple | list) else where
                raise DLSAInputError(f"{at} must be {domain}, got {item!r}")
    excluded = EXCLUDED.get((cls.__name__, name))
    if excluded is not None and type(value) is type(excluded[0]) and value == excluded[0]:
        raise DLSAInputError(f"{where} must be {excluded[1]}, got {value!r}")
    return value


def choice_text(allowed: tuple[Any, ...]) -> str:
    """How a message lists the allowed values of a choice.

    Example:
        >>> choice_text(("routed", "global"))
        "one of 'routed', 'global'"
    """
    return "one of " + ", ".join(repr(a) for a in allowed)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _typed(hint: Any, value: Any, where: str, plain: bool) -> Any:
    """``value`` checked against the type ``hint`` (``X | None`` included)."""
    members = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in members:
            return None
        raise DLSAInputError(f"{where} may not be null")
    kinds = [m for m in members if m is not type(None)]
    assert len(kinds) == 1, f"{where}: one type besides None expected, got {hint}"
    kind = kinds[0]
    origin = typing.get_origin(kind)
    if origin is Literal:
        allowed = typing.get_args(kind)
        if isinstance(value, bool) or value not in allowed:
            raise DLSAInputError(f"{where} must be {choice_text(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, tuple | list) or not value:
            raise DLSAInputError(f"{where} must be a non-empty list, got {value!r}")
        item = typing.get_args(kind)[0]
        checked = tuple(_typed(item, v, f"{where}[{i}]", plain) for i, v in enumerate(value))
        return checked if plain else value
    if origin in (Mapping, dict) or kind in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise DLSAInputError(f"{where} must be a mapping, got {value!r}")
        return dict(value) if plain else value
    if _is_kind(kind, value):
        if dataclasses.is_dataclass(value):
            check_config(value, where)
        return float(value) if plain and kind is float else value
    raise DLSAInputError(f"{where} has the wrong type: got {value!r}, expected {_name(hint)}")


def _is_kind(kind: Any, value: Any) -> bool:
    """Whether ``value`` is of the (non-generic) type ``kind``: an int for ``int`` and an
    int or a float for ``float``, never a bool; a bool or a numpy bool for ``bool``."""
    if kind is bool:
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(kind, type) and isinstance(value, kind)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _name(hint: Any) -> str:
    """A type as messages write it: ``int``, ``FilterConfig``, ``float | None``."""
    if _is_union(hint):
        return " | ".join(_name(m) for m in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))
