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
from dlsa.analysis.pipeline import DemoSettings
from dlsa.cli.commands import (
    cmd_compare,
    cmd_demo,
    cmd_diagnose,
    cmd_evaluate,
    cmd_figures,
    cmd_fit,
    cmd_predict,
)
from dlsa.cli.common import CLIError, Parser, one_line, setup_logging
from dlsa.cli.extract import SUBSETS, cmd_extract
from dlsa.cli.flags import add_config_arguments, add_dataclass_arguments
from dlsa.cli.train import add_train_command
from dlsa.engine.parallel import BACKENDS, cluster
from dlsa.engine.threads import free_threads
from dlsa.errors import DLSAInputError
from dlsa.stage2.bases import BASES

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``dlsa`` argument parser."""
    parser = Parser(
        prog="dlsa", description="Dynamic Label Space Adjustment for long-tailed recognition"
    )
    parser.add_argument("--version", action="version", version=f"dlsa {__version__}")
    _add_output_flags(parser, argparse.Namespace())
    common = Parser(add_help=False)
    _add_output_flags(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
        return sub.add_parser(name, help=help, parents=[common])

    fit = command("fit", help="train base and base + DLSA, evaluate once on --test")
    fit.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    fit.add_argument("--test", required=True, help="test features, used once at the end")
    fit.add_argument("--out", required=True, help="results folder")
    fit.add_argument(
        "--val",
        default=None,
        help="labelled features of images the backbone did not train on (e.g. the data "
        "set's validation split): the selection and the safeguard decide on them instead "
        "of out of fold on the training features",
    )
    add_overwrite(fit)
    fit.add_argument(
        "--reference",
        default=None,
        choices=sorted(BASES),
        help="base method fitted alone beside the chosen model, to show what the choice "
        "bought (default: --base, or balsoftmax when the base is chosen by selection)",
    )
    fit.add_argument(
        "--calibrate",
        action="store_true",
        help="temperature-scale both models' probabilities: on --val if given, else out of "
        "fold on --train (3 more fits each); saved with the models",
    )
    add_test_prior(fit, "saved with both models; --test is scored with it")
    add_cluster_arguments(fit)
    add_config_arguments(fit)
    fit.set_defaults(func=cmd_fit)

    dg = command(
        "diagnose",
        help="will DLSA help on these features? filters, separation, out-of-fold gain, verdict",
    )
    dg.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    dg.add_argument(
        "--reference", default=None, choices=sorted(BASES),
        help="base method DLSA is measured against (default: --base, or balsoftmax)",
    )  # fmt: skip
    dg.add_argument("--out", default=None, help="optional JSON file for the diagnosis")
    add_overwrite(dg)
    dg.add_argument(
        "--val",
        default=None,
        help="labelled features of images the backbone did not train on (e.g. the data "
        "set's validation split): the selection and the safeguard decide on them instead "
        "of out of fold on the training features",
    )
    add_cluster_arguments(dg)
    add_config_arguments(dg)
    dg.set_defaults(func=cmd_diagnose)

    ev = command("evaluate", help="metrics of a saved model on labelled features")
    ev.add_argument("--model", required=True, help="model folder written by fit")
    ev.add_argument("--features", required=True, help="labelled features")
    ev.add_argument("--out", default=None, help="optional JSON file for the metrics")
    ev.add_argument("--per-class", default=None, help="optional CSV file of per-class results")
    add_overwrite(ev, "--out / --per-class")
    add_test_prior(ev, "replaces the model's own")
    ev.set_defaults(func=cmd_evaluate)

    cmp = command("compare", help="every base alone and with DLSA, Table-1 layout")
    cmp.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    cmp.add_argument("--test", required=True, help="test features, used once per model")
    cmp.add_argument(
        "--bases",
        default="balsoftmax,cbs,cosine,m2m,ride",
        help="comma-separated base methods, of: "
        + ", ".join(sorted(BASES))
        + "; the first one's filters are shared",
    )
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    cmp.add_argument("--out", required=True, help="results folder")
    add_overwrite(cmp)
    add_cluster_arguments(cmp)
    add_config_arguments(cmp)
    cmp.set_defaults(func=cmd_compare)

    ext = command("extract", help="embed image files with a stage-1 or pretrained backbone")
    ext.add_argument(
        "--backbone",
        required=True,
        help="a backbone folder (dlsa train, dlsa demo), or a pretrained encoder as "
        "LIBRARY:MODEL (torchvision:resnet50, timm:vit_base_patch14_dinov2.lvd142m, "
        "open_clip:ViT-B-16) with --weights, or any torch encoder as MODULE:CALLABLE "
        "(mypkg.models:make_encoder, a function of yours on sys.path or in the current "
        "directory returning an nn.Module: images to (N, D), or (N, D, h, w) averaged; "
        "optional --weights; preprocessing from --size/--resize/--mean/--std, else its "
        "dlsa_preprocess dict, else ImageNet's)",
    )
    ext.add_argument(
        "--weights",
        default=None,
        help="local weights file of a LIBRARY:MODEL (required) or MODULE:CALLABLE "
        "(optional) backbone (.safetensors, .pth read without running pickled code; "
        "nothing is downloaded)",
    )
    ext.add_argument(
        "--float16", action="store_true", help="store the features as float16 (half the file)"
    )
    ext.add_argument(
        "--flip-average",
        action="store_true",
        help="average the features of each image and of its horizontal mirror",
    )
    ext.add_argument(
        "--images",
        required=True,
        help="folder of image files (unlabelled), class folders (labelled in the "
        "backbone's class order, as dlsa train reads them), or the root of --split-list",
    )
    ext.add_argument("--split-list", default=None, help="'relative/path label' lines (labelled)")
    ext.add_argument(
        "--subset", default="all", choices=SUBSETS,
        help="of a dlsa train run's own --images: all, train (only the images it trained "
        "on) or holdout (only those it held out: features of unseen images, e.g. for --val)",
    )  # fmt: skip
    ext.add_argument(
        "--backbone-trained-on", default=None, choices=("seen", "unseen", "unknown"),
        help="whether the backbone trained on these images, recorded in --out for the "
        "model selection (default: worked out from a dlsa train run folder, else unknown: "
        "a pretrained encoder may have trained on them)",
    )  # fmt: skip
    ext.add_argument(
        "--size", type=int, default=None,
        help="image side (default: the backbone's recorded size, or the pretrained model's)",
    )  # fmt: skip
    ext.add_argument(
        "--resize", type=int, default=None,
        help="shorter side before the center crop to --size (default: the pretrained "
        "model's ratio, e.g. 256 for 224; none for a run folder)",
    )  # fmt: skip
    ext.add_argument("--mean", default=None, help="R,G,B input mean of a MODULE:CALLABLE")
    ext.add_argument("--std", default=None, help="R,G,B input std of a MODULE:CALLABLE")
    ext.add_argument(
        "--out", required=True, help="feature file (.h5/.hdf5/.npz), and OUT.files.csv beside it"
    )
    add_overwrite(ext)
    ext.add_argument(
        "--device", default="cpu",
        help="cpu, cuda, cuda:1 ..., or auto (cuda:LOCAL_RANK when CUDA is available, one "
        "GPU per process under torchrun)",
    )  # fmt: skip
    ext.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    ext.add_argument("--workers", type=int, default=0, help="image-loading processes")
    ext.set_defaults(func=cmd_extract)

    fig = command("figures", help="confusion, clusters, separation and t-SNE figures")
    fig.add_argument("--model", required=True, help="model folder written by fit")
    fig.add_argument("--features", required=True, help="labelled features (e.g. the test set)")
    fig.add_argument("--base-model", default=None, help="base model folder, for the difference")
    fig.add_argument("--out", required=True, help="folder for the PNG files")
    add_overwrite(fig)
    fig.set_defaults(func=cmd_figures)

    demo = command(
        "demo", help="Fashion-MNIST-LT end to end: backbone, features, base vs base + DLSA"
    )
    add_dataclass_arguments(demo, DemoSettings, skip=frozenset({"device"}))
    demo.add_argument("--out", default="dlsa-demo", help="results folder")
    add_overwrite(demo)
    add_config_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    pr = command("predict", help="predict labels of (unlabelled) features")
    pr.add_argument("--model", required=True, help="model folder written by fit")
    pr.add_argument("--features", required=True, help="features (labels optional)")
    pr.add_argument("--out", required=True, help="predictions file (.npz or .csv)")
    add_overwrite(pr)
    add_test_prior(pr, "replaces the model's own")
    pr.set_defaults(func=cmd_predict)

    add_train_command(command("train", help="stage 1: train a backbone on image files"))
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


def add_overwrite(parser: argparse.ArgumentParser, what: str = "--out") -> None:
    """``--overwrite``: replace an existing output, only if dlsa wrote it
    (:mod:`dlsa.io.outputs`)."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help=f"replace an existing {what} written by dlsa (anything else is refused)",
    )  # fmt: skip


def add_test_prior(parser: argparse.ArgumentParser, note: str) -> None:
    """The ``--test-prior`` flag (:meth:`dlsa.DLSAClassifier.set_test_prior`)."""
    parser.add_argument(
        "--test-prior",
        default=None,
        help="class frequencies of the data to predict on: uniform, train, a .json / .csv "
        "file of frequencies by class name, or estimate (EM on the unlabelled features to "
        "predict) / estimate-bbse (BBSE, on a held-out confusion matrix); Bayes' rule on "
        f"the scores; {note}",
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` / ``--scheduler``: where the independent fits run
    (:func:`dlsa.engine.parallel.cluster`)."""
    parser.add_argument(
        "--backend",
        default="loky",
        choices=BACKENDS,
        help="where the selection's fold fits, the safeguard's folds and compare's seeds "
        "run: loky (local processes, --n-jobs), dask or ray (every fit at once on the "
        "cluster's workers; same results as loky with one thread per fit)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="the cluster's address (dask: tcp://host:8786, e.g. a dask-jobqueue "
        "SLURMCluster's; ray: ray://host:10001 or auto); default: a local cluster",
    )


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
