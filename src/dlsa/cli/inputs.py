"""Every input of a command, read and checked together before anything is fitted or
written.

A command that fits (``fit``, ``diagnose``, ``compare``) reads ``--train`` and each of
``--val`` / ``--test`` it takes and checks that they agree: the feature dimension, labels
of the training labels' kind and among its classes, the validation rows ``--calibrate``
needs, no more clusters or folds than the training data can feed, ``--test-prior`` against
the training classes, and ``compare``'s ``--bases`` and ``--seeds``. A command on a saved
model (``evaluate``, ``predict``, ``figures``) checks ``--features`` (its dimension, and
its labels when the command scores them) and ``--base-model`` against ``--model``.

Each problem is one :class:`~dlsa.cli.common.CLIError` naming the flag and the file at
fault, e.g. ``--val val.h5: labels not seen in --train: [9]``, raised before the first
fit: a bad file never costs a training run, and never reaches the fit to be blamed on
``--train``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsa.cascade.deployment_prior import PriorSpec, resolve_test_prior
from dlsa.cascade.prior_estimate import METHODS as ESTIMATORS
from dlsa.cascade.temperature import MIN_SAMPLES
from dlsa.cli.common import CLIError, one_line, read_test_prior
from dlsa.config import DLSAConfig
from dlsa.errors import DLSAInputError
from dlsa.estimator import DLSAClassifier
from dlsa.estimator.inputs import fit_data, label_kind
from dlsa.io.feature_chunks import feature_file_info, read_labels
from dlsa.io.features import FeatureSet, load_features
from dlsa.stage2.bases import BASES


@dataclass(frozen=True)
class TrainingInputs:
    """The checked inputs of a command that fits.

    Attributes:
        train: ``--train``.
        test: ``--test`` (None where the command has none).
        val: ``--val`` (None without it).
        test_prior: ``--test-prior`` as read (:func:`dlsa.cli.common.read_test_prior`),
            known to resolve against the training classes; None without the flag.
    """

    train: FeatureSet
    test: FeatureSet | None = None
    val: FeatureSet | None = None
    test_prior: PriorSpec = None


def flagged(flag: str, path: str, err: BaseException) -> str:
    """``<flag> <path>: <message>`` on one line, the path said once (a message of
    :mod:`dlsa.io.features` starts with it).

    Example:
        >>> flagged("--val", "v.h5", ValueError("v.h5: no such feature file"))
        '--val v.h5: no such feature file'
    """
    text = one_line(err)
    for prefix in (f"{path}: ", f"{Path(path)}: "):
        if text.startswith(prefix):
            return f"{flag} {path}: {text[len(prefix) :]}"
    return f"{flag} {path}: {text}"


def load_flag(path: str, flag: str, *, require_labels: bool = True) -> FeatureSet:
    """The feature file of ``flag``, read whole and checked (shape, finite values, labels)."""
    try:
        return load_features(path, require_labels=require_labels)
    except DLSAInputError as err:
        raise CLIError(flagged(flag, path, err)) from err


def training_inputs(
    args: argparse.Namespace, *fits: Mapping[str, Any] | DLSAConfig
) -> TrainingInputs:
    """Read and check ``--train`` and the ``--val``, ``--test``, ``--calibrate`` and
    ``--test-prior`` the command has; ``fits`` are the estimator parameters of the fits
    the command runs on ``--train`` (a config stands for ``config.estimator_params()``):
    every check such a fit makes before training (:func:`dlsa.estimator.inputs.fit_data`)
    runs here, before the first fit of the command.

    Raises:
        CLIError: naming the flag and file of the first problem found.
    """
    train = load_flag(args.train, "--train")
    read: dict[str, FeatureSet] = {}
    for name in ("val", "test"):
        path = getattr(args, name, None)
        if path is not None:
            read[name] = load_flag(path, f"--{name}")
            check_like_training(read[name], f"--{name}", train, args.train)
    val = read.get("val")
    for params in fits:
        if isinstance(params, DLSAConfig):
            params = params.estimator_params()
        try:
            fit_data(params, train.X, train.y, *((val.X, val.y) if val is not None else ()))
        except DLSAInputError as err:
            raise CLIError(f"--train {args.train}: {one_line(err)}") from err
    if getattr(args, "calibrate", False):
        check_calibration(read.get("val"), getattr(args, "val", None))
    prior = training_prior(getattr(args, "test_prior", None), train)
    return TrainingInputs(train, read.get("test"), read.get("val"), prior)


def check_like_training(data: FeatureSet, flag: str, train: FeatureSet, train_path: str) -> None:
    """``data`` (of ``flag``) has the dimension of ``--train`` and labels among its
    classes, of its kind."""
    if data.X.shape[1] != train.X.shape[1]:
        raise CLIError(
            f"{flag} {data.path} has {data.X.shape[1]} features but --train {train_path} "
            f"has {train.X.shape[1]}"
        )
    assert data.y is not None and train.y is not None  # both read with require_labels
    check_labels_in(data.y, np.unique(train.y), f"{flag} {data.path}", "--train")


def check_labels_in(y: np.ndarray, classes: np.ndarray, where: str, trained: str) -> None:
    """Labels ``y`` (N,) are of the kind of ``classes`` (C,) and each one of them;
    ``where`` is the flag and file of ``y``, ``trained`` what ``classes`` come from.

    Example:
        >>> check_labels_in(np.array([1, 9]), np.array([0, 1]), "--val v.h5", "--train")
        Traceback (most recent call last):
        dlsa.cli.common.CLIError: --val v.h5: labels not seen in --train: [9]
    """
    kind, trained_kind = label_kind(y), label_kind(classes)
    if kind != trained_kind:
        raise CLIError(f"{where}: labels are {kind} but {trained} has {trained_kind} labels")
    unknown = np.setdiff1d(y, classes)
    if unknown.size:
        more = f" and {unknown.size - 5} more" if unknown.size > 5 else ""
        raise CLIError(f"{where}: labels not seen in {trained}: {unknown[:5].tolist()}{more}")


def check_calibration(val: FeatureSet | None, path: str | None) -> None:
    """``--calibrate`` on ``--val`` needs :data:`dlsa.cascade.temperature.MIN_SAMPLES`
    validation rows (without ``--val`` it calibrates out of fold on ``--train``)."""
    if val is not None and len(val.X) < MIN_SAMPLES:
        raise CLIError(
            f"--val {path}: --calibrate needs at least {MIN_SAMPLES} validation rows, "
            f"got {len(val.X)}"
        )


def training_prior(arg: str | None, train: FeatureSet) -> PriorSpec:
    """``--test-prior`` read, and resolved once against the classes and counts of
    ``--train`` (a class it names must be one of them, and it must name them all)."""
    spec = read_test_prior(arg)
    if spec is None or (isinstance(spec, str) and spec in ESTIMATORS):  # made on --test
        return spec
    classes, counts = np.unique(train.y, return_counts=True)
    try:
        resolve_test_prior(spec, classes, counts)
    except DLSAInputError as err:
        raise CLIError(f"--test-prior {arg}: {one_line(err)} (classes of --train)") from err
    return spec


def compare_lists(args: argparse.Namespace, config: DLSAConfig) -> tuple[list[str], list[int]]:
    """``compare``'s ``--bases`` (known, no repeats) and ``--seeds`` (integers >= 0, no
    repeats), and a config with flow filters to compare with (``depth >= 1``)."""
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    unknown = [b for b in bases if b not in BASES]
    if not bases or unknown or len(set(bases)) != len(bases):
        why = f"unknown {unknown}" if unknown else "empty or repeated"
        raise CLIError(f"--bases {args.bases!r}: {why}; choose from {sorted(BASES)}")
    try:
        seeds = [int(v) for v in args.seeds.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise CLIError(
            f"--seeds {args.seeds!r}: expected distinct integers >= 0, separated by commas"
        )
    if config.depth < 1:
        raise CLIError(f"--depth {config.depth}: compare needs flow filters (depth >= 1)")
    return bases, seeds


def check_features_for(
    model: DLSAClassifier, model_path: str, path: str, *, labelled: bool, flag: str = "--features"
) -> None:
    """The feature file ``path`` (of ``flag``) fits the model of ``--model model_path``:
    its dimension, and (``labelled``) labels present, of the model's kind and among its
    classes. Reads the file's metadata and labels, not its features (those are read in
    chunks by the command, their values checked then)."""
    try:
        dim = feature_file_info(path).dim
        y = read_labels(path) if labelled else None
    except DLSAInputError as err:
        raise CLIError(flagged(flag, path, err)) from err
    if dim != model.n_features_in_:
        raise CLIError(
            f"{flag} {path} has {dim} features but --model {model_path} has {model.n_features_in_}"
        )
    if not labelled:
        return
    if y is None:
        raise CLIError(f"{flag} {path}: no 'labels' dataset (labels are required here)")
    check_labels_in(y, model.classes_, f"{flag} {path}", f"--model {model_path}")


def check_base_model(model: DLSAClassifier, base: DLSAClassifier, paths: tuple[str, str]) -> None:
    """``--base-model`` (``paths[1]``) was fitted on the features and classes of
    ``--model`` (``paths[0]``), as ``dlsa fit`` writes the two."""
    same = base.n_features_in_ == model.n_features_in_ and (
        label_kind(base.classes_) == label_kind(model.classes_)
        and np.array_equal(base.classes_, model.classes_)
    )
    if not same:
        raise CLIError(
            f"--base-model {paths[1]}: {base.n_features_in_} features and "
            f"{len(base.classes_)} classes, not those of --model {paths[0]} "
            f"({model.n_features_in_} features, {len(model.classes_)} classes)"
        )
