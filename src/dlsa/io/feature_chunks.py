"""Reading a feature file in chunks of rows, so a file larger than memory can be scored.

:func:`iter_feature_chunks` yields the rows of a feature file (the layout of
:mod:`dlsa.io.features`) ``chunk_rows`` at a time, validated as :func:`dlsa.io.features.
load_features` validates the whole file: the same shape, dtype and label checks, and a
non-finite value is reported with its row in the file. :func:`feature_file_info` reads
only the file's metadata, :func:`read_labels` only its labels.

How each format is read:

* HDF5: slices of the ``features`` (and ``labels``) datasets, contiguous or chunked.
* ``.npz`` written by ``np.savez`` (members stored uncompressed, as
  :func:`dlsa.io.features.save_features` writes them): each chunk is read at its byte offset
  inside the archive, without loading the rest.
* ``.npz`` written by ``np.savez_compressed`` (or with a Fortran-ordered array): a
  compressed member cannot be read from the middle, so that array is read whole on the
  first chunk; memory is then that of :func:`dlsa.io.features.load_features`.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from dlsa.errors import DLSAInputError
from dlsa.io.features import FeatureFileError, check_feature_path, check_features, check_labels

CHUNK_ROWS = 16384
"""Default rows per chunk: 128 MiB of float32 features at D = 2048."""

_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, struct.error)


@dataclass(frozen=True)
class FeatureChunk:
    """Consecutive rows of a feature file.

    Attributes:
        X: features of shape (B, D), float32, finite.
        y: labels of shape (B,) (int64, str or bool, see :func:`dlsa.io.features.check_labels`),
            or None when the file has none or they were not asked for.
        offset: row of ``X[0]`` in the file.
    """

    X: np.ndarray
    y: np.ndarray | None
    offset: int


@dataclass(frozen=True)
class FeatureFileInfo:
    """What a feature file holds, read from its metadata only.

    Attributes:
        path: the file.
        n_rows: number of samples N.
        dim: feature dimension D.
        has_labels: whether the file has labels.
        dtype: stored dtype of the features (converted to float32 when read).
        split: split name stored in the file, if any.
        backbone: backbone id stored in the file, if any.
        streamed: True when chunks are read on their own; False for a compressed
            ``.npz`` member, which is read whole (see the module docstring).
    """

    path: str
    n_rows: int
    dim: int
    has_labels: bool
    dtype: str
    split: str | None
    backbone: str | None
    streamed: bool


class _Rows(Protocol):
    """An array stored in a file whose rows can be read by slice."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __getitem__(self, rows: slice) -> np.ndarray: ...


