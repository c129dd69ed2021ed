"""The ``dlsa`` command line: fit, evaluate and predict on feature files.

Configuration flags are generated from the dataclasses of :mod:`dlsa.config`
(:mod:`dlsa.cli.flags`); the commands are in :mod:`dlsa.cli.commands`, the shared IO in
:mod:`dlsa.cli.common`, reports are rendered by :mod:`dlsa.analysis.report`, and
:mod:`dlsa.cli.parser` builds the parser (each command's flags are added by
:mod:`dlsa.cli.command_flags`) and runs a command, turning user errors into one line with
exit status 2.
"""

from dlsa.cli.common import CLIError
from dlsa.cli.flags import config_fields, field_docs, resolve_config
from dlsa.cli.parser import build_parser, main

__all__ = [
    "CLIError",
    "build_parser",
    "config_fields",
    "field_docs",
    "main",
    "resolve_config",
]
