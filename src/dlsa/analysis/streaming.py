"""Predicting and evaluating a feature file of any size, one chunk of rows at a time.

The feature file is read ``chunk_rows`` rows at a time (:mod:`dlsa.io.feature_chunks`), each
chunk is scored by the fitted cascade, and what is kept between chunks is bounded by the
number of classes and stages, not by the number of rows:

* :func:`predict_file` appends each chunk's rows to the output (``.csv`` or ``.npz``,
  the files ``dlsa predict`` writes, built under a temporary name and renamed into place);
* :func:`evaluate_file` adds each chunk to a (C, C) confusion matrix and per-stage counts,
  from which the report of :func:`dlsa.analysis.evaluation.evaluate` is computed, equal to it;
* :func:`iter_predictions` yields each chunk's probabilities and stages (``route``).

Every row is routed and scored on its own, so the stages and predicted classes equal
those of scoring the whole file at once, and so do the metrics (tested with chunks of 7
rows). The probabilities agree to rounding (~1e-7), not always to the bit: a matrix
product of 1-3 rows takes another BLAS kernel than one of more rows (MKL on x86), and how
many samples of a chunk reach the same stage depends on the chunk. The in-memory path
has the same property at its :data:`dlsa.cascade.SCORE_CHUNK` boundaries.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from dlsa.analysis.evaluation import encode_labels
from dlsa.errors import DLSAInputError
from dlsa.estimator import DLSAClassifier
from dlsa.io.feature_chunks import CHUNK_ROWS, feature_file_info, iter_feature_chunks
from dlsa.io.outputs import output_file
from dlsa.metrics import HEAD_THRESHOLD
from dlsa.metrics.evaluation_counts import EvaluationCounts

OUTPUT_SUFFIXES = (".csv", ".npz")
"""Output formats of :func:`predict_file`, as ``dlsa predict --out`` accepts."""


@dataclass(frozen=True)
class ScoredChunk:
    """One chunk of a feature file and the cascade's output on it.

    Attributes:
        offset: row of the chunk's first sample in the file.
        proba: class probabilities (B, C), columns in the order of ``classes_``.
        stage: stage of each sample (B,), as :meth:`DLSAClassifier.route` returns it.
        y: labels (B,) read from the file, or None.
    """

    offset: int
    proba: np.ndarray
    stage: np.ndarray
    y: np.ndarray | None


def iter_predictions(
    model: DLSAClassifier,
    path: str | os.PathLike[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
    require_labels: bool = False,
) -> Iterator[ScoredChunk]:
    """:meth:`DLSAClassifier.predict_proba_and_route` on a feature file, chunk by chunk.

    Args:
        model: a fitted classifier.
        path: a feature file (.h5/.hdf5/.npz) of D = ``model.n_features_in_`` features.
        chunk_rows: rows read and scored at once.
        require_labels: refuse a file without labels (and read them: ``y`` is set).

    Yields:
        :class:`ScoredChunk` in file order.

    Raises:
        FeatureFileError: on a file :func:`dlsa.io.feature_chunks.iter_feature_chunks`
            refuses, or one of another dimension than the model's.
    """
    info = feature_file_info(path)
    if info.dim != model.n_features_in_:
        raise DLSAInputError(
            f"{info.path}: {info.dim} features per sample, but the model expects "
            f"{model.n_features_in_}"
        )
    chunks = iter_feature_chunks(
        path, chunk_rows, require_labels=require_labels, read_labels=require_labels
    )
    for chunk in chunks:
        proba, stage = model.predict_proba_and_route(chunk.X)
        yield ScoredChunk(offset=chunk.offset, proba=proba, stage=stage, y=chunk.y)


def predict_file(
    model: DLSAClassifier,
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
    overwrite: bool = True,
    flag: str | None = None,
) -> int:
    """Write the predictions of ``model`` on a feature file to ``out``, as ``dlsa
    predict`` does, reading and scoring ``chunk_rows`` rows at a time.

    ``.csv``: one row per sample, ``index,pred,confidence,stage`` (the class name, the
    largest probability with 6 decimals, the stage). ``.npz``: ``pred`` (N,) class names,
    ``proba`` (N, C) float32, ``stage`` (N,) int64 and ``classes`` (C,). Nothing is
    written if any chunk fails; ``out`` is replaced only at the end.

    Args:
        model: a fitted classifier.
        path: the feature file (labels, if any, are not read).
        out: destination, ``.csv`` or ``.npz``.
        chunk_rows: rows read and scored at once.
        overwrite: replace an existing ``out`` that dlsa wrote (anything else is
            refused; without it, an existing ``out`` is refused, also one a second
            writer creates meanwhile), as :func:`dlsa.io.outputs.output_file` does.
        flag: how error messages name ``out`` (``"--out"``), or None.

    Returns:
        The number of samples written.

    Raises:
        DLSAInputError: on another suffix of ``out``, or what :func:`iter_predictions`
            raises.
    """
    out = Path(out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise DLSAInputError(f"{out}: use a .npz or .csv file")
    n_rows = feature_file_info(path).n_rows
    scored = iter_predictions(model, path, chunk_rows=chunk_rows)
    writer = _write_csv if out.suffix == ".csv" else _write_npz

    def write(tmp: Path) -> None:
        writer(tmp, scored, model.classes_, n_rows)

    output_file(out, write, overwrite=overwrite, flag=flag)
    return n_rows


def _write_csv(tmp: Path, scored: Iterator[ScoredChunk], classes: np.ndarray, _: int) -> None:
    """The rows of ``dlsa predict``'s CSV (see ``dlsa.cli.common.write_csv``), a chunk
    at a time."""
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["index", "pred", "confidence", "stage"])
        for part in scored:
            pred = classes[part.proba.argmax(1)]
            rows = zip(pred, part.proba.max(1), part.stage, strict=True)
            for i, (label, conf, s) in enumerate(rows, start=part.offset):
                writer.writerow([i, label, f"{conf:.6f}", s])


def _write_npz(tmp: Path, scored: Iterator[ScoredChunk], classes: np.ndarray, n_rows: int) -> None:
    """``dlsa predict``'s .npz (the arrays ``np.savez`` writes there). ``proba`` is
    written a chunk at a time; the class indices and stages (N,) stay in memory until
    the end (16 bytes a sample), then ``pred`` is written by chunks too."""
    best = np.empty(n_rows, dtype=np.int64)
    stage = np.empty(n_rows, dtype=np.int64)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        proba_shape = (n_rows, len(classes))
        with _npy_member(zf, "proba", np.dtype(np.float32), proba_shape) as fh:
            for part in scored:
                rows = slice(part.offset, part.offset + part.proba.shape[0])
                best[rows] = part.proba.argmax(1)
                stage[rows] = part.stage
                fh.write(np.ascontiguousarray(part.proba, dtype=np.float32).tobytes())
        with _npy_member(zf, "pred", classes.dtype, (n_rows,)) as fh:
            for start in range(0, n_rows, CHUNK_ROWS):
                fh.write(classes[best[start : start + CHUNK_ROWS]].tobytes())
        _write_member(zf, "stage", stage)
        _write_member(zf, "classes", classes)


def _npy_member(zf: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple) -> IO[bytes]:
    """An open ``<name>.npy`` member of ``zf`` whose .npy header is written; the caller
    writes the C-ordered data."""
    fh = zf.open(f"{name}.npy", "w", force_zip64=True)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    np.lib.format.write_array_header_2_0(fh, header | {"shape": shape})
    return fh


def _write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)


def evaluate_file(
    model: DLSAClassifier,
    path: str | os.PathLike[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
    many: int = 100,
    few: int = 20,
    head_threshold: int = HEAD_THRESHOLD,
    source: str | None = None,
) -> dict[str, Any]:
    """:func:`dlsa.analysis.evaluation.evaluate` on a labelled feature file, chunk by chunk.

    Args:
        model: a fitted classifier.
        path: a labelled feature file.
        chunk_rows: rows read and scored at once.
        many: threshold of :func:`dlsa.metrics.shot_groups`.
        few: threshold of :func:`dlsa.metrics.shot_groups`.
        head_threshold: a class with more training samples than this is head.
        source: name of the labels in error messages (default: the path).

    Returns:
        ``metrics``, ``stages`` and ``separation`` equal to those of ``evaluate``, and
        ``confusion``, the (C, C) counts (rows true class, columns prediction, in the
        order of ``classes_``) and ``class_stage`` (C, S), the samples of each class per
        stage, as ``evaluate``'s, without its per-sample ``pred``/``stage``.

    Raises:
        DLSAInputError: as :func:`iter_predictions` (labels required), or on labels the
            model does not know (:func:`dlsa.analysis.evaluation.encode_labels`).
    """
    counts = EvaluationCounts(model.class_counts_, len(model.filters_), head_threshold)
    for part in iter_predictions(model, path, chunk_rows=chunk_rows, require_labels=True):
        assert part.y is not None  # require_labels
        target = encode_labels(model, part.y, source=source or str(path))
        counts.update(part.proba.argmax(axis=1), target, part.stage, part.proba)
    return counts.compute(many=many, few=few)
