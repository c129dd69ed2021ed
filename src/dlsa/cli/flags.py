"""Command-line flags generated from dataclasses: one flag per config field, with the
field's type, default and docstring (one source for names, types, defaults and help), and
the resolution of ``--config`` (a preset or a YAML file) plus the overrides."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from dlsa.cli.common import CLIError
from dlsa.config import (
    PRESETS,
    DLSAConfig,
    SelectionConfig,
    dataclass_in,
    from_dict,
    get_preset,
    set_path,
    to_dict,
)
from dlsa.engine.devices import resolve_device
from dlsa.errors import DLSAInputError

SKIPPED_FIELDS = {"base_params", "verbose"}
FLAG_ALIASES = {"flow_filter.proportion": "routed_share"}
"""Flags of fields that moved (old dotted path: new one), accepted without a help line."""


def field_docs(cls: type[Any]) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string under each field), also of
    the fields it inherits from dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_field_docs(klass))
    return docs


@functools.cache
def _field_docs(cls: type[Any]) -> dict[str, str]:
    """:func:`field_docs`, read once per class (parsing the source was most of the time
    that building the parser took)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def config_fields(
    cls: type[Any] = DLSAConfig, prefix: str = "", default: Any = None
) -> Iterator[tuple[str, Any, Any, str]]:
    """Leaf fields of a config as ``(dotted path, type hint, default, help)``; the
    defaults are those of ``default`` (an instance of ``cls``; ``cls()`` if None), so a
    nested config shows the values the enclosing default really uses (``DLSAConfig()``'s
    filter and head, not ``FilterConfig()``'s)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    default = cls() if default is None else default
    for f in dataclasses.fields(cls):
        if f.name in SKIPPED_FIELDS:
            continue
        hint = hints[f.name]
        sub = dataclass_in(hint)
        if sub is not None:
            inner = getattr(default, f.name)
            yield from config_fields(
                sub, f"{prefix}{f.name}.", inner if isinstance(inner, sub) else None
            )
        else:
            yield f"{prefix}{f.name}", hint, getattr(default, f.name), docs.get(f.name, "")


def _union_members(hint: Any) -> tuple[Any, ...]:
    """The members of ``X | Y`` (``(hint,)`` for anything else, e.g. ``tuple[int, ...]``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _parser_for(hint: Any) -> Callable[[str], Any]:
    args = _union_members(hint)
    kinds = [a for a in args if a is not type(None)]
    optional = type(None) in args

    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        kind = kinds[0]
        if typing.get_origin(kind) is typing.Literal:
            return text  # a choice: config.from_dict checks it
        if typing.get_origin(kind) is tuple:
            item = _parser_for(typing.get_args(kind)[0])
            return tuple(item(v.strip()) for v in text.split(",") if v.strip())
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from err

    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset/--config`` and one flag per config field."""
    group = parser.add_argument_group("configuration (overrides the preset or YAML file)")
    group.add_argument(
        "--config",
        default="default",
        help=f"a preset ({', '.join(PRESETS)}) or a YAML file of DLSAConfig fields "
        "(default: 'default', the safe configuration that selects the base method and "
        "DLSA on out-of-fold evidence; the paper presets reproduce the paper)",
    )
    group.add_argument(
        "--no-selection",
        action="store_true",
        help="fit the configuration as given, without out-of-fold selection (needs a "
        "concrete --base)",
    )
    group.add_argument("--base-params", default=None, help="base method hyper-parameters as JSON")
    for path, hint, default, doc in config_fields():
        flag = "--" + path.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            flag,
            dest=f"cfg:{path}",
            type=_parser_for(hint),
            default=argparse.SUPPRESS,
            metavar=_metavar(hint),
            help=f"{doc} (default: {shown})".replace("%", "%%"),
        )
    for old, new in FLAG_ALIASES.items():  # moved fields: the old flag still works, unlisted
        group.add_argument(
            "--" + old.replace("_", "-"),
            dest=f"cfg:{new}",
            type=_parser_for(typing.get_type_hints(DLSAConfig)[new]),
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def _metavar(hint: Any) -> str:
    kind = next(a for a in _union_members(hint) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        return "LIST"
    if typing.get_origin(kind) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(kind))) + "}"
    return getattr(kind, "__name__", "X").upper()


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type[Any], *, skip: frozenset[str] = frozenset()
) -> None:
    """One flag per field of a flat settings dataclass (``DemoSettings``,
    ``ImageTrainConfig``): its type (``Literal`` fields offer ``choices``), default and
    docstring. A field without a default is a required flag; a bool field is a switch
    (``--name`` when it defaults to False, ``--no-name`` when to True). Values land in
    ``args.<field>``; :func:`dataclass_from_args` builds the dataclass back."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint, doc, flag = hints[f.name], docs.get(f.name, ""), "--" + f.name.replace("_", "-")
        value = _default(f)
        if value is dataclasses.MISSING:
            parser.add_argument(flag, dest=f.name, required=True, type=_parser_for(hint),
                                metavar=_metavar(hint), help=doc.replace("%", "%%"))  # fmt: skip
            continue
        if hint is bool:
            switch = flag if not value else "--no-" + f.name.replace("_", "-")
            text = doc if not value else f"do not: {doc}"
            action = "store_true" if not value else "store_false"
            parser.add_argument(switch, dest=f.name, action=action, help=text.replace("%", "%%"))
            continue
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        text = doc if "(default:" in doc else f"{doc} (default: {shown})"
        parser.add_argument(
            flag,
            dest=f.name,
            type=None if choices else _parser_for(hint),
            choices=choices,
            default=value,
            metavar=None if choices else _metavar(hint),
            help=text.replace("%", "%%"),
        )


def _default(f: dataclasses.Field[Any]) -> Any:
    """A field's default (``MISSING`` if it has none)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def dataclass_from_args(cls: type[Any], args: argparse.Namespace, **fixed: Any) -> Any:
    """The dataclass ``cls`` from the flags :func:`add_dataclass_arguments` added, with
    ``fixed`` values for the skipped fields."""
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in fixed
    }
    return cls(**values, **fixed)


def resolve_config(args: argparse.Namespace) -> DLSAConfig:
    """Preset or YAML file, then the command-line overrides."""
    source = args.config
    if source in PRESETS:
        data = to_dict(get_preset(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise CLIError(
                f"--config {source!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
            )
        data = to_dict(_read_yaml(path))
    for key, value in vars(args).items():
        if key.startswith("cfg:"):
            if key.startswith("cfg:selection.") and data.get("selection") is None:
                data["selection"] = to_dict(SelectionConfig())
            set_path(data, key[4:], value)
    if getattr(args, "no_selection", False):
        if data.get("base") == "auto":
            raise CLIError(
                "--no-selection needs a concrete --base (e.g. --base balsoftmax): base "
                "'auto' is chosen by the out-of-fold selection"
            )
        data["selection"] = None
    if args.base_params is not None:
        try:
            data["base_params"] = json.loads(args.base_params)
        except json.JSONDecodeError as err:
            raise CLIError(f"--base-params is not valid JSON: {err}") from err
    try:
        config = from_dict(DLSAConfig, data)
    except ValueError as err:
        raise CLIError(str(err)) from err
    resolve_device(config.device, what="--device")
    from dlsa.estimator import DLSAClassifier

    try:  # values of the right type that the estimator refuses, before any file is read
        DLSAClassifier(**config.estimator_params()).check_params()
    except DLSAInputError as err:
        raise CLIError(f"config: {err}") from err
    return config


def _read_yaml(path: Path) -> DLSAConfig:
    """The config of the YAML file of ``--config``: UTF-8 text, a mapping of
    :class:`DLSAConfig` fields; one :class:`CLIError` naming the flag and file if not."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CLIError(f"--config {path}: invalid YAML ({err})") from err
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise CLIError(
            f"--config {path}: expected a mapping of config fields, got {type(loaded).__name__}"
        )
    try:
        config = from_dict(DLSAConfig, loaded, where="config")  # every value checked
    except ValueError as err:
        raise CLIError(f"--config {path}: {err}") from err
    return config
