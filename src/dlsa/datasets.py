"""Image data sets of the long-tailed benchmarks, read from local files only.

- Fashion-MNIST (idx files) and CIFAR-10/100 (the "python" pickle batches), made
  long-tailed with the exponential profile of :func:`dlsa.data.long_tailed_counts`;
  images come back as uint8 arrays, labels as int64.
- ImageNet-LT / Places-LT / iNaturalist 2018 through their split lists
  (``relative/path label`` per line) or plain class folders, read lazily by
  :class:`ImageListDataset` (Pillow, imported only when an image is opened).

Nothing is downloaded; a missing file raises an error that says how to get it. The
validation split of a long-tailed set is carved from its long-tailed train subset (see
:func:`split_long_tailed`), so picking an epoch never touches the test set.

References:
    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
    (the CIFAR-LT profile), NeurIPS 2019. https://arxiv.org/abs/1906.07413
    Liu et al., "Large-Scale Long-Tailed Recognition in an Open World" (ImageNet-LT,
    Places-LT split lists), CVPR 2019. https://arxiv.org/abs/1904.05160
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dlsa.data import long_tailed_counts, stratified_split

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs the idx files."""

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
"""The four idx files of Fashion-MNIST (a file without ``.gz`` is accepted too)."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Class names of Fashion-MNIST, in label order."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""File suffixes (lower case) read as images from class folders."""

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataFileError(ValueError):
    """A data file (idx file, pickle batch, split list) that is corrupt or malformed."""


