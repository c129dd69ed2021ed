"""Fashion-MNIST from its idx files, and its long-tailed version Fashion-MNIST-LT."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from dlsa.datasets.base import DataFileError, ImageSplits, split_long_tailed

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

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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


def fashion_mnist_lt(
    root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
    imbalance: float = 100,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_max: int = 6000,
) -> ImageSplits:
    """Fashion-MNIST-LT: an exponential long-tailed train subset and the balanced test set.

    With the defaults (rho = 100, n_max = 6000) the subset holds 14,886 images
    (6000, 3596, ..., 100, 60 per class); 10% of each class goes to validation (1,489
    images, same profile), leaving 13,397 for training (5400 ... 54 per class). The test
    set is the full balanced 10,000.

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
        train_x,
        train_y,
        test_x,
        test_y,
        name=f"fashion-mnist-lt-r{imbalance:g}",
        class_names=FASHION_MNIST_CLASSES,
        imbalance=imbalance,
        n_max=n_max,
        val_fraction=val_fraction,
        seed=seed,
    )
