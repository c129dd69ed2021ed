"""Images streamed from disk for stage-1 training: sources, train views and eval images.

A source is a split list (ImageNet-LT / Places-LT / iNaturalist 2018: ``relative/path
label`` lines under a root) or class folders (``root/<class>/...``, sorted names give the
labels). Nothing is decoded up front: :class:`TrainViews` decodes one image per item in
a ``DataLoader`` worker and cuts its views (random resized crop + horizontal flip, as
torchvision's ``RandomResizedCrop``), :class:`EvalImages` resizes and centre-crops it as
``dlsa extract`` does.

An image that cannot be read is not raised in the worker: the item carries the message
(list file and line, or the path) and the training loop raises :class:`ImageReadError`
or, with ``skip_bad_images``, drops and counts it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from dlsa.backbones.augment import paco_view
from dlsa.datasets import DataFileError, load_image, read_class_folders, resize_center_crop
from dlsa.datasets.image_list import read_split_entries
from dlsa.engine import rng
from dlsa.errors import DLSAInputError

Mode = Literal["RGB", "L"]
Item = tuple[torch.Tensor, int, int, str]


class ImageReadError(DLSAInputError):
    """A listed image that is missing or cannot be decoded (file and line named)."""


@dataclass(frozen=True)
class ImageSource:
    """Image files with labels.

    Attributes:
        paths: N image files.
        labels: int64 labels of shape (N,).
        where: N places for messages (``list:line`` or the path).
        relative: N paths relative to the root (with the labels, the data's identity).
        class_names: class names in label order (class folders), or None.
        skipped: messages of the listed images dropped because they are missing.
    """

    paths: tuple[Path, ...]
    labels: np.ndarray
    where: tuple[str, ...]
    relative: tuple[str, ...]
    class_names: tuple[str, ...] | None
    skipped: tuple[str, ...]

    def digest(self) -> str:
        """SHA-256 of the (relative path, label) list: changes when the data does."""
        h = hashlib.sha256()
        for rel, label in zip(self.relative, self.labels.tolist(), strict=True):
            h.update(f"{rel}\t{label}\n".encode())
        return h.hexdigest()


def read_source(
    root: str | Path, split_list: str | Path | None, *, skip_missing: bool, flag: str
) -> ImageSource:
    """Read a split list under ``root`` (or class folders when ``split_list`` is None).

    Args:
        root: image root (or the class folders' parent).
        split_list: ``relative/path label`` lines, or None.
        skip_missing: drop listed images that do not exist (recorded in ``skipped``)
            instead of raising.
        flag: the command-line flag named in messages (``--images`` ...).

    Raises:
        ImageReadError: a listed image is missing (list file and line named).
        DLSAInputError: a malformed list, no class folder, an empty class folder.
    """
    try:
        if split_list is None:
            paths, labels, names = read_class_folders(root)
            rel = tuple(str(p.relative_to(root)) for p in paths)
            return ImageSource(tuple(paths), labels, tuple(map(str, paths)), rel, names, ())
        entries = read_split_entries(split_list)
    except DataFileError as err:
        raise DLSAInputError(f"{flag}: {err}") from err
    kept, skipped = [], []
    for lineno, rel, label in entries:
        path = Path(root) / rel
        if path.is_file():
            kept.append((path, label, f"{split_list}:{lineno}", rel))
            continue
        message = f"{split_list}:{lineno}: image {path} not found"
        if not skip_missing:
            raise ImageReadError(message + " (--skip-bad-images drops such images)")
        skipped.append(message)
    if not kept:
        raise DLSAInputError(f"{split_list}: no readable image listed ({len(skipped)} missing)")
    paths, labels, where, rels = zip(*kept, strict=True)
    return ImageSource(
        paths, np.asarray(labels, dtype=np.int64), where, rels, None, tuple(skipped)
    )


def check_classes(train: ImageSource, val: ImageSource | None) -> int:
    """The number of classes C; every class 0..C-1 must have a training image.

    Raises:
        DLSAInputError: a class without a training image, a validation label outside
            0..C-1, or validation class folders named differently from the training ones.
    """
    if train.class_names is not None:
        n_classes = len(train.class_names)
    else:
        n_classes = int(train.labels.max()) + 1
    counts = np.bincount(train.labels, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DLSAInputError(
            f"{len(empty)} class(es) have no training image (labels {shown}); every label "
            f"0..{n_classes - 1} needs at least one"
        )
    if val is None:
        return n_classes
    if val.class_names is not None and train.class_names is not None:
        if val.class_names != train.class_names:
            raise DLSAInputError(
                f"validation class folders {list(val.class_names)} differ from the training "
                f"ones {list(train.class_names)}"
            )
    bad = np.flatnonzero(val.labels >= n_classes)
    if len(bad):
        raise DLSAInputError(
            f"{val.where[bad[0]]}: validation label {val.labels[bad[0]]} has no training "
            f"class (0..{n_classes - 1})"
        )
    return n_classes


def random_resized_box(
    height: int, width: int, u: np.ndarray, scale: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box from uniform draws ``u`` of shape (10, 4).

    Up to 10 tries of an area fraction in ``scale`` and a log-uniform aspect ratio in
    [3/4, 4/3] (row t uses ``u[t]``); if none fits, the central crop of the clamped ratio.

    Returns:
        ``(top, left, box_height, box_width)``.

    Example:
        >>> random_resized_box(10, 20, np.full((10, 4), 0.5), (0.08, 1.0))
        (0, 5, 10, 10)
    """
    area, log_ratio = height * width, (math.log(3 / 4), math.log(4 / 3))
    for a, r, i, j in u:
        target = area * (scale[0] + a * (scale[1] - scale[0]))
        ratio = math.exp(log_ratio[0] + r * (log_ratio[1] - log_ratio[0]))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(i * (height - h + 1)), int(j * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif in_ratio > 4 / 3:
        h, w = height, round(height * (4 / 3))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class TrainViews(Dataset):
    """Random-resized-crop + flip views of one image per item, seeded per epoch position.

    ``dataset[(epoch, position, index)]`` is ``(views, label, index, error)``: views uint8
    of shape (V, C, size, size), the image's label, its index, and "" (or, for an image
    that cannot be read, zeros and the message). The draws come from a generator seeded
    by ``(seed, epoch, position)``, so they do not depend on workers or ranks.

    Args:
        source: the images.
        size: side of the square views.
        mode: ``"RGB"`` (C = 3) or ``"L"`` (C = 1).
        views: views per image (1; 2 for PaCo's query and key).
        scale: range of the crop's area fraction (torchvision: (0.08, 1)).
        flip: flip each view left-right with probability 1/2.
        seed: seed of the draws.
        augment: "crop-flip" (only the crop and the flip) or "paco" (then PaCo's colour
            jitter, RandAugment / grayscale / blur, :mod:`dlsa.backbones.augment`).
        randaug: (n, magnitude) of RandAugment with ``augment="paco"``.
    """

    def __init__(
        self,
        source: ImageSource,
        *,
        size: int,
        mode: Mode,
        views: int,
        scale: tuple[float, float],
        flip: bool,
        seed: int,
        augment: str = "crop-flip",
        randaug: tuple[int, float] = (2, 10.0),
    ) -> None:
        self.source, self.size, self.mode, self.views = source, size, mode, views
        self.scale, self.flip, self.seed = scale, flip, seed
        self.augment, self.randaug = augment, randaug

    def __len__(self) -> int:
        return len(self.source.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> Item:
        epoch, position, index = key
        generator = rng.torch_generator(
            np.random.SeedSequence(self.seed, spawn_key=(3, epoch, position))
        )
        u = rng.rand((self.views, 11, 4), generator, "cpu", torch.float64).numpy()
        photo = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(4, epoch, position))
        )  # the photometric draws of --augment paco
        label = int(self.source.labels[index])
        try:
            views = self._views(self.source.paths[index], u, photo)
        except (OSError, ValueError, DataFileError) as err:
            channels = 1 if self.mode == "L" else 3
            blank = torch.zeros(self.views, channels, self.size, self.size, dtype=torch.uint8)
            where, path = self.source.where[index], self.source.paths[index]
            return blank, label, index, f"{where}: cannot read image {path} ({err})"
        return views, label, index, ""

    def _views(self, path: Path, u: np.ndarray, photo: np.random.Generator) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as raw:
            img = raw.convert(self.mode)
        out = []
        for k, draws in enumerate(u):
            top, left, h, w = random_resized_box(img.height, img.width, draws[:10], self.scale)
            view = img.resize(
                (self.size, self.size), Image.Resampling.BILINEAR,
                box=(left, top, left + w, top + h),
            )  # fmt: skip
            if self.flip and draws[10, 0] < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.augment == "paco":
                view = paco_view(view, k, photo, *self.randaug)
            array = np.asarray(view, dtype=np.uint8)
            out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        return torch.from_numpy(np.ascontiguousarray(np.stack(out)))


class EvalImages(Dataset):
    """Resized and centre-cropped images (as ``dlsa extract`` sees them).

    ``dataset[i]`` is ``(image, label, i, error)``: image float32 (C, size, size) in
    [0, 1] (zeros and a message for an image that cannot be read).
    """

    def __init__(
        self, source: ImageSource, *, size: int, mode: Mode, resize: int | None = None
    ) -> None:
        self.source, self.size, self.mode, self.resize = source, size, mode, resize

    def __len__(self) -> int:
        return len(self.source.paths)

    def __getitem__(self, index: int) -> Item:
        label = int(self.source.labels[index])
        try:
            image = load_image(self.source.paths[index], self.mode)
        except DataFileError as err:
            channels = 1 if self.mode == "L" else 3
            blank = torch.zeros(channels, self.size, self.size)
            where, cause = self.source.where[index], err.__cause__ or err
            message = f"{where}: cannot read image {self.source.paths[index]} ({cause})"
            return blank, label, index, message
        return resize_center_crop(image, self.size, self.resize), label, index, ""
