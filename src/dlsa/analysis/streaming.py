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
from dlsa.io.atomic import write_atomic
from dlsa.io.feature_chunks import CHUNK_ROWS, feature_file_info, iter_feature_chunks
from dlsa.metrics import HEAD_THRESHOLD
from dlsa.metrics.confusion import confusion_counts, report_from_confusion
from dlsa.metrics.per_class import class_stage_counts

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
    write_atomic(out, lambda tmp: writer(tmp, scored, model.classes_, n_rows))
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
    n_classes, n_levels = len(model.classes_), len(model.filters_)
    counts = model.class_counts_
    is_tail = counts <= head_threshold
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    # per stage: samples, correct predictions, samples of tail classes
    per_stage = np.zeros((3, n_levels + 1), dtype=np.int64)
    class_stage = np.zeros((n_classes, n_levels + 1), dtype=np.int64)
    for part in iter_predictions(model, path, chunk_rows=chunk_rows, require_labels=True):
        assert part.y is not None  # require_labels
        target = encode_labels(model, part.y, source=source or str(path))
        pred = part.proba.argmax(axis=1)
        matrix += confusion_counts(pred, target, n_classes)
        per_stage += _stage_counts(pred, target, part.stage, is_tail, n_levels)
        class_stage += class_stage_counts(target, part.stage, n_classes, n_levels + 1)
    return {
        "metrics": report_from_confusion(matrix, counts, many=many, few=few),
        "stages": _stage_table(per_stage, n_levels),
        "separation": _separation(per_stage, n_levels, bool(is_tail.any())),
        "confusion": matrix,
        "class_stage": class_stage,
    }


def _stage_counts(
    pred: np.ndarray, target: np.ndarray, stage: np.ndarray, is_tail: np.ndarray, n_levels: int
) -> np.ndarray:
    """Counts (3, S) of one chunk: samples, correct and tail samples per stage
    (S = n_levels + 1; the last is the regular classifier)."""
    size = n_levels + 1
    return np.stack(
        [
            np.bincount(stage, minlength=size),
            np.bincount(stage[pred == target], minlength=size),
            np.bincount(stage[is_tail[target]], minlength=size),
        ]
    )[:, :size]


def _stage_table(per_stage: np.ndarray, n_levels: int) -> list[dict[str, Any]]:
    """The ``stages`` rows of :func:`dlsa.analysis.evaluation.evaluate` from the (3, S) counts."""
    rows = []
    for s in range(n_levels + 1):
        n, correct, tail = (int(v) for v in per_stage[:, s])
        rows.append(
            {
                "stage": "regular" if s == n_levels else f"cluster-aided {s + 1}",
                "n": n,
                "accuracy": correct / n if n else None,
                "tail_share": tail / n if n else None,
            }
        )
    return rows


def _separation(per_stage: np.ndarray, n_levels: int, has_tail: bool) -> list[dict[str, Any]]:
    """The ``separation`` rows of :func:`dlsa.analysis.evaluation.evaluate` (one per filter, see
    :func:`dlsa.metrics.head_tail_separation`) from the (3, S) counts: the samples that
    reached filter ``l`` are those of stages ``>= l``, it selected those of stage ``l``."""
    out: list[dict[str, Any]] = []
    for level in range(n_levels):
        n_input = int(per_stage[0, level:].sum())
        if n_input == 0 or not has_tail:
            out.append({"accuracy": None, "n_input": 0, "n_selected": 0})
            continue
        n_selected, tail_selected = int(per_stage[0, level]), int(per_stage[2, level])
        share = tail_selected / n_selected if n_selected else None
        out.append(
            {
                "accuracy": share,
                "tail_share_selected": share,
                "tail_share_input": int(per_stage[2, level:].sum()) / n_input,
                "n_selected": n_selected,
                "n_input": n_input,
            }
        )
    return out
