"""Configs as plain data and back: nested dicts for JSON / YAML, dotted-path overrides
(the CLI's flags), and a checked ``from_dict`` that names the bad field (every value
checked by :mod:`dlsa.config.checks`)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Literal

from dlsa.config.checks import check_field, dataclass_in, field_hints
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


def from_dict(
    cls: type[Any], data: Mapping[str, Any], *, where: str = "config", path: str = ""
) -> Any:
    """Build the dataclass ``cls`` from a nested mapping, checking every key.

    Unknown keys raise, so a typo in a YAML file is reported instead of silently ignored.

    Args:
        cls: a config dataclass such as :class:`DLSAConfig`.
        data: mapping of field names to values (nested mappings for sub-configs).
        where: what ``data`` is, the prefix of error messages (``"config: depth ..."``).
        path: the field path of ``cls`` inside it ("" at the top).

    Raises:
        DLSAInputError: (a ``ValueError``) on an unknown key, or a value of the wrong
            type, not among its field's choices or outside its domain
            (:func:`dlsa.config.checks.check_field`).

    Example:
        >>> from dlsa.config import DLSAConfig
        >>> from_dict(DLSAConfig, {"depth": 2, "flow_filter": {"lr": 0.1}}).flow_filter.lr
        0.1
    """
    here = f"{where}: {path.rstrip('.')}" if path else where
    if not isinstance(data, Mapping):
        raise DLSAInputError(f"{here} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    data = _moved_keys(cls, data, where, path)
    unknown = sorted(set(data) - names, key=str)  # a YAML key may be a number
    if unknown:
        raise DLSAInputError(f"{here}: unknown key(s) {unknown}; known keys are {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = dataclass_in(field_hints(cls)[name])
        if sub is not None and isinstance(value, Mapping):
            value = from_dict(sub, value, where=where, path=f"{path}{name}.")
        kwargs[name] = check_field(cls, name, value, f"{where}: {path}{name}", plain=True)
    return cls(**kwargs)


MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("DLSAConfig", "routed_share"): ("flow_filter", "proportion"),
}
"""Fields that moved, by config class and field name: the nested config and key they
were read from before (``flow_filter.proportion`` became ``routed_share``). YAML files
and saved models that use the old key still load, its value taken for the new field."""


def _moved_keys(
    cls: type[Any], data: Mapping[str, Any], where: str, path: str
) -> Mapping[str, Any]:
    """``data`` with the old keys of :data:`MOVED_KEYS` moved to their new fields (the
    value checked under the old key's path); the same field given both ways with
    different values raises."""
    for (owner, name), (parent, old) in MOVED_KEYS.items():
        inner = data.get(parent)
        if owner != cls.__name__ or not isinstance(inner, Mapping) or old not in inner:
            continue
        at = f"{where}: {path}{parent}.{old}"
        value = check_field(cls, name, inner[old], f"{at} (now {path}{name})", plain=True)
        if name in data and data[name] != value:
            raise DLSAInputError(
                f"{at} ({value!r}) and {path}{name} ({data[name]!r}) disagree; "
                f"{parent}.{old} is now {name}: give only {name}"
            )
        data = {**data, parent: {k: v for k, v in inner.items() if k != old}, name: value}
    return data


def choices(cls: type[Any], name: str) -> tuple[Any, ...]:
    """The allowed values of the ``Literal`` field ``name`` of the config dataclass
    ``cls``: the one declaration every check of that parameter reads.

    Example:
        >>> from dlsa.config import DLSAConfig
        >>> choices(DLSAConfig, "stage_prior")
        ('routed', 'global')
    """
    hint = field_hints(cls)[name]
    if typing.get_origin(hint) is not Literal:
        raise TypeError(f"{cls.__name__}.{name} is not a Literal field")
    return typing.get_args(hint)
