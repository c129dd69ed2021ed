"""Shared pieces of the ``dlsa`` commands: the one-line error type, the parser class,
seeding, reading ``--test-prior`` and ``--model``, writing outputs and logging (the
feature files are read and checked together by :mod:`dlsa.cli.inputs`; whether an output
may be written or replaced is decided by :mod:`dlsa.io.outputs`)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import typing
from pathlib import Path
from typing import Any

import numpy as np

from dlsa.cascade.prior_estimate import METHODS as ESTIMATORS
from dlsa.engine.progress import show_progress_lines
from dlsa.errors import DLSAInputError
from dlsa.estimator import DLSAClassifier
from dlsa.estimator.prior_estimate import set_estimated_prior
from dlsa.io.feature_chunks import iter_feature_chunks

logger = logging.getLogger("dlsa")


class CLIError(Exception):
    """A user error found by the command itself (a flag, an output path), reported as one
    line with exit status 2, like :class:`dlsa.errors.DLSAInputError`."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        """Print ``<prog>: error: <message>`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def seed_everything(seed: int | None) -> None:
    """Seed the global RNGs once, as a safety net for third-party code (with ``seed``
    modulo 2**32, numpy's range; the library draws from its own seeded generators)."""
    if seed is None:
        return
    import random

    import torch

    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global safety net, the library never uses it
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """The commit of the source tree dlsa runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def read_test_prior(arg: str | None) -> Any:
    """``--test-prior``: "uniform", "train", or a file of class frequencies by class name
    (.json: an object; .csv: ``class,frequency`` lines, an optional header first); None
    when the flag is absent."""
    if arg is None or arg in ("uniform", "train", *ESTIMATORS):
        return arg
    path = Path(arg)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected an object of class name -> frequency")
            return {str(k): _frequency(v) for k, v in data.items()}
        if path.suffix.lower() == ".csv":
            rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines()) if r]
            if rows and not _is_number(rows[0][-1]):
                rows = rows[1:]  # a header
            if any(len(r) != 2 for r in rows):
                raise ValueError("expected 'class,frequency' lines")
            return {r[0]: _frequency(r[1]) for r in rows}
    except (OSError, ValueError) as err:
        raise CLIError(f"--test-prior {path}: {err}") from err
    raise CLIError(
        f"--test-prior {arg}: use uniform, train, estimate, estimate-bbse, or a .json or .csv file"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _frequency(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"frequency {value!r} is not a number") from err


def apply_test_prior(model: DLSAClassifier, arg: str | None, features: str | None = None) -> None:
    """Set ``--test-prior`` on a fitted model (nothing when the flag is absent); an
    estimate (``estimate``, ``estimate-bbse``) is made on the rows of the feature file
    ``features`` (``--features``; labels never read), a chunk of rows at a time."""
    spec = read_test_prior(arg)
    if spec is None:
        return
    try:
        if isinstance(spec, str) and spec in ESTIMATORS:
            assert features is not None
            chunks = iter_feature_chunks(features, read_labels=False)
            set_estimated_prior(model, (chunk.X for chunk in chunks), spec)
        else:
            model.set_test_prior(spec)
    except DLSAInputError as err:
        raise CLIError(f"--test-prior {arg}: {one_line(err)}") from err


def set_fit_prior(model: DLSAClassifier, spec: Any, train: Any, test: Any, val: Any) -> None:
    """``fit --test-prior``: a prior given, or one estimated on the features of ``--test``
    (``test.X`` (M, D); its labels are never used for it). BBSE's held-out confusion
    matrix comes from ``--calibrate`` when it ran, else from ``--val``, else out of fold
    on ``--train`` (3 more fits of the model's configuration)."""
    try:
        if isinstance(spec, str) and spec in ESTIMATORS:
            if spec == "estimate-bbse" and model.held_out_confusion_ is None:
                if val is not None:
                    model.fit_held_out_confusion(val.X, val.y)
                else:
                    model.fit_held_out_confusion(train.X, train.y, out_of_fold=True)
            model.set_test_prior(spec, test.X)
        else:
            model.set_test_prior(spec)
    except (ValueError, FloatingPointError) as err:
        raise CLIError(f"--test-prior {spec}: {one_line(err)}") from err


def prior_record(model: DLSAClassifier) -> dict[str, Any]:
    """The test prior of a model for a JSON output: ``test_prior`` ("uniform", or class
    name -> frequency) and ``test_prior_estimate`` (how it was estimated, or None)."""
    prior = model.test_prior_
    names = map(str, model.classes_.tolist())
    shown = "uniform" if prior is None else dict(zip(names, prior.tolist(), strict=True))
    return {
        "test_prior": shown,
        "test_prior_estimate": getattr(model, "test_prior_estimate_", None),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Any) -> None:
    """Write JSON as UTF-8 (numpy values converted)."""
    path.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")


def load_model_arg(path: str) -> DLSAClassifier:
    try:
        return DLSAClassifier.load(path)
    except DLSAInputError as err:
        raise CLIError(f"--model: {err}") from err


def write_npz(
    p: Path, pred: np.ndarray, proba: np.ndarray, stage: np.ndarray, classes: np.ndarray
) -> None:
    with open(p, "wb") as fh:
        np.savez(fh, pred=pred, proba=proba.astype(np.float32), stage=stage, classes=classes)


def write_csv(p: Path, pred: np.ndarray, proba: np.ndarray, stage: np.ndarray) -> None:
    """One row per sample: index, predicted class name (quoted as CSV needs), confidence
    and stage."""
    with open(p, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["index", "pred", "confidence", "stage"])
        for i, (label, conf, s) in enumerate(zip(pred, proba.max(1), stage, strict=True)):
            writer.writerow([i, label, f"{conf:.6f}", s])


def setup_logging(args: argparse.Namespace) -> None:
    """Log to stderr: errors only with -q, dlsa's debug messages with -v, warnings (also
    Python warnings) otherwise; ``--log-level`` sets the root logger's level. When stderr
    is not a terminal (a CI log, ``nohup``, a notebook) and -q is not given, the phase
    lines of long runs go there too (:mod:`dlsa.engine.progress`)."""
    level = "ERROR" if args.quiet else (args.log_level or "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    logger.setLevel("DEBUG" if args.verbose else logging.NOTSET)
    show_progress_lines(args.quiet)


def one_line(err: BaseException) -> str:
    """An error message on one line (a multi-line message is joined with "; ")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__
