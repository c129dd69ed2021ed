"""Typed, frozen configuration of DLSA: the dataclasses (:mod:`~dlsa.config.schema`),
the domains of their numbers (:mod:`~dlsa.config.domains`), the one check of every
field (:mod:`~dlsa.config.checks`: type, choices, domain), the named presets
(:mod:`~dlsa.config.presets`) and their conversion to and from plain data
(:mod:`~dlsa.config.io`).

Every field carries a one-line docstring that says where its value comes from: the
paper (main text or supplement), the original release, or "not in the paper" when we
chose it. Variants are made with :func:`dataclasses.replace`; configs are never mutated
and never receive values derived during a run (those are fitted attributes).
"""

from dlsa.config.checks import check_config, check_fields, dataclass_in
from dlsa.config.io import choices, from_dict, set_path, to_dict
from dlsa.config.presets import (
    PAPER_ALIASES,
    PRESETS,
    RELEASE_CONFIGS,
    get_preset,
    many_classes,
    release_config,
    release_filter,
    release_preset,
    small,
)
from dlsa.config.schema import (
    BASE_NAMES,
    SELECTION_BASES,
    BaseName,
    DLSAConfig,
    DropRuleName,
    FilterConfig,
    FlowConfig,
    HeadConfig,
    MethodName,
    MixtureConfig,
    Precision,
    SelectionConfig,
    auto_components,
    safe_filter,
)

__all__ = [
    "choices",
    "BASE_NAMES",
    "SELECTION_BASES",
    "PAPER_ALIASES",
    "PRESETS",
    "RELEASE_CONFIGS",
    "BaseName",
    "DLSAConfig",
    "DropRuleName",
    "FilterConfig",
    "FlowConfig",
    "HeadConfig",
    "MethodName",
    "MixtureConfig",
    "Precision",
    "SelectionConfig",
    "auto_components",
    "check_config",
    "check_fields",
    "dataclass_in",
    "from_dict",
    "get_preset",
    "many_classes",
    "release_config",
    "release_filter",
    "release_preset",
    "safe_filter",
    "set_path",
    "small",
    "to_dict",
]
