"""Damaged-model detection: SHA-256 checksums of tensor files and finite weights.

A model folder records the SHA-256 of each tensor file in its JSON metadata when it is
saved; loading recomputes them and names the file that differs, before the file is
parsed. Folders written before checksums were recorded (no ``checksums`` entry) load
without this check. Whatever the checksums say, a model whose floating-point tensors
hold NaN or infinity is refused.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from dlsa.errors import ModelFileError

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "a").write_bytes(b"abc")
        ...     sha256_of(Path(tmp) / "a")[:16]
        3
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files ``names`` in ``folder``."""
    return {name: sha256_of(folder / name) for name in names}


def verify_checksums(folder: Path, expected: object, *, source: str = "model.json") -> None:
    """Check every file listed in ``expected`` against its recorded SHA-256.

    Args:
        folder: the model folder.
        expected: the metadata's ``checksums`` entry, ``{file name: SHA-256}``; None
            (a folder written before checksums were recorded) skips the check.
        source: the metadata file, named when ``expected`` is malformed.

    Raises:
        ModelFileError: naming the first file that is missing or whose bytes changed.
    """
    if expected is None:
        return
    if not isinstance(expected, Mapping) or not all(
        isinstance(k, str) and "/" not in k and "\\" not in k and isinstance(v, str)
        for k, v in expected.items()
    ):
        raise ModelFileError(f"{folder / source}: 'checksums' must map file names to SHA-256")
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"{path}: missing (its checksum is recorded in {source})")
        if sha256_of(path) != digest.lower():
            raise ModelFileError(
                f"{path}: damaged (its SHA-256 differs from the one recorded when the model "
                "was saved); save or copy the model again"
            )


def read_tensors(path: Path, *, finite: bool = True) -> dict[str, Tensor]:
    """The tensors of a safetensors file (all of them finite, unless ``finite=False``).

    Raises:
        ModelFileError: if the file cannot be parsed (truncated, not safetensors) or,
            with ``finite``, a floating-point tensor holds NaN or infinity; the message
            names the file.
    """
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFileError(f"{path}: not a readable safetensors file ({reason})") from err
    if finite:
        check_finite(tensors, source=str(path))
    return tensors


def check_finite(tensors: Mapping[str, Tensor], *, source: str) -> None:
    """Refuse floating-point tensors holding NaN or infinity.

    Args:
        tensors: named tensors of any shape.
        source: the file they came from, named in the error.

    Raises:
        ModelFileError: naming the first non-finite tensor and its count of bad values.
    """
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ModelFileError(
                    f"{source}: tensor {name!r} holds {bad} non-finite value(s); the model "
                    "is damaged or its training diverged"
                )


_F32_MAX, _F32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)


def check_float32(value: object, where: str) -> None:
    """Refuse numbers in ``value`` (a number, or lists / dicts of them, e.g. a model's
    JSON metadata) that are finite and non-zero in float64 but 0, subnormal or infinite
    in float32, the precision predictions are computed in: a temperature of 1e-300
    would divide the logits by 0 and make every probability NaN.

    Args:
        value: the JSON value.
        where: the file and field, named in the error (keys are appended).

    Raises:
        ModelFileError: naming ``where``, the offending key and value.

    Example:
        >>> check_float32({"tau": 1.0, "lr": [0.1, 0]}, "model.json: params")
        >>> try:
        ...     check_float32({"t": 1e-300}, "model.json: params")
        ... except ModelFileError as err:
        ...     print(str(err)[:46])
        model.json: params.t = 1e-300 is 0 (or subnorm
    """
    if isinstance(value, dict):
        for key, item in value.items():
            check_float32(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_float32(item, f"{where}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool) and value != 0:
        size = abs(value) if isinstance(value, float) else _int_size(value)
        if not math.isfinite(size) or size <= _F32_MAX and size >= _F32_TINY:
            return
        problem = "infinite" if size > _F32_MAX else "0 (or subnormal)"
        shown = repr(value) if len(repr(value)) <= 24 else f"{repr(value)[:20]}..."
        raise ModelFileError(
            f"{where} = {shown} is {problem} in float32, the precision predictions are "
            "computed in; the model file was edited or damaged"
        )


def _int_size(value: int) -> float:
    """``abs(value)`` as a float; past float64's range, just above float32's largest."""
    try:
        return float(abs(value))
    except OverflowError:
        return _F32_MAX * 2
