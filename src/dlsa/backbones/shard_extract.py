"""Feature extraction sharded over the ranks of torch.distributed (``torchrun ... extract``).

Each rank embeds a contiguous share of the N images (rows ``N * r // W`` to
``N * (r + 1) // W``) and writes it as a ``.npy`` shard into one temporary folder beside
the destination; rank 0 then reads the shards in rank order, which is the original order,
writes the one feature file atomically with :func:`dlsa.io.features.save_features`, and
removes the folder. A rank holds only its own share in memory until rank 0 merges (rank 0
then holds the N rows once, as a single process does). The shard folder must therefore be
visible to every rank: under ``torchrun`` on several machines, the destination has to be
on a file system they share (a rank that cannot see the folder stops the run with a
one-line error).

The ranks agree after each step (one all-reduce of an "ok" flag): when any rank fails
(an unreadable image, a full disk), every rank raises, the rank that failed with its own
error, and nothing but stale temporaries of dead processes is left (removed by the next
atomic write, see :mod:`dlsa.io.atomic`). Coordination messages are tiny CPU tensors, so the
gloo backend is enough even when the images are embedded on GPUs.

One process (``world_size == 1``) is :func:`~dlsa.backbones.extract.extract_to_file`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from dlsa.backbones.distributed import DistInfo
from dlsa.backbones.extract import Images, extract_features, extract_to_file
from dlsa.engine.devices import resolve_device
from dlsa.errors import DLSAInputError
from dlsa.io.atomic import temporary_dir_beside, write_atomic
from dlsa.io.features import SUFFIXES, save_features

_NAME_BYTES = 1024
"""Room for the shard folder's name (UTF-8) in the broadcast from rank 0 (names of at
most 255 bytes on common file systems)."""


def share_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` rows; shares
    differ by at most one row and, in rank order, cover ``0 .. n`` exactly once.

    Example:
        >>> [share_bounds(7, r, 3) for r in range(3)]
        [(0, 2), (2, 4), (4, 7)]
    """
    return n * rank // world_size, n * (rank + 1) // world_size


def device_for_rank(spec: str) -> torch.device:
    """The device of ``--device``: ``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is
    available (one GPU per process under torchrun), else the CPU; any other value is
    passed to :class:`torch.device`.

    Raises:
        DLSAInputError: for a device name torch does not know, or CUDA without a GPU.
    """
    device = resolve_device(spec, what="--device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def extract_to_file_sharded(
    model: nn.Module,
    images: Images,
    labels: np.ndarray | None,
    path: str | os.PathLike[str],
    split: str,
    backbone_id: str,
    info: DistInfo,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
    float16: bool = False,
    overwrite: bool = True,
    flag: str | None = None,
    backbone_trained_on: str | None = None,
) -> Path | None:
    """Embed the N images over all ranks; rank 0 writes the feature file.

    Every rank calls this with the same arguments (the same N images and labels).

    Args:
        model: a module with ``embed``, the same weights on every rank.
        images: N images (array or data set); each rank reads only its share.
        labels: labels of shape (N,), or None (used by rank 0 only).
        path: destination (``.h5``/``.hdf5``/``.npz``).
        split: split name stored in the file.
        backbone_id: id of the model stored in the file.
        info: this process's rank and world size (:func:`dlsa.backbones.distributed.setup`).
        batch_size: images per forward pass.
        device: where this rank runs the model.
        progress: show rank 0's progress bar (only when stderr is a terminal).
        num_workers: loader processes for a data set.
        float16: store the features as float16.
        overwrite: replace an existing feature file dlsa wrote (False: refuse it, also
            when it appears while the ranks embed); ``flag`` names it in messages.
        backbone_trained_on: whether the backbone trained on these images, stored in the
            file (:data:`dlsa.io.features.PROVENANCES`; None: not recorded).

    Returns:
        The path written on rank 0; None on the other ranks.

    Raises:
        DLSAInputError: on an unknown suffix, an empty image list, or (on the ranks that
            did not fail themselves) when another rank failed.
    """
    if info.world_size == 1:
        return extract_to_file(
            model, images, labels, path, split, backbone_id, batch_size=batch_size,
            device=device, progress=progress, num_workers=num_workers, float16=float16,
            overwrite=overwrite, flag=flag, backbone_trained_on=backbone_trained_on,
        )  # fmt: skip
    dest = Path(path)
    if dest.suffix.lower() not in SUFFIXES:
        raise DLSAInputError(f"{dest}: unknown feature file suffix; use {SUFFIXES}")
    n = len(images)
    if n == 0:
        raise DLSAInputError("no images to embed")
    folder = _shard_folder(dest, info)
    embed = partial(
        _embed_share, model, images, n, folder, info, batch_size=batch_size, device=device,
        progress=progress, num_workers=num_workers,
    )  # fmt: skip
    merge = partial(
        _merge, folder, n, info.world_size, dest, labels, split, backbone_id, float16,
        overwrite=overwrite, flag=flag, backbone_trained_on=backbone_trained_on,
    )  # fmt: skip
    try:
        _agree(_attempt(embed), info)
        _agree(_attempt(merge) if info.is_main else None, info)
    finally:
        if info.is_main:
            shutil.rmtree(folder, ignore_errors=True)
    return dest if info.is_main else None


