"""CIFAR-10/100 from the local "python version" batches, read with a loader that runs no
code, and their long-tailed versions CIFAR-10-LT / CIFAR-100-LT.

References:
    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
    (the CIFAR-LT profile), NeurIPS 2019. https://arxiv.org/abs/1906.07413
"""

from __future__ import annotations

import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlsa.datasets.base import DataFileError, ImageSplits, split_long_tailed


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    meta_file: str
    names_key: str
    n_max: int


_CIFAR = {
    10: _CifarSpec(
        folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
        label_key="labels", meta_file="batches.meta", names_key="label_names", n_max=5000,
    ),
    100: _CifarSpec(
        folder="cifar-100-python", archive="cifar-100-python.tar.gz", train=("train",),
        test=("test",), label_key="fine_labels", meta_file="meta",
        names_key="fine_label_names", n_max=500,
    ),
}  # fmt: skip

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
"""The only globals a CIFAR batch may name: numpy's array reconstruction (protocol 2
pickles use ``_reconstruct``, protocol 5 pickles ``_frombuffer``)."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that builds plain containers and numpy arrays, and refuses any other global.

    A pickle can call any importable function (``os.system`` ...) through its globals;
    refusing all but numpy's array reconstruction makes loading an untrusted batch safe.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: a CIFAR batch may only hold dicts, "
                "lists, bytes, numbers and numpy arrays"
            )
        if module == "numpy":
            return getattr(np, name)
        private = module.rsplit(".", 1)[-1]
        try:
            return getattr(importlib.import_module(f"numpy._core.{private}"), name)
        except ImportError:  # numpy < 2
            return getattr(importlib.import_module(f"numpy.core.{private}"), name)


def load_cifar_batch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one CIFAR "python version" batch with a loader that cannot run code.

    Args:
        path: a batch file (``data_batch_1``, ``test_batch``, ``train``, ``meta`` ...).

    Returns:
        The batch dict, with byte-string keys decoded to ``str``.

    Raises:
        FileNotFoundError: if the file is missing.
        DataFileError: if the file is not a pickled dict, or names any global other than
            numpy's array reconstruction (e.g. ``os.system``).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such CIFAR batch file")
    try:
        with open(p, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataFileError(f"{p}: cannot read as a CIFAR batch ({err})") from err
    if not isinstance(batch, dict):
        raise DataFileError(f"{p}: a CIFAR batch must be a dict, got {type(batch).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in batch.items()}


def _cifar_arrays(p: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_cifar_batch(p)
    if "data" not in batch or label_key not in batch:
        raise DataFileError(f"{p}: batch lacks 'data' or {label_key!r} (has {sorted(batch)})")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFileError(f"{p}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise DataFileError(f"{p}: {len(data)} images but labels of shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_folder(root: Path, n_classes: int) -> Path:
    spec = _CIFAR[n_classes]
    for folder in (root, root / spec.folder):
        if all((folder / f).is_file() for f in spec.train + spec.test):
            return folder
    names = ", ".join(spec.train + spec.test)
    raise FileNotFoundError(
        f"CIFAR-{n_classes} batches not found in {root} or {root / spec.folder}: "
        f"need {names}. Get {spec.archive} (the 'python version' of "
        "https://www.cs.toronto.edu/~kriz/cifar.html), unpack it and pass the folder."
    )


def load_cifar(
    root: str | os.PathLike[str], n_classes: Literal[10, 100] = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read CIFAR-10 or CIFAR-100 (fine labels) from its local "python version" batches.

    Args:
        root: the unpacked folder (``cifar-10-batches-py`` / ``cifar-100-python``) or
            the folder that holds it.
        n_classes: 10 or 100.

    Returns:
        ``(train_images, train_labels, test_images, test_labels, class_names)``: images
        uint8 of shape (N, 32, 32, 3), labels int64 of shape (N,), and C names (from the
        ``meta`` file, or ``"0" .. "C-1"`` without one).

    Raises:
        FileNotFoundError: if a batch is missing; the message says how to get them.
        DataFileError: on a malformed or unsafe batch.
    """
    if n_classes not in _CIFAR:
        raise ValueError(f"n_classes must be 10 or 100, got {n_classes}")
    spec = _CIFAR[n_classes]
    folder = _cifar_folder(Path(root), n_classes)
    train_x, train_y = _cifar_split(folder, spec.train, spec.label_key)
    test_x, test_y = _cifar_split(folder, spec.test, spec.label_key)
    return train_x, train_y, test_x, test_y, _cifar_class_names(folder, n_classes)


def _cifar_split(
    folder: Path, files: tuple[str, ...], label_key: str
) -> tuple[np.ndarray, np.ndarray]:
    parts = [_cifar_arrays(folder / f, label_key) for f in files]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _cifar_class_names(folder: Path, n_classes: int) -> tuple[str, ...]:
    meta_file, key = _CIFAR[n_classes].meta_file, _CIFAR[n_classes].names_key
    if not (folder / meta_file).is_file():
        return tuple(str(c) for c in range(n_classes))
    names = load_cifar_batch(folder / meta_file).get(key)
    if not isinstance(names, list) or len(names) != n_classes:
        raise DataFileError(f"{folder / meta_file}: {key!r} must list {n_classes} names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def cifar_lt(
    root: str | os.PathLike[str],
    n_classes: Literal[10, 100] = 10,
    imbalance: float = 100,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_max: int | None = None,
) -> ImageSplits:
    """CIFAR-10-LT / CIFAR-100-LT: exponential long-tailed train subset, balanced test set.

    The standard profile has n_max = 5000 (CIFAR-10) or 500 (CIFAR-100). Papers on
    CIFAR-LT train on the whole subset; pass ``val_fraction=0`` for that (the
    validation split is then empty).

    Args:
        root: see :func:`load_cifar`.
        n_classes: 10 or 100.
        imbalance: rho = n_max / n_min.
        val_fraction: share of each class held out for validation, in [0, 1).
        seed: seed of the subset and of the validation split.
        n_max: samples of class 0 before the validation split; None: 5000 / 500.

    Returns:
        The :class:`ImageSplits`, images uint8 of shape (N, 32, 32, 3).
    """
    train_x, train_y, test_x, test_y, names = load_cifar(root, n_classes)
    return split_long_tailed(
        train_x,
        train_y,
        test_x,
        test_y,
        name=f"cifar{n_classes}-lt-r{imbalance:g}",
        class_names=names,
        imbalance=imbalance,
        n_max=_CIFAR[n_classes].n_max if n_max is None else n_max,
        val_fraction=val_fraction,
        seed=seed,
    )
