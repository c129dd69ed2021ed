"""Configs as plain data and back: nested dicts for JSON / YAML, dotted-path overrides
(the CLI's flags), and a checked ``from_dict`` that names the bad field."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Literal

from dlsa.errors import DLSAInputError


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain-dict form of a config dataclass (JSON-ready).

    Example:
        >>> from dlsa.config import MixtureConfig
        >>> to_dict(MixtureConfig())
        {'n_components': 500, 'sigma': 0.05}
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the field ``path`` ("a.b.c") of a nested mapping such as :func:`to_dict`
    returns, in place.

    Raises:
        KeyError: if a parent in ``path`` is not a key of ``data``.

    Example:
        >>> d = {"flow_filter": {"mixture": {"n_components": 500}}}
        >>> set_path(d, "flow_filter.mixture.n_components", 30)
        >>> d
        {'flow_filter': {'mixture': {'n_components': 30}}}
    """
    *parents, leaf = path.split(".")
    node = data
    for name in parents:
        node = node[name]
    node[leaf] = value


def from_dict(cls: type[Any], data: Mapping[str, Any], *, where: str = "config") -> Any:
    """Build the dataclass ``cls`` from a nested mapping, checking every key.

    Unknown keys raise, so a typo in a YAML file is reported instead of silently ignored.

    Args:
        cls: a config dataclass such as :class:`DLSAConfig`.
        data: mapping of field names to values (nested mappings for sub-configs).
        where: prefix used in error messages.

    Raises:
        DLSAInputError: (a ``ValueError``) on an unknown key or a value of the wrong kind.

    Example:
        >>> from dlsa.config import DLSAConfig
        >>> from_dict(DLSAConfig, {"depth": 2, "flow_filter": {"lr": 0.1}}).flow_filter.lr
        0.1
    """
    if not isinstance(data, Mapping):
        raise DLSAInputError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # a YAML key may be a number
    if unknown:
        raise DLSAInputError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = dataclass_in(hints[name])
        if sub is not None and isinstance(value, Mapping):
            value = from_dict(sub, value, where=f"{where}.{name}")
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def choices(cls: type[Any], name: str) -> tuple[Any, ...]:
    """The allowed values of the ``Literal`` field ``name`` of the config dataclass
    ``cls``: the one declaration every check of that parameter reads.

    Example:
        >>> from dlsa.config import DLSAConfig
        >>> choices(DLSAConfig, "stage_prior")
        ('routed', 'global')
    """
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is not Literal:
        raise TypeError(f"{cls.__name__}.{name} is not a Literal field")
    return typing.get_args(hint)


def dataclass_in(hint: Any) -> type[Any] | None:
    """The dataclass type named by ``hint`` (also inside ``X | None``), if any."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            return kind
    return None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a value against its type hint; ints are accepted where floats are expected."""
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise DLSAInputError(f"{where} may not be null")
    if typing.get_origin(hint) is Literal:
        if value not in args:
            raise DLSAInputError(f"{where} must be one of {args}, got {value!r}")
        return value
    if typing.get_origin(hint) in (Mapping, dict):
        if isinstance(value, Mapping):
            return dict(value)
        raise DLSAInputError(f"{where} must be a mapping, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise DLSAInputError(f"{where} must be a non-empty list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(value) and dataclass_in(hint) is type(value):
        return value
    kinds = [k for k in (args or (hint,)) if isinstance(k, type)]
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    for kind in kinds:
        if kind is int and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            return value
    raise DLSAInputError(f"{where} has the wrong type: got {value!r}, expected {hint}")