def _shard_folder(dest: Path, info: DistInfo) -> Path:
    """Rank 0 makes a temporary folder beside ``dest`` and sends its name to the others
    (UTF-8 bytes in a CPU tensor; an empty name means rank 0 could not make it)."""
    made: list[Path] = []
    error = _attempt(lambda: made.append(temporary_dir_beside(dest))) if info.is_main else None
    raw = made[0].name.encode() if made else b""
    data = torch.zeros(_NAME_BYTES, dtype=torch.uint8)
    data[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    if error is not None:
        raise error
    if not bool(data.any()):
        raise DLSAInputError("rank 0 could not make the shard folder; nothing written")
    return dest.parent / bytes(data[data != 0].tolist()).decode()


def _shard_path(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank:05d}.npy"


def _embed_share(
    model: nn.Module,
    images: Images,
    n: int,
    folder: Path,
    info: DistInfo,
    *,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    num_workers: int,
) -> None:
    """Embed rows ``share_bounds(n, rank, W)`` and write them as this rank's shard
    (float32 of shape (rows, D); an empty share writes nothing)."""
    if not folder.is_dir():
        raise DLSAInputError(
            f"rank {info.rank} cannot see the shard folder {folder}: under torchrun on "
            "several machines, --out must be on a file system they all share"
        )
    start, stop = share_bounds(n, info.rank, info.world_size)
    if start == stop:
        return
    if isinstance(images, Dataset):
        share: Images = Subset(images, range(start, stop))
    else:
        share = images[start:stop]
    X = extract_features(model, share, batch_size, device, progress and info.is_main, num_workers)
    write_atomic(_shard_path(folder, info.rank), lambda p: np.save(p, X, allow_pickle=False))


def _merge(
    folder: Path,
    n: int,
    world_size: int,
    dest: Path,
    labels: np.ndarray | None,
    split: str,
    backbone_id: str,
    float16: bool = False,
    *,
    overwrite: bool = True,
    flag: str | None = None,
    backbone_trained_on: str | None = None,
) -> None:
    """Rank 0: concatenate the shards in rank order (N, D) and write the feature file."""
    parts = []
    for rank in range(world_size):
        start, stop = share_bounds(n, rank, world_size)
        if start == stop:
            continue
        part = np.load(_shard_path(folder, rank), mmap_mode="r", allow_pickle=False)
        if part.shape[0] != stop - start:
            raise RuntimeError(f"shard of rank {rank}: {part.shape[0]} rows, not {stop - start}")
        parts.append(part)
    X = np.concatenate(parts)
    save_features(
        dest, X, labels, split=split, backbone=backbone_id, float16=float16,
        overwrite=overwrite, flag=flag, backbone_trained_on=backbone_trained_on,
    )  # fmt: skip


def _attempt(step: Callable[[], object]) -> BaseException | None:
    """Run ``step()``; return the exception it raised (None when it succeeded)."""
    try:
        step()
    except Exception as err:  # noqa: BLE001 -- re-raised by _agree after every rank knows
        return err
    return None


def _agree(error: BaseException | None, info: DistInfo) -> None:
    """All ranks learn whether any failed; a failed rank re-raises its own error, the
    others raise a :class:`DLSAInputError` that points to it."""
    flag = torch.tensor([0 if error is not None else 1], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    if error is not None:
        raise error
    if int(flag) == 0:
        raise DLSAInputError("another rank failed (its error is in its output); nothing written")
