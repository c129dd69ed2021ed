"""Reading and writing feature files: the original release's HDF5 layout and ``.npz``.

A feature file holds ``features`` of shape (N, D) (stored as float32) and, optionally,
``labels`` of shape (N,) (integers stored as int64; text labels, also bytes, as UTF-8
strings), plus optional text attributes: the split name, the backbone id and
``backbone_trained_on``, whether the backbone trained on these images ("seen", "unseen",
"mixed"; absent: "unknown"), which decides the evidence of the model selection
(``SelectionConfig.train_features``). The original DLSA release stored its features as
HDF5 with exactly these two datasets (it also accepted ``label``); we read and write that
layout.

Writes are atomic: the file is written beside its destination and renamed into place, so
a failed write never leaves a half-written file.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dlsa.errors import DLSAInputError
from dlsa.io.outputs import output_file

SUFFIXES = (".h5", ".hdf5", ".npz")
"""File suffixes understood by :func:`load_features` and :func:`save_features`."""

PROVENANCES = ("seen", "unseen", "mixed", "unknown")
"""Values of ``backbone_trained_on``: the backbone trained on all, none or some of the
images of a feature file, or nobody knows."""
_ATTRS = ("split", "backbone", "backbone_trained_on")


class FeatureFileError(DLSAInputError):
    """A feature file that cannot be read or does not follow the schema."""


class FeatureTypeError(FeatureFileError, TypeError):
    """Features of a type that is not a number (an object array holding, say, a dict);
    also a :class:`TypeError`, as numpy and scikit-learn raise for such values."""


@dataclass(frozen=True)
class FeatureSet:
    """Features and labels read from one file.

    Attributes:
        X: features of shape (N, D), float32.
        y: labels of shape (N,): int64, str (text or bytes labels) or bool; None for an
            unlabelled file.
        split: split name stored in the file ("train", "test", ...), if any.
        backbone: id of the model that produced the features, if any.
        path: the file the set was read from, if any.
        provenance: whether the backbone trained on these images (``backbone_trained_on``,
            one of :data:`PROVENANCES`; "unknown" for a file that does not say).
    """

    X: np.ndarray
    y: np.ndarray | None
    split: str | None = None
    backbone: str | None = None
    path: str | None = None
    provenance: str = "unknown"


def check_features(
    X: np.ndarray,
    y: np.ndarray | None = None,
    *,
    source: str = "features",
    first_row: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and convert a feature matrix and optional labels.

    Args:
        X: array-like of shape (N, D) with finite values.
        y: optional array-like of shape (N,) of labels (see :func:`check_labels`).
        source: name used in error messages (a file path, or "X").
        first_row: row number of ``X[0]`` in its file, added to the row an error names
            (for a chunk of a larger file).

    Returns:
        ``X`` as float32 (N, D) and ``y`` (N,) as int64, str or bool (or None).

    Raises:
        FeatureFileError: on a wrong shape, non-finite values, labels refused by
            :func:`check_labels`, or a feature/label count mismatch; the message names
            ``source``.

    Example:
        >>> X, y = check_features([[0.0, 1.0], [2.0, 3.0]], [3, 7])
        >>> X.dtype, y.dtype
        (dtype('float32'), dtype('int64'))
    """
    numbers = _real_matrix(X, source)
    with np.errstate(over="ignore"):
        X = numbers.astype(np.float32, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        what = "NaN or inf value(s)"
        if np.isfinite(numbers[row, col]):  # finite, but beyond float32
            what = f"NaN, inf or beyond-float32 (|x| > {np.finfo(np.float32).max:.3g}) value(s)"
        raise FeatureFileError(
            f"{source}: features contain {int(bad.sum())} {what} "
            f"(first at row {row + first_row}, column {col}: {numbers[row, col]})"
        )
    if y is None:
        return X, None
    return X, check_labels(y, X.shape[0], source=source)


def _real_matrix(X: object, source: str) -> np.ndarray:
    """``X`` as a real (N, D) array with N, D >= 1, or one line saying why not (in
    scikit-learn's words where it has them: sparse, reshape, 0 samples, complex)."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise FeatureFileError(
            f"{source}: sparse input is not supported; pass a dense array (X.toarray())"
        )
    X = np.asarray(X)
    if X.ndim == 1:
        raise FeatureFileError(
            f"{source}: features must have shape (N, D), got {X.shape}. Reshape your data "
            "with X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it "
            "is a single sample"
        )
    if X.ndim != 2:
        raise FeatureFileError(f"{source}: features must have shape (N, D), got {X.shape}")
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise FeatureFileError(
                f"{source}: 0 {what}(s) (shape={X.shape}) while a minimum of 1 is required."
            )
    if X.dtype.kind == "c":
        raise FeatureFileError(
            f"{source}: features must be real numbers, got {X.dtype} (Complex data not supported)"
        )
    if X.dtype.kind == "O":
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise FeatureTypeError(f"{source}: features must be numeric: {err}") from err
    if not np.issubdtype(X.dtype, np.number):
        raise FeatureFileError(f"{source}: features must be numeric, got dtype {X.dtype}")
    return X


def check_labels(y: np.ndarray, n_rows: int, *, source: str = "labels") -> np.ndarray:
    """Validate labels of any type and bring them to one of three dtypes.

    Args:
        y: array-like of shape (N,) or (N, 1): integers, integral floats, booleans, text
            (``str``) or UTF-8 ``bytes`` (HDF5 string datasets are read as bytes).
        n_rows: the number of feature rows N the labels must match.
        source: name used in error messages.

    Returns:
        Labels (N,): int64 for numbers, str (numpy ``U``) for text and bytes, bool for
        booleans.

    Raises:
        FeatureFileError: on a wrong shape, a count mismatch, non-integral or non-finite
            numbers, bytes that are not UTF-8, or values of mixed or other types.

    Example:
        >>> check_labels(np.array([b"cat", b"dog"]), 2).tolist()
        ['cat', 'dog']
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise FeatureFileError(f"{source}: labels must have shape (N,), got {y.shape}")
    if y.shape[0] != n_rows:
        raise FeatureFileError(f"{source}: {n_rows} feature rows but {y.shape[0]} labels")
    kind = y.dtype.kind
    if kind == "b":
        return y
    if kind in "iuf":
        return _integer_labels(y, source)
    if kind in "USO":
        return _text_labels(y, source)
    raise FeatureFileError(
        f"{source}: labels must be integers, text or booleans, got dtype {y.dtype}"
    )


def _integer_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Numeric labels (N,) as int64, refusing fractions, non-finite and huge values."""
    limit = np.iinfo(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise FeatureFileError(
                f"{source}: labels must be integers or text, got non-integral {y.dtype} "
                "values (Unknown label type: continuous; this is a classifier)"
            )
    if y.size and (y.max() > limit.max or y.min() < limit.min):
        raise FeatureFileError(f"{source}: integer labels must fit in int64")
    return y.astype(np.int64)


def _text_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Text or bytes labels (N,) as a numpy str array (bytes decoded as UTF-8)."""
    values = y.tolist()
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return _integer_labels(np.array(values), source)  # an object array of ints
    if not all(isinstance(v, str | bytes) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise FeatureFileError(
            f"{source}: labels must all be text or all integers, got {kinds} (Unknown label type)"
        )
    try:
        text = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
    except UnicodeDecodeError as err:
        raise FeatureFileError(f"{source}: labels are bytes but not UTF-8 text ({err})") from err
    return np.array(text, dtype=str)


def load_features(path: str | os.PathLike[str], *, require_labels: bool = True) -> FeatureSet:
    """Read a feature file (.h5/.hdf5 or .npz).

    Args:
        path: the file.
        require_labels: raise if the file holds no labels.

    Returns:
        The validated :class:`FeatureSet`.

    Raises:
        FeatureFileError: if the file is missing, unreadable, of an unknown suffix, lacks
            ``features`` (or ``labels`` when required), or fails :func:`check_features`.
    """
    p, suffix = check_feature_path(path)
    try:
        raw = _read_h5(p) if suffix in (".h5", ".hdf5") else _read_npz(p)
    except FeatureFileError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{p}: cannot read as {suffix} feature file ({err})") from err
    X, y, attrs = raw
    if y is None and require_labels:
        raise FeatureFileError(f"{p}: no 'labels' dataset (labels are required here)")
    X, y = check_features(X, y, source=str(p))
    provenance = attrs["backbone_trained_on"] or "unknown"
    if provenance not in PROVENANCES:
        raise FeatureFileError(
            f"{p}: backbone_trained_on must be one of {PROVENANCES}, got {provenance!r}"
        )
    return FeatureSet(
        X=X, y=y, split=attrs["split"], backbone=attrs["backbone"], path=str(p),
        provenance=provenance,
    )  # fmt: skip


def check_feature_path(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The path of an existing feature file and its lower-case suffix.

    Raises:
        FeatureFileError: if the file is missing or its suffix is not in :data:`SUFFIXES`.
    """
    p = Path(path)
    if not p.is_file():
        raise FeatureFileError(f"{p}: no such feature file")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise FeatureFileError(f"{p}: unknown feature file suffix {suffix!r}; use {SUFFIXES}")
    return p, suffix


def save_features(
    path: str | os.PathLike[str],
    X: np.ndarray,
    y: np.ndarray | None = None,
    *,
    split: str | None = None,
    backbone: str | None = None,
    backbone_trained_on: str | None = None,
    float16: bool = False,
    overwrite: bool = True,
    flag: str | None = None,
) -> Path:
    """Write features (and labels) atomically to ``path`` (.h5/.hdf5 or .npz).

    An existing ``path`` is replaced only with ``overwrite`` and only if it is a feature
    file dlsa could have written (:mod:`dlsa.io.outputs`); anything else is refused.

    Args:
        path: destination; its suffix picks the format. Parent folders are created.
        X: features of shape (N, D).
        y: optional labels of shape (N,).
        split: optional split name stored as an attribute.
        backbone: optional backbone id stored as an attribute.
        backbone_trained_on: optional provenance stored as an attribute, one of
            :data:`PROVENANCES` (None: not stored, read back as "unknown").
        float16: store the features as float16 (half the file; read back as float32).
        overwrite: replace an existing feature file (False: refuse it, also when a
            second writer creates it meanwhile).
        flag: how error messages name ``path`` (``"--out"``), or None.

    Returns:
        The path written.

    Raises:
        FeatureFileError: on invalid arrays or an unknown suffix (nothing is written).
        OutputRefusedError: when ``path`` exists and may not be replaced.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise FeatureFileError(f"{p}: unknown feature file suffix {suffix!r}; use {SUFFIXES}")
    if backbone_trained_on is not None and backbone_trained_on not in PROVENANCES:
        raise FeatureFileError(
            f"{p}: backbone_trained_on must be one of {PROVENANCES}, got {backbone_trained_on!r}"
        )
    X, y = check_features(X, y, source=str(p))
    if float16:
        big = float(np.abs(X).max(initial=0.0))
        if big > np.finfo(np.float16).max:
            raise FeatureFileError(
                f"{p}: a feature of magnitude {big:.3g} does not fit float16 (max 65504)"
            )
        X = X.astype(np.float16)
    writer = _write_npz if suffix == ".npz" else _write_h5
    attrs = {"split": split, "backbone": backbone, "backbone_trained_on": backbone_trained_on}
    return output_file(p, lambda tmp: writer(tmp, X, y, attrs), overwrite=overwrite, flag=flag)


Attrs = dict[str, str | None]
"""The text attributes of a feature file (:data:`_ATTRS`; None when absent)."""


def _read_h5(p: Path) -> tuple[np.ndarray, np.ndarray | None, Attrs]:
    with h5py.File(p, "r") as fp:
        if not isinstance(fp.get("features"), h5py.Dataset):
            raise FeatureFileError(f"{p}: no 'features' dataset (found {sorted(fp.keys())})")
        X = fp["features"][...]
        key = "labels" if "labels" in fp else ("label" if "label" in fp else None)
        if key is not None and not isinstance(fp[key], h5py.Dataset):
            raise FeatureFileError(f"{p}: '{key}' is a group, not a dataset")
        y = fp[key][...] if key is not None else None
        attrs = {name: _text(fp.attrs.get(name)) for name in _ATTRS}
    return X, y, attrs


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray | None, Attrs]:
    loaded = np.load(p, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise FeatureFileError(f"{p}: holds a single array, not an .npz archive of arrays")
    with loaded as data:
        keys = set(data.files)
        if "features" not in keys:
            raise FeatureFileError(f"{p}: no 'features' array (found {sorted(keys)})")
        X = data["features"]
        y = data["labels"] if "labels" in keys else None
        attrs = {name: str(data[name]) if name in keys else None for name in _ATTRS}
    return X, y, attrs


def _write_h5(p: Path, X: np.ndarray, y: np.ndarray | None, attrs: Attrs) -> None:
    with h5py.File(p, "w") as fp:
        fp.create_dataset("features", data=X)
        if y is not None and y.dtype.kind == "U":
            fp.create_dataset("labels", data=y.astype(object), dtype=h5py.string_dtype())
        elif y is not None:
            fp.create_dataset("labels", data=y)
        for name, value in attrs.items():
            if value is not None:
                fp.attrs[name] = value


def _write_npz(p: Path, X: np.ndarray, y: np.ndarray | None, attrs: Attrs) -> None:
    arrays: dict[str, np.ndarray] = {"features": X}
    if y is not None:
        arrays["labels"] = y
    for name, value in attrs.items():
        if value is not None:
            arrays[name] = np.array(value)
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
