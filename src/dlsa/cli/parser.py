"""The ``dlsa`` argument parser and entry point."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from dlsa._version import __version__
from dlsa.cli.command_flags import COMMANDS
from dlsa.cli.common import CLIError, Parser, one_line, setup_logging
from dlsa.engine.parallel import cluster
from dlsa.engine.threads import free_threads
from dlsa.errors import DLSAInputError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``dlsa`` argument parser: the output flags (before or after the command) and
    one subparser per command of :data:`~dlsa.cli.command_flags.COMMANDS`."""
    parser = Parser(
        prog="dlsa", description="Dynamic Label Space Adjustment for long-tailed recognition"
    )
    parser.add_argument("--version", action="version", version=f"dlsa {__version__}")
    _add_output_flags(parser, argparse.Namespace())
    common = Parser(add_help=False)
    _add_output_flags(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_line, add_flags in COMMANDS:
        add_flags(sub.add_parser(name, help=help_line, parents=[common]))
    return parser


def _add_output_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """-q / -v / --log-level / --debug, accepted before and after the command (after it,
    with ``default=SUPPRESS`` so that they do not reset a value given before it)."""

    def dflt(value: Any) -> Any:
        return value if default is not argparse.SUPPRESS else argparse.SUPPRESS

    parser.add_argument(
        "-q", "--quiet", action="store_true", default=dflt(False),
        help="only errors on stderr: no progress bars, warnings or log messages (results "
        "still go to stdout)",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=dflt(False),
        help="debug log messages of dlsa on stderr",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default=dflt(None), type=_log_level,
        help="level of the root logger (INFO, DEBUG, ...)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", default=dflt("auto"), type=_threads,
        help="torch threads: a number, or auto (torch's default less the cores other "
        "processes keep busy; OMP_NUM_THREADS, if set, decides instead)",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true", default=dflt(False),
        help="show the traceback of a user error too (bugs always show one)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dlsa`` command.

    A user error (:class:`CLIError`, :class:`dlsa.errors.DLSAInputError`, a training
    run that diverged (``FloatingPointError``), an ``OSError`` such as a full disk or a
    denied permission, a bad flag) is one line
    ``dlsa <command>: error: <message>`` on stderr with exit status 2, and nothing is
    written; ``--debug`` adds its traceback. Any other exception is a bug and keeps its
    traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.quiet and args.verbose:
            parser.error("-q/--quiet and -v/--verbose exclude each other")
    except SystemExit as done:  # --help, --version, or a bad flag (already reported)
        return done.code if isinstance(done.code, int) else 2
    _printable_streams()
    setup_logging(args)
    _set_threads(args.threads)
    previous = _terminate_as_exception()
    try:
        with cluster(getattr(args, "backend", "loky"), getattr(args, "scheduler", None)):
            return int(args.func(args))
    except (CLIError, DLSAInputError, FloatingPointError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"dlsa {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"dlsa {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"dlsa {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _printable_streams() -> None:
    """On a terminal or pipe that is not UTF-8 (``LC_ALL=C`` without Python's UTF-8
    mode), print what it cannot encode (a class name, a path) as backslash escapes
    instead of failing; the files written are UTF-8 regardless."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _log_level(text: str) -> str:
    """``--log-level``: a level name of :mod:`logging` (any case)."""
    if not isinstance(logging.getLevelName(text.upper()), int):
        names = "CRITICAL, ERROR, WARNING, INFO, DEBUG or NOTSET"
        raise argparse.ArgumentTypeError(f"must be {names}, got {text!r}")
    return text.upper()


MAX_THREADS = 4096
"""Most torch threads ``--threads`` may ask for (torch refuses beyond a C int)."""


def _threads(text: str) -> str | int:
    """``--threads``: "auto" or a number from 1 to :data:`MAX_THREADS`."""
    if text == "auto":
        return text
    if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"must be auto or a positive number (at most {MAX_THREADS}), got {text!r}"
        )
    return int(text)


def _set_threads(threads: str | int) -> None:
    """torch's intra-op threads for this command (:mod:`dlsa.engine.threads`)."""
    if threads == "auto":
        if os.environ.get("OMP_NUM_THREADS"):
            return
        threads = free_threads()
    torch.set_num_threads(int(threads))
    logger.debug("torch threads: %d", int(threads))


class Terminated(BaseException):
    """SIGTERM (what Slurm and Kubernetes send to stop a job), raised where the command
    runs, so that the files it was building are removed as on Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _terminate_as_exception() -> Any:
    """Turn SIGTERM into :class:`Terminated` in the main thread; returns the previous
    handler (None where no handler can be set: outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)