class _StoredNpy:
    """An uncompressed ``.npy`` member of an ``.npz``, read row slices at a time."""

    def __init__(self, fh: object, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._fh = fh
        self._offset = offset
        self.shape = shape
        self.dtype = dtype
        self._row_bytes = int(dtype.itemsize * np.prod(shape[1:], dtype=np.int64))

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        n = max(stop - start, 0)
        buf = bytearray(n * self._row_bytes)
        self._fh.seek(self._offset + start * self._row_bytes)  # type: ignore[attr-defined]
        if self._fh.readinto(buf) != len(buf):  # type: ignore[attr-defined]
            raise EOFError("the archive ends inside an array (truncated file?)")
        return np.frombuffer(buf, dtype=self.dtype).reshape((n, *self.shape[1:]))


@dataclass
class _Source:
    """An open feature file: its features, labels (or None) and attributes."""

    features: _Rows
    labels: _Rows | None
    split: str | None
    backbone: str | None
    streamed: bool


def feature_file_info(path: str | os.PathLike[str]) -> FeatureFileInfo:
    """Size, dimension and labels of a feature file, without reading its data.

    Args:
        path: a ``.h5`` / ``.hdf5`` / ``.npz`` feature file.

    Returns:
        The :class:`FeatureFileInfo`.

    Raises:
        FeatureFileError: if the file is missing, unreadable, lacks ``features``, or its
            arrays have the wrong shape or dtype (the value checks happen when reading).
    """
    with _opened(path) as (p, src):
        n, d = src.features.shape
        return FeatureFileInfo(
            path=str(p),
            n_rows=int(n),
            dim=int(d),
            has_labels=src.labels is not None,
            dtype=str(src.features.dtype),
            split=src.split,
            backbone=src.backbone,
            streamed=src.streamed,
        )


def iter_feature_chunks(
    path: str | os.PathLike[str],
    chunk_rows: int = CHUNK_ROWS,
    *,
    require_labels: bool = False,
    read_labels: bool = True,
) -> Iterator[FeatureChunk]:
    """Validated rows of a feature file, ``chunk_rows`` at a time, in file order.

    Args:
        path: a ``.h5`` / ``.hdf5`` / ``.npz`` feature file.
        chunk_rows: rows per chunk B (the last chunk may be shorter).
        require_labels: raise before the first chunk if the file has no labels.
        read_labels: read the labels (if any); False yields chunks with ``y=None``.

    Yields:
        :class:`FeatureChunk` of X (B, D) float32 and y (B,) or None.

    Raises:
        DLSAInputError: on ``chunk_rows < 1``.
        FeatureFileError: what :func:`dlsa.io.features.load_features` refuses; a non-finite
            value is named by its row in the file. Value errors surface at the chunk that
            holds them, after the earlier chunks were yielded.

    Example:
        >>> import tempfile
        >>> from dlsa.io.features import save_features
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     f = save_features(f"{tmp}/f.h5", np.ones((5, 2)), ["a", "b", "a", "b", "a"])
        ...     [(c.offset, c.X.shape, c.y.tolist()) for c in iter_feature_chunks(f, 3)]
        [(0, (3, 2), ['a', 'b', 'a']), (3, (2, 2), ['b', 'a'])]
    """
    if chunk_rows < 1:
        raise DLSAInputError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with _opened(path) as (p, src):
        if src.labels is None and require_labels:
            raise FeatureFileError(f"{p}: no 'labels' dataset (labels are required here)")
        labels = src.labels if read_labels else None
        for start in range(0, src.features.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            try:
                X = src.features[rows]
                y = labels[rows] if labels is not None else None
            except _READ_ERRORS as err:
                raise FeatureFileError(f"{p}: cannot read rows from {start} ({err})") from err
            X, y = check_features(X, y, source=str(p), first_row=start)
            yield FeatureChunk(X=X, y=y, offset=start)


def read_labels(path: str | os.PathLike[str]) -> np.ndarray | None:
    """The checked labels (N,) of a feature file (see :func:`dlsa.io.features.check_labels`),
    or None when it has none, read without its features (a few bytes a row: a command
    checks them against a model's classes before it reads the features in chunks).

    Raises:
        FeatureFileError: as :func:`feature_file_info`, or on labels
            :func:`dlsa.io.features.check_labels` refuses.
    """
    with _opened(path) as (p, src):
        if src.labels is None:
            return None
        try:
            y = src.labels[slice(0, src.labels.shape[0])]
        except _READ_ERRORS as err:
            raise FeatureFileError(f"{p}: cannot read the labels ({err})") from err
        return check_labels(y, src.features.shape[0], source=str(p))


@contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[tuple[Path, _Source]]:
    """The open file and its checked :class:`_Source`; read errors as FeatureFileError."""
    p, suffix = check_feature_path(path)
    with ExitStack() as stack:
        try:
            if suffix == ".npz":
                src = _open_npz(p, stack)
            else:
                src = _open_h5(p, stack.enter_context(h5py.File(p, "r")))
        except FeatureFileError:
            raise
        except _READ_ERRORS as err:
            raise FeatureFileError(f"{p}: cannot read as {suffix} feature file ({err})") from err
        _check_shapes(p, src)
        yield p, src


def _check_shapes(p: Path, src: _Source) -> None:
    """The checks of :func:`dlsa.io.features.check_features` that need no values."""
    shape, dtype = src.features.shape, src.features.dtype
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise FeatureFileError(f"{p}: features must have shape (N, D), got {shape}")
    if not np.issubdtype(dtype, np.number):
        raise FeatureFileError(f"{p}: features must be numeric, got dtype {dtype}")
    if src.labels is None:
        return
    lshape = src.labels.shape
    if not (len(lshape) == 1 or (len(lshape) == 2 and lshape[1] == 1)):
        raise FeatureFileError(f"{p}: labels must have shape (N,), got {lshape}")
    if lshape[0] != shape[0]:
        raise FeatureFileError(f"{p}: {shape[0]} feature rows but {lshape[0]} labels")


def _open_h5(p: Path, fp: h5py.File) -> _Source:
    if not isinstance(fp.get("features"), h5py.Dataset):
        raise FeatureFileError(f"{p}: no 'features' dataset (found {sorted(fp.keys())})")
    key = "labels" if "labels" in fp else ("label" if "label" in fp else None)
    if key is not None and not isinstance(fp[key], h5py.Dataset):
        raise FeatureFileError(f"{p}: '{key}' is a group, not a dataset")
    return _Source(
        features=fp["features"],
        labels=fp[key] if key is not None else None,
        split=_text(fp.attrs.get("split")),
        backbone=_text(fp.attrs.get("backbone")),
        streamed=True,
    )


def _open_npz(p: Path, stack: ExitStack) -> _Source:
    archive = stack.enter_context(zipfile.ZipFile(p))
    names = set(archive.namelist())
    if "features.npy" not in names:
        found = sorted(n.removesuffix(".npy") for n in names)
        raise FeatureFileError(f"{p}: no 'features' array (found {found})")
    fh = stack.enter_context(open(p, "rb"))
    features = _npz_member(p, archive, fh, "features")
    labels = _npz_member(p, archive, fh, "labels") if "labels.npy" in names else None
    streamed = all(isinstance(a, _StoredNpy) for a in (features, labels) if a is not None)
    attrs = {k: _npz_text(p, k) if f"{k}.npy" in names else None for k in ("split", "backbone")}
    return _Source(features, labels, attrs["split"], attrs["backbone"], streamed)


def _npz_member(p: Path, archive: zipfile.ZipFile, fh: object, name: str) -> _Rows:
    """Member ``name`` of the archive: read by row slices when stored uncompressed in C
    order, else loaded whole."""
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
        stored = _stored_npy(fh, info.header_offset)
        if stored is not None:
            return stored
    with np.load(p, allow_pickle=False) as data:
        return data[name]


def _stored_npy(fh: object, header_offset: int) -> _StoredNpy | None:
    """The array behind a zip local file header at ``header_offset``, or None when it
    cannot be read by rows (Fortran order, object dtype, an unknown .npy version)."""
    fh.seek(header_offset)  # type: ignore[attr-defined]
    head = fh.read(30)  # type: ignore[attr-defined]
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    fh.seek(header_offset + 30 + name_len + extra_len)  # type: ignore[attr-defined]
    version = np.lib.format.read_magic(fh)
    readers = {(1, 0): np.lib.format.read_array_header_1_0}
    readers[(2, 0)] = np.lib.format.read_array_header_2_0
    if version not in readers:
        return None
    shape, fortran_order, dtype = readers[version](fh)
    if (fortran_order and len(shape) > 1) or dtype.hasobject or len(shape) == 0:
        return None
    return _StoredNpy(fh, fh.tell(), tuple(shape), dtype)  # type: ignore[attr-defined]


def _npz_text(p: Path, key: str) -> str:
    with np.load(p, allow_pickle=False) as data:
        return str(data[key])


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
