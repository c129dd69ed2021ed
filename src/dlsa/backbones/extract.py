"""Frozen-feature extraction: stage 1's output and stage 2's input.

Any module with an ``embed(x) -> (N, D)`` method works: :class:`~dlsa.backbones.ResNet`
and the wrappers of :mod:`dlsa.backbones.pretrained`. Images go in scaled to [0, 1];
the model standardizes them itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dlsa.backbones.images import as_image_tensor, to_float
from dlsa.engine.progress import Phase
from dlsa.io.features import save_features

Images = np.ndarray | torch.Tensor | Dataset
"""Images as an array (see :func:`~dlsa.backbones.images.as_image_tensor`) or a data set
of ``(image (C, H, W) float, label)`` pairs such as :class:`dlsa.datasets.ImageListDataset`."""


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: Images,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> np.ndarray:
    """Embed images with a frozen model, batch by batch, in eval mode.

    The model's train/eval mode is restored afterwards.

    Args:
        model: a module with ``embed(x: (B, C, H, W)) -> (B, D)``.
        images: N images (array or data set, see :data:`Images`).
        batch_size: images per forward pass.
        device: where to run the model (it is moved there).
        progress: show a tqdm progress bar (only when stderr is a terminal) and log
            progress lines (:mod:`dlsa.engine.progress`).
        num_workers: loader processes for a data set (arrays ignore it).

    Returns:
        Features of shape (N, D), float32.

    Example:
        >>> from dlsa.backbones import ResNet
        >>> net = ResNet(in_channels=1, n_classes=3, generator=torch.Generator().manual_seed(0))
        >>> extract_features(net, np.zeros((5, 28, 28), np.uint8), progress=False).shape
        (5, 64)
    """
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise TypeError(f"{type(model).__name__} has no embed(x) method")
    was_training = model.training
    model.to(device).eval()
    dtype = next(model.parameters()).dtype
    batches, total = _batches(images, batch_size, num_workers)
    chunks = []
    phase = Phase("features", _count(images), "{done}/{total} images")
    for xb in tqdm(batches, total=total, desc="features", disable=None if progress else True):
        chunks.append(embed(to_float(xb.to(device), dtype)).float().cpu())
        if progress:
            phase.advance(len(xb), f"{phase.done / max(phase.seconds, 1e-9):.0f} images/s")
    if progress and chunks:
        phase.end(f"{phase.done / max(phase.seconds, 1e-9):.0f} images/s")
    model.train(was_training)
    if not chunks:
        raise ValueError("no images to embed")
    return torch.cat(chunks).numpy()


def _count(images: Images) -> int | None:
    """How many images ``images`` holds (None if it does not say)."""
    try:
        return len(images)  # type: ignore[arg-type]
    except TypeError:
        return None


def _batches(
    images: Images, batch_size: int, num_workers: int
) -> tuple[Iterable[torch.Tensor], int]:
    if isinstance(images, Dataset):
        loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        return (b[0] if isinstance(b, list | tuple) else b for b in loader), len(loader)
    chunks = as_image_tensor(images).split(batch_size)
    return chunks, len(chunks)


def extract_to_file(
    model: nn.Module,
    images: Images,
    labels: np.ndarray | None,
    path: str | os.PathLike[str],
    split: str,
    backbone_id: str,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
    float16: bool = False,
    overwrite: bool = True,
    flag: str | None = None,
    backbone_trained_on: str | None = None,
) -> Path:
    """Embed images and write the features with :func:`dlsa.io.features.save_features`
    (as float16 with ``float16``; ``overwrite`` and ``flag`` as there).

    Args:
        model: a module with ``embed``.
        images: N images (array or data set).
        labels: labels of shape (N,), or None for an unlabelled file.
        path: destination (``.h5``/``.hdf5``/``.npz``).
        split: split name stored in the file (``"train"``, ``"val"``, ``"test"`` ...).
        backbone_id: id of the model stored in the file.
        batch_size: images per forward pass.
        device: where to run the model.
        progress: show a tqdm progress bar (only when stderr is a terminal).
        num_workers: loader processes for a data set.
        backbone_trained_on: whether the backbone trained on these images ("seen",
            "unseen", "mixed", "unknown"; None: not recorded).

    Returns:
        The path written.
    """
    X = extract_features(model, images, batch_size, device, progress, num_workers)
    return save_features(
        path, X, labels, split=split, backbone=backbone_id, float16=float16,
        overwrite=overwrite, flag=flag, backbone_trained_on=backbone_trained_on,
    )  # fmt: skip


class FlipAveraged(nn.Module):
    """``model`` whose ``embed`` averages the features of an image and of its horizontal
    mirror (test-time augmentation): ``(f(x) + f(flip(x))) / 2``, (B, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, D) of images (B, C, H, W)."""
        return 0.5 * (self.model.embed(x) + self.model.embed(x.flip(-1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)
