"""``dlsa train``: the stage-1 command, with one flag per :class:`ImageTrainConfig` field.

``torchrun --nproc-per-node N -m dlsa train ...`` runs the same command data-parallel
(see :mod:`dlsa.backbones.image_train`). The parser is built here; :mod:`dlsa.cli` only
registers the subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from typing import Any

from dlsa.backbones.train_config import ImageTrainConfig

_FROM_COMMON = {"progress"}  # set by -q / --quiet


def add_train_command(parser: argparse.ArgumentParser) -> None:
    """Add the ``dlsa train`` flags to ``parser`` and make it run :func:`cmd_train`."""
    from dlsa.cli import field_docs

    docs = field_docs(ImageTrainConfig)
    hints = typing.get_type_hints(ImageTrainConfig)
    for field in dataclasses.fields(ImageTrainConfig):
        if field.name in _FROM_COMMON:
            continue
        _add_flag(parser, field, hints[field.name], docs.get(field.name, ""))
    parser.set_defaults(func=cmd_train)


def _add_flag(
    parser: argparse.ArgumentParser, field: dataclasses.Field[Any], hint: Any, doc: str
) -> None:
    flag = "--" + field.name.replace("_", "-")
    if field.default is dataclasses.MISSING:
        parser.add_argument(flag, dest=field.name, required=True, help=doc)
    elif hint is bool and field.default is False:
        parser.add_argument(flag, dest=field.name, action="store_true", help=doc)
    elif hint is bool:
        no = "--no-" + field.name.replace("_", "-")
        parser.add_argument(no, dest=field.name, action="store_false", help=f"do not: {doc}")
    elif typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        parser.add_argument(
            flag, dest=field.name, choices=choices, default=field.default, help=doc
        )
    else:
        kind = _scalar(hint)
        shown = ",".join(map(str, field.default)) if kind is tuple else field.default
        parser.add_argument(
            flag, dest=field.name, type=_parse_ints if kind is tuple else kind,
            default=field.default, help=f"{doc} (default: {shown})".replace("%", "%%"),
        )  # fmt: skip


def _scalar(hint: Any) -> Any:
    """int / float / str / tuple of an annotation such as ``int | None``."""
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from err


def cmd_train(args: argparse.Namespace) -> int:
    """Train a stage-1 backbone on image files (rank 0 prints the summary)."""
    from dlsa.backbones.image_train import train_images

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ImageTrainConfig)
              if f.name not in _FROM_COMMON}  # fmt: skip
    config = ImageTrainConfig(**values, progress=not args.quiet)
    _, history = train_images(config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return 0
    best = history.epochs[history.best_epoch - 1]
    score = best.val_balanced_accuracy
    shown = "no validation list: last epoch" if score is None else f"val balanced acc {score:.4f}"
    print(
        f"kept epoch {history.best_epoch} of {len(history.epochs)} ({shown}); wrote "
        f"{config.out}/best.safetensors (dlsa extract --backbone {config.out} ...)"
    )
    return 0