@dataclass(frozen=True)
class ImageSplits:
    """Train/validation/test images and labels of one benchmark.

    Attributes:
        name: benchmark id, e.g. ``"fashion-mnist-lt-r100"``.
        train_images: uint8 images of shape (N, H, W) or (N, H, W, 3).
        train_labels: int64 labels of shape (N,).
        val_images: uint8 images of shape (M, H, W) or (M, H, W, 3).
        val_labels: int64 labels of shape (M,).
        test_images: uint8 images of shape (T, H, W) or (T, H, W, 3).
        test_labels: int64 labels of shape (T,).
        class_names: C names in label order.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


# --------------------------------------------------------------------------- idx files


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or raw.

    The header is checked: two zero bytes, a known type code, 1 to 4 dimensions, and a
    payload of exactly ``prod(dims)`` items.

    Args:
        path: the file; gzip is detected from its first bytes, not its name.

    Returns:
        The array with the shape of the header, in native byte order.

    Raises:
        FileNotFoundError: if the file is missing.
        DataFileError: on a corrupt header or a payload of the wrong size; the message
            names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such idx file")
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DataFileError(f"{p}: cannot decompress idx file ({err})") from err
    dtype, dims, offset = _idx_header(raw, p)
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise DataFileError(
            f"{p}: idx header announces shape {dims} ({expected} bytes) "
            f"but the file holds {len(raw) - offset} bytes of data"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _idx_header(raw: bytes, p: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataFileError(f"{p}: not an idx file (bad magic number {raw[:4].hex()!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataFileError(f"{p}: unknown idx data type code 0x{code:02x}")
    if not 1 <= ndim <= 4 or len(raw) < 4 + 4 * ndim:
        raise DataFileError(f"{p}: invalid idx header ({ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[code], dims, 4 + 4 * ndim


def load_fashion_mnist(
    root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the full, balanced Fashion-MNIST from its four idx files.

    Args:
        root: folder with the files of :data:`FASHION_MNIST_FILES` (gzipped or not).

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``: uint8 (60000, 28, 28),
        int64 (60000,), uint8 (10000, 28, 28), int64 (10000,).

    Raises:
        FileNotFoundError: if a file is missing; the message says how to get them.
        DataFileError: if a file is corrupt or images and labels disagree in number.
    """
    paths = {key: _find_idx(Path(root), name) for key, name in FASHION_MNIST_FILES.items()}
    arrays = {key: read_idx(p) for key, p in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(
                f"{paths[f'{split}_images']}: images of shape {images.shape} do not match "
                f"labels of shape {labels.shape} in {paths[f'{split}_labels']}"
            )
    return (
        arrays["train_images"].astype(np.uint8),
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"].astype(np.uint8),
        arrays["test_labels"].astype(np.int64),
    )


def _find_idx(root: Path, name: str) -> Path:
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    names = ", ".join(FASHION_MNIST_FILES.values())
    raise FileNotFoundError(
        f"Fashion-MNIST file {name} not found in {root}. Install it with "
        f"`apt-get install dataset-fashion-mnist` (files go to {FASHION_MNIST_ROOT}), "
        f"or pass a folder holding the four idx files: {names} (gzipped or not)."
    )


# ------------------------------------------------------------------ long-tailed subsets


def make_long_tailed(
    labels: np.ndarray, imbalance: float = 100, n_max: int | None = None, seed: int = 0
) -> np.ndarray:
    """Indices of a long-tailed subset with the exponential profile.

    Class ``c`` keeps ``long_tailed_counts(n_max, C, imbalance)[c]`` samples drawn
    without replacement, so class 0 is the largest (class order = label order).

    Args:
        labels: labels of shape (N,) in ``0 .. C-1``.
        imbalance: rho = n_max / n_min (>= 1).
        n_max: samples of class 0; None means the size of the smallest class.
        seed: seed of the draw; the same seed gives the same subset.

    Returns:
        Sorted int64 indices into ``labels``.

    Raises:
        ValueError: if a class has fewer samples than its profile asks for.

    Example:
        >>> idx = make_long_tailed(np.repeat(np.arange(3), 10), imbalance=4, n_max=8)
        >>> np.bincount(np.repeat(np.arange(3), 10)[idx]).tolist()
        [8, 4, 2]
    """
    labels = np.asarray(labels, dtype=np.int64)
    available = np.bincount(labels)
    size = int(available.min()) if n_max is None else n_max
    counts = long_tailed_counts(size, len(available), imbalance)
    short = np.flatnonzero(counts > available)
    if short.size:
        c = int(short[0])
        raise ValueError(
            f"class {c} has {available[c]} samples but the profile (n_max={size}, "
            f"imbalance={imbalance}) needs {counts[c]}"
        )
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def split_long_tailed(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    name: str,
    class_names: Sequence[str],
    imbalance: float,
    n_max: int | None,
    val_fraction: float,
    seed: int,
) -> ImageSplits:
    """Make a long-tailed train subset and carve a validation split from it.

    The validation split takes ``round(val_fraction * n_c)`` samples of each class of the
    long-tailed subset (:func:`dlsa.data.stratified_split`, at least one sample of each
    class stays in train), so it has the same long-tailed profile as train. The test set
    is passed through unchanged.

    Args:
        images: full train images of shape (N, ...).
        labels: their labels of shape (N,).
        test_images: test images of shape (T, ...).
        test_labels: test labels of shape (T,).
        name: benchmark id stored in the result.
        class_names: C names in label order.
        imbalance: rho of the profile.
        n_max: samples of class 0 before the validation split (None: smallest class).
        val_fraction: share of each class moved to validation, in [0, 1).
        seed: seed of the subset and of the split.

    Returns:
        The :class:`ImageSplits`.
    """
    subset = make_long_tailed(labels, imbalance=imbalance, n_max=n_max, seed=seed)
    fit, val = stratified_split(labels[subset], val_fraction, seed=seed + 1, min_per_class=1)
    return ImageSplits(
        name=name,
        train_images=images[subset[fit]],
        train_labels=labels[subset[fit]].astype(np.int64),
        val_images=images[subset[val]],
        val_labels=labels[subset[val]].astype(np.int64),
        test_images=test_images,
        test_labels=np.asarray(test_labels, dtype=np.int64),
        class_names=tuple(class_names),
    )


def fashion_mnist_lt(
    root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
    imbalance: float = 100,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_max: int = 6000,
) -> ImageSplits:
    """Fashion-MNIST-LT: an exponential long-tailed train subset and the balanced test set.

    With the defaults (rho = 100, n_max = 6000) the subset holds 14,881 images
    (6000 ... 60 per class); 10% of each class goes to validation, leaving 13,395 for
    training. The test set is the full balanced 10,000.

    Args:
        root: folder of the idx files (see :func:`load_fashion_mnist`).
        imbalance: rho = n_max / n_min.
        val_fraction: share of each class held out for validation, in [0, 1).
        seed: seed of the subset and of the validation split.
        n_max: samples of class 0 before the validation split (at most 6000).

    Returns:
        The :class:`ImageSplits`, images uint8 of shape (N, 28, 28).
    """
    train_x, train_y, test_x, test_y = load_fashion_mnist(root)
    return split_long_tailed(
        train_x, train_y, test_x, test_y,
        name=f"fashion-mnist-lt-r{imbalance:g}", class_names=FASHION_MNIST_CLASSES,
        imbalance=imbalance, n_max=n_max, val_fraction=val_fraction, seed=seed,
    )  # fmt: skip
