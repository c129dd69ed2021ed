"""The flags of each ``dlsa`` command, one function per command (``dlsa train``'s are
generated in :mod:`dlsa.cli.train`), and :data:`COMMANDS`, the commands in the order
``dlsa --help`` lists them. :func:`dlsa.cli.parser.build_parser` adds them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

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
from dlsa.cli.extract import SUBSETS, cmd_extract
from dlsa.cli.flags import add_config_arguments, add_dataclass_arguments
from dlsa.cli.train import add_train_command
from dlsa.engine.parallel import BACKENDS
from dlsa.stage2.bases import BASES


def add_fit(parser: argparse.ArgumentParser) -> None:
    """``dlsa fit``: train, test and results folder, the reference base, calibration,
    the test prior, where fits run, and the configuration flags."""
    parser.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    parser.add_argument("--test", required=True, help="test features, used once at the end")
    parser.add_argument("--out", required=True, help="results folder")
    add_val(parser)
    add_overwrite(parser)
    parser.add_argument(
        "--reference",
        default=None,
        choices=sorted(BASES),
        help="base method fitted alone beside the chosen model, to show what the choice "
        "bought (default: --base, or balsoftmax when the base is chosen by selection)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="temperature-scale both models' probabilities: on --val if given, else out of "
        "fold on --train (3 more fits each); saved with the models",
    )
    add_test_prior(parser, "saved with both models; --test is scored with it")
    add_cluster_arguments(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=cmd_fit)


def add_diagnose(parser: argparse.ArgumentParser) -> None:
    """``dlsa diagnose``: train features, the reference base, an optional JSON output,
    --val, where fits run, and the configuration flags."""
    parser.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    parser.add_argument(
        "--reference", default=None, choices=sorted(BASES),
        help="base method DLSA is measured against (default: --base, or balsoftmax)",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="optional JSON file for the diagnosis")
    add_overwrite(parser)
    add_val(parser)
    add_cluster_arguments(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=cmd_diagnose)


def add_evaluate(parser: argparse.ArgumentParser) -> None:
    """``dlsa evaluate``: a saved model, labelled features, optional outputs, the test
    prior."""
    parser.add_argument("--model", required=True, help="model folder written by fit")
    parser.add_argument("--features", required=True, help="labelled features")
    parser.add_argument("--out", default=None, help="optional JSON file for the metrics")
    parser.add_argument("--per-class", default=None, help="optional CSV file of per-class results")
    add_overwrite(parser, "--out / --per-class")
    add_test_prior(parser, "replaces the model's own")
    parser.set_defaults(func=cmd_evaluate)


def add_compare(parser: argparse.ArgumentParser) -> None:
    """``dlsa compare``: train and test features, the bases and seeds, the results
    folder, where fits run, and the configuration flags."""
    parser.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    parser.add_argument("--test", required=True, help="test features, used once per model")
    parser.add_argument(
        "--bases",
        default="balsoftmax,cbs,cosine,m2m,ride",
        help="comma-separated base methods, of: "
        + ", ".join(sorted(BASES))
        + "; the first one's filters are shared",
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit the scikit-learn peer (StandardScaler + LogisticRegressionCV, "
        'class_weight="balanced", C of 0.001 ... 1 on 3 folds) once, as the last row '
        "(default: on)",
    )
    parser.add_argument("--out", required=True, help="results folder")
    add_overwrite(parser)
    add_cluster_arguments(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=cmd_compare)


def add_extract(parser: argparse.ArgumentParser) -> None:
    """``dlsa extract``: the backbone, the images, their preprocessing, the feature file
    and how the forward passes run."""
    _add_extract_backbone(parser)
    _add_extract_images(parser)
    _add_extract_preprocessing(parser)
    parser.add_argument(
        "--out", required=True, help="feature file (.h5/.hdf5/.npz), and OUT.files.csv beside it"
    )
    add_overwrite(parser)
    parser.add_argument(
        "--device", default="cpu",
        help="cpu, cuda, cuda:1 ..., or auto (cuda:LOCAL_RANK when CUDA is available, one "
        "GPU per process under torchrun)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=0, help="image-loading processes")
    parser.set_defaults(func=cmd_extract)


def _add_extract_backbone(parser: argparse.ArgumentParser) -> None:
    """``dlsa extract``'s encoder (--backbone, --weights) and what it stores of each
    image (--float16, --flip-average)."""
    parser.add_argument(
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
    parser.add_argument(
        "--weights",
        default=None,
        help="local weights file of a LIBRARY:MODEL (required) or MODULE:CALLABLE "
        "(optional) backbone (.safetensors, .pth read without running pickled code; "
        "nothing is downloaded)",
    )
    parser.add_argument(
        "--float16", action="store_true", help="store the features as float16 (half the file)"
    )
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="average the features of each image and of its horizontal mirror",
    )


def _add_extract_images(parser: argparse.ArgumentParser) -> None:
    """``dlsa extract``'s images: the folder, the split list, the subset of a train
    run's images, and whether the backbone trained on them."""
    parser.add_argument(
        "--images",
        required=True,
        help="folder of image files (unlabelled), class folders (labelled in the "
        "backbone's class order, as dlsa train reads them), or the root of --split-list",
    )
    parser.add_argument(
        "--split-list", default=None, help="'relative/path label' lines (labelled)"
    )
    parser.add_argument(
        "--subset", default="all", choices=SUBSETS,
        help="of a dlsa train run's own --images: all, train (only the images it trained "
        "on) or holdout (only those it held out: features of unseen images, e.g. for --val)",
    )  # fmt: skip
    parser.add_argument(
        "--backbone-trained-on", default=None, choices=("seen", "unseen", "unknown"),
        help="whether the backbone trained on these images, recorded in --out for the "
        "model selection (default: worked out from a dlsa train run folder, else unknown: "
        "a pretrained encoder may have trained on them)",
    )  # fmt: skip


