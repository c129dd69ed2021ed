"""Split lists (ImageNet-LT / Places-LT / iNaturalist 2018), class folders, and a lazy
image data set with torch-only resizing (no torchvision). Pillow is imported only when an
image is opened.

References:
    Liu et al., "Large-Scale Long-Tailed Recognition in an Open World" (ImageNet-LT,
    Places-LT split lists), CVPR 2019. https://arxiv.org/abs/1904.05160
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dlsa.datasets.base import DataFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""File suffixes (lower case) read as images from class folders."""


def read_split_list(
    path: str | os.PathLike[str], root: str | os.PathLike[str]
) -> tuple[list[Path], np.ndarray]:
    """Parse a split list of ImageNet-LT / Places-LT / iNaturalist 2018.

    Each non-blank line is ``relative/path label``; the path may contain spaces (the
    label is the last field). Every listed image must exist under ``root``.

    Args:
        path: the list (e.g. ``ImageNet_LT_train.txt``).
        root: folder the relative paths start from.

    Returns:
        ``(paths, labels)``: image paths (``root / relative path``) and int64 labels (N,).

    Raises:
        FileNotFoundError: if the list or a listed image is missing (file and line named).
        DataFileError: on a malformed line or label (file and line named), or no entries.
    """
    p, base = Path(path), Path(root)
    paths: list[Path] = []
    labels: list[int] = []
    for lineno, image, label in read_split_entries(p):
        if not (base / image).is_file():
            raise FileNotFoundError(f"{p}:{lineno}: image {base / image} not found")
        paths.append(base / image)
        labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def read_split_entries(path: str | os.PathLike[str]) -> list[tuple[int, str, int]]:
    """The entries of a split list as ``(line number, relative path, label)``, unchecked.

    Raises:
        FileNotFoundError: if the list is missing.
        DataFileError: on a malformed line or label (file and line named), or no entries.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "l.txt").write_text("a b.jpg 3\\n\\nc.png 0\\n")
        ...     read_split_entries(Path(tmp) / "l.txt")
        [(1, 'a b.jpg', 3), (3, 'c.png', 0)]
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such split list")
    entries: list[tuple[int, str, int]] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                entries.append((lineno, *_parse_split_line(line, f"{p}:{lineno}")))
    if not entries:
        raise DataFileError(f"{p}: the split list has no entries")
    return entries


def _parse_split_line(line: str, where: str) -> tuple[str, int]:
    fields = line.strip().rsplit(maxsplit=1)
    if len(fields) != 2:
        raise DataFileError(f"{where}: expected 'relative/path label', got {line.strip()!r}")
    try:
        label = int(fields[1])
    except ValueError:
        raise DataFileError(f"{where}: label {fields[1]!r} is not an integer") from None
    if label < 0:
        raise DataFileError(f"{where}: label {label} is negative")
    return fields[0], label


def read_class_folders(
    root: str | os.PathLike[str], extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """List the images of a ``root/<class_name>/...`` tree; sorted class names give labels.

    Args:
        root: folder with one subfolder per class (images may sit deeper inside it).
        extensions: image suffixes to keep (compared in lower case).

    Returns:
        ``(paths, labels, class_names)``: sorted image paths, int64 labels of shape (N,)
        (label c = ``class_names[c]``), and the sorted class names.

    Raises:
        FileNotFoundError: if ``root`` is not a folder.
        DataFileError: if it has no class folder, or a class folder has no image.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such image folder")
    classes = tuple(sorted(d.name for d in base.iterdir() if d.is_dir()))
    if not classes:
        raise DataFileError(f"{base}: no class folders")
    suffixes = {e.lower() for e in extensions}
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(f for f in (base / name).rglob("*") if f.suffix.lower() in suffixes)
        if not found:
            raise DataFileError(f"{base / name}: class folder holds no {sorted(suffixes)} file")
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), classes


def load_image(path: str | os.PathLike[str], mode: Literal["RGB", "L"] = "RGB") -> torch.Tensor:
    """Read one image file as a float tensor in [0, 1].

    Args:
        path: a PNG/JPEG/... file.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).

    Returns:
        Tensor of shape (C, H, W), float32.

    Raises:
        ImportError: if Pillow is not installed.
        DataFileError: if the file cannot be decoded.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as err:
        raise ImportError("reading image files needs Pillow: `pip install pillow`") from err
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataFileError(f"{path}: cannot read image ({err})") from err
    x = torch.from_numpy(array.copy()).float().div_(255.0)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def resize_center_crop(x: torch.Tensor, size: int, resize: int | None = None) -> torch.Tensor:
    """Resize the shorter side, then cut the central square (torch ops only).

    Args:
        x: image of shape (C, H, W), float.
        size: side of the output square.
        resize: shorter side after resizing (>= size); None means ``size``.

    Returns:
        Tensor of shape (C, size, size).

    Example:
        >>> resize_center_crop(torch.rand(3, 40, 60), 32, resize=36).shape
        torch.Size([3, 32, 32])
    """
    side = size if resize is None else resize
    if side < size:
        raise ValueError(f"resize ({resize}) must be >= size ({size})")
    h, w = x.shape[-2:]
    scale = side / min(h, w)
    new_h, new_w = max(side, round(h * scale)), max(side, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(
            x.unsqueeze(0),
            size=(new_h, new_w),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        ).squeeze(0)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top : top + size, left : left + size]


class ImageListDataset(Dataset):
    """Images read lazily from files, resized, center-cropped and optionally normalized.

    Items are ``(image, label)``: image float32 of shape (C, size, size) with values in
    [0, 1] (or standardized when ``mean``/``std`` are given), label an int64 scalar.

    Args:
        paths: N image files.
        labels: N labels of shape (N,).
        size: side of the square output.
        resize: shorter side before the center crop (e.g. 256 for size 224); None means
            ``size``.
        mode: ``"RGB"`` (C = 3) or ``"L"`` (C = 1).
        mean: per-channel mean subtracted after scaling to [0, 1], or None.
        std: per-channel std divided by, or None.
        class_names: optional names in label order.

    Example:
        >>> ds = ImageListDataset([], np.zeros(0, dtype=np.int64), size=32)
        >>> len(ds)
        0
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: np.ndarray,
        *,
        size: int,
        resize: int | None = None,
        mode: Literal["RGB", "L"] = "RGB",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(paths),):
            raise ValueError(f"{len(paths)} paths but labels of shape {labels.shape}")
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        self.paths = [Path(p) for p in paths]
        self.labels = labels
        self.size, self.resize, self.mode = size, resize, mode
        self.class_names = None if class_names is None else tuple(class_names)
        self._mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self._std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    @classmethod
    def from_split_list(
        cls, path: str | os.PathLike[str], root: str | os.PathLike[str], **kwargs: Any
    ) -> ImageListDataset:
        """Build from a split list (see :func:`read_split_list`); kwargs go to __init__."""
        paths, labels = read_split_list(path, root)
        return cls(paths, labels, **kwargs)

    @classmethod
    def from_class_folders(cls, root: str | os.PathLike[str], **kwargs: Any) -> ImageListDataset:
        """Build from class folders (see :func:`read_class_folders`); kwargs go to __init__."""
        paths, labels, names = read_class_folders(root)
        return cls(paths, labels, class_names=names, **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = resize_center_crop(load_image(self.paths[i], self.mode), self.size, self.resize)
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        return x, torch.tensor(self.labels[i])
