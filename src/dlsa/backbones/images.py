"""Image batches as tensors, and the training augmentation (torch ops, no torchvision)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dlsa.engine import rng


def as_image_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Bring images to channels-first layout without changing their dtype.

    Args:
        images: (N, H, W) grayscale, (N, H, W, C) channels-last with C in {1, 3}, or
            (N, C, H, W) channels-first; uint8 in [0, 255] or float in [0, 1].

    Returns:
        Tensor of shape (N, C, H, W), same dtype (uint8 stays uint8, to save memory).

    Raises:
        ValueError: on another number of dimensions or channels.

    Example:
        >>> as_image_tensor(np.zeros((5, 32, 32, 3), dtype=np.uint8)).shape
        torch.Size([5, 3, 32, 32])
    """
    x = torch.as_tensor(images)
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x.permute(0, 3, 1, 2).contiguous()
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise ValueError(
        f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C in (1, 3), "
        f"got shape {tuple(x.shape)}"
    )


def to_float(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Scale a uint8 batch to [0, 1] (float batches pass unchanged), shape kept."""
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255.0
    return x.to(dtype)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of images (N, C, H, W) scaled to [0, 1], each (C,).

    Computed in float64 chunks, so a uint8 data set is never converted whole.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    square = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = to_float(x[start : start + chunk], torch.float64)
        total += part.sum(dim=(0, 2, 3))
        square += part.square().sum(dim=(0, 2, 3))
    n = len(x) * x.shape[2] * x.shape[3]
    mean = total / n
    std = (square / n - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


def random_crop_flip(
    x: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Zero-pad, take a random crop of the original size, and maybe flip horizontally.

    The random offsets and flips are drawn on the CPU from ``generator``, so results do
    not depend on the device.

    Args:
        x: batch of shape (B, C, H, W), float.
        padding: pixels of zero padding on each side (0 disables cropping).
        flip: flip each image left-right with probability 1/2 (off for digits, text).
        generator: a CPU generator.

    Returns:
        Augmented batch of shape (B, C, H, W).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_crop_flip(torch.rand(4, 3, 8, 8), padding=2, flip=True, generator=g).shape
        torch.Size([4, 3, 8, 8])
    """
    b, c, h, w = x.shape
    if padding > 0:
        shift = rng.randint(2 * padding + 1, (2, b), generator, x.device)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (shift[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (shift[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = rng.rand(b, generator, x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x