def _add_extract_preprocessing(parser: argparse.ArgumentParser) -> None:
    """``dlsa extract``'s preprocessing: image side, resize, channel mean and std."""
    parser.add_argument(
        "--size", type=int, default=None,
        help="image side (default: the backbone's recorded size, or the pretrained model's)",
    )  # fmt: skip
    parser.add_argument(
        "--resize", type=int, default=None,
        help="shorter side before the center crop to --size (default: the pretrained "
        "model's ratio, e.g. 256 for 224; none for a run folder)",
    )  # fmt: skip
    parser.add_argument("--mean", default=None, help="R,G,B input mean of a MODULE:CALLABLE")
    parser.add_argument("--std", default=None, help="R,G,B input std of a MODULE:CALLABLE")


def add_figures(parser: argparse.ArgumentParser) -> None:
    """``dlsa figures``: a saved model (and optionally its base), labelled features, the
    figure folder."""
    parser.add_argument("--model", required=True, help="model folder written by fit")
    parser.add_argument("--features", required=True, help="labelled features (e.g. the test set)")
    parser.add_argument("--base-model", default=None, help="base model folder, for the difference")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    add_overwrite(parser)
    parser.set_defaults(func=cmd_figures)


def add_demo(parser: argparse.ArgumentParser) -> None:
    """``dlsa demo``: one flag per :class:`~dlsa.analysis.pipeline.DemoSettings` field
    (but the device), the results folder, and the configuration flags."""
    add_dataclass_arguments(parser, DemoSettings, skip=frozenset({"device"}))
    parser.add_argument("--out", default="dlsa-demo", help="results folder")
    add_overwrite(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=cmd_demo)


def add_predict(parser: argparse.ArgumentParser) -> None:
    """``dlsa predict``: a saved model, features, the predictions file, the test prior."""
    parser.add_argument("--model", required=True, help="model folder written by fit")
    parser.add_argument("--features", required=True, help="features (labels optional)")
    parser.add_argument("--out", required=True, help="predictions file (.npz or .csv)")
    add_overwrite(parser)
    add_test_prior(parser, "replaces the model's own")
    parser.set_defaults(func=cmd_predict)


def add_val(parser: argparse.ArgumentParser) -> None:
    """``--val``: labelled features the selection and the safeguard decide on."""
    parser.add_argument(
        "--val",
        default=None,
        help="labelled features of images the backbone did not train on (e.g. the data "
        "set's validation split): the selection and the safeguard decide on them instead "
        "of out of fold on the training features",
    )


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


COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("fit", "train base and base + DLSA, evaluate once on --test", add_fit),
    (
        "diagnose",
        "will DLSA help on these features? filters, separation, out-of-fold gain, verdict",
        add_diagnose,
    ),
    ("evaluate", "metrics of a saved model on labelled features", add_evaluate),
    ("compare", "every base alone and with DLSA, Table-1 layout", add_compare),
    ("extract", "embed image files with a stage-1 or pretrained backbone", add_extract),
    ("figures", "confusion, clusters, separation and t-SNE figures", add_figures),
    ("demo", "Fashion-MNIST-LT end to end: backbone, features, base vs base + DLSA", add_demo),
    ("predict", "predict labels of (unlabelled) features", add_predict),
    ("train", "stage 1: train a backbone on image files", add_train_command),
)
"""Each command: its name, its one-line help (``dlsa --help``) and the function that adds
its flags, in the order ``dlsa --help`` lists them."""
