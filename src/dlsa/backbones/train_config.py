"""Settings of ``dlsa train`` (streamed stage-1 training) and the backbones it builds.

Each field of :class:`ImageTrainConfig` is a ``dlsa train`` flag (``--batch-size`` for
``batch_size``) whose help is the field's docstring. Defaults suit the small ResNets on
CPU-sized data; the README gives the paper's ImageNet-LT recipe.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch

from dlsa.backbones.bottleneck import LAYOUTS, BottleneckResNet
from dlsa.backbones.checkpoint import Backbone
from dlsa.backbones.resnet import ResNet
from dlsa.errors import DLSAInputError

Loss = Literal["ce", "cbs", "paco"]
LOSSES: tuple[str, ...] = ("ce", "cbs", "paco")
_SMALL = re.compile(r"^resnet(\d+)$")


@dataclass(frozen=True, kw_only=True)
class Stage1Config:
    """The hyper-parameters of stage-1 training, declared once for both trainers: on
    image files (``dlsa train``, :class:`ImageTrainConfig`, which adds the files and the
    image pipeline) and on in-memory image arrays (:func:`dlsa.backbones.train_backbone`,
    its keyword arguments). Each field is also a ``dlsa train`` flag."""

    loss: Loss = "ce"
    """ce (shuffled), cbs (class-balanced sampling) or paco (PaCo + Balanced Softmax)"""
    arch: str = "resnet8"
    """resnet8/14/20/32... (small, 6n+2), resnet50 or resnext50_32x4d (our definitions;
    the in-memory trainer builds the small ones)"""
    widths: tuple[int, ...] = (16, 32, 64)
    """channels of the small ResNets' three stages"""
    epochs: int = 30
    """passes over the training set"""
    batch_size: int = 128
    """images per SGD step over all processes (each of N gets batch_size / N)"""
    lr: float = 0.1
    """peak learning rate (linear warm-up, then cosine to 0, per step)"""
    warmup_epochs: int = 0
    """epochs of linear learning-rate warm-up"""
    weight_decay: float = 5e-4
    """L2 penalty of SGD"""
    momentum: float = 0.9
    """SGD momentum"""
    flip: bool = True
    """random horizontal flips (turn off for digits or text)"""
    paco_alpha: float = 0.01
    """PaCo: weight of same-class samples (release: 0.01 CIFAR-LT, 0.05 ImageNet-LT)"""
    paco_temperature: float = 0.05
    """PaCo: contrastive temperature (release: 0.05 CIFAR-LT, 0.07 / 0.2 ImageNet-LT)"""
    paco_queue: int = 1024
    """PaCo: keys kept from past batches (release: 1024 CIFAR-LT, 8192 ImageNet-LT)"""
    paco_dim: int = 32
    """PaCo: output width of the projection (release: 32 CIFAR-LT, 128 ImageNet-LT)"""
    paco_momentum: float = 0.999
    """PaCo: update rate m of the key encoder"""
    paco_balanced: bool = True
    """PaCo: Balanced-Softmax logit adjustment of the class-centre logits"""
    seed: int = 0
    """seed of weights, epoch orders and augmentation"""
    device: str = "auto"
    """cpu, cuda, cuda:1 ... (auto: this process's GPU if there is one, else the CPU)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "device", str(self.device))
        if self.loss not in LOSSES:
            raise DLSAInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if arch_names(self.arch) == "small" and (len(self.widths) != 3 or min(self.widths) < 1):
            raise DLSAInputError(f"widths must be three positive ints, got {self.widths}")
        for name in ("epochs", "batch_size", "paco_queue", "paco_dim"):
            if getattr(self, name) < 1:
                raise DLSAInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise DLSAInputError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise DLSAInputError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")


@dataclass(frozen=True, kw_only=True)
class _ImageFiles:
    """Where ``dlsa train`` reads its images and writes its run (first in its help)."""

    images: str
    """class folders (one subfolder per class), or the root of --split-list"""
    split_list: str | None = None
    """'relative/path label' lines (ImageNet-LT / Places-LT / iNat format) under --images"""
    val_images: str | None = None
    """validation class folders, or the root of --val-split-list (default: --images)"""
    val_split_list: str | None = None
    """validation 'relative/path label' lines; the epoch kept is chosen on them only"""
    holdout: int = 20
    """without --val-images / --val-split-list: per class, hold out min(N, 20%) of the
    images (none of a class under 5) to choose the epoch on, never trained on, listed in
    OUT/holdout.json (0: no holdout; the last epoch is kept)"""
    out: str = "stage1"
    """run folder: best.safetensors/json (for dlsa extract) and state/ (for --resume)"""


@dataclass(frozen=True, kw_only=True)
class ImageTrainConfig(Stage1Config, _ImageFiles):
    """Stage-1 training on image files (see :func:`dlsa.backbones.train_images`): the
    files, the hyper-parameters of :class:`Stage1Config`, and the image pipeline."""

    size: int = 32
    """side of the square training / validation images (224 for the paper's sets)"""
    val_resize: int | None = None
    """shorter side before the validation centre crop (256 for 224 crops; default: size)"""
    grayscale: bool = False
    """read images as one channel (default RGB)"""
    crop_scale: float = 0.08
    """smallest area fraction of the random resized crop"""
    augment: Literal["crop-flip", "paco"] = "crop-flip"
    """crop-flip, or paco: PaCo's release (colour jitter, then RandAugment on the first
    view; grayscale and blur on PaCo's second view)"""
    randaug_n: int = 2
    """--augment paco: RandAugment operations per image"""
    randaug_m: float = 10.0
    """--augment paco: RandAugment magnitude (0 ... 10)"""
    sync_bn: bool = False
    """batch norm over the global batch of all processes (torch's SyncBatchNorm on CUDA)"""
    bf16: bool = False
    """bfloat16 autocast (CUDA only)"""
    workers: int = 4
    """DataLoader worker processes per training process"""
    skip_bad_images: bool = False
    """drop (and count) missing or unreadable images instead of stopping with an error"""
    resume: bool = False
    """continue the run in --out from its last finished epoch (same settings required)"""
    overwrite: bool = False
    """start again, replacing the run in --out"""
    progress: bool = True
    """progress bars with images/s and ETA (only on a terminal, rank 0)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size < 1:
            raise DLSAInputError(f"size must be >= 1, got {self.size}")
        if self.holdout < 0:
            raise DLSAInputError(f"holdout must be >= 0, got {self.holdout}")
        if not 0 < self.crop_scale <= 1:
            raise DLSAInputError(f"crop_scale must be in (0, 1], got {self.crop_scale}")
        if self.augment not in ("crop-flip", "paco"):
            raise DLSAInputError(f"augment must be crop-flip or paco, got {self.augment!r}")
        if self.randaug_n < 0 or not 0 <= self.randaug_m <= 10:
            raise DLSAInputError(
                f"randaug_n must be >= 0 and randaug_m in [0, 10], got {self.randaug_n}, "
                f"{self.randaug_m}"
            )
        if self.val_resize is not None and self.val_resize < self.size:
            raise DLSAInputError(f"val_resize ({self.val_resize}) must be >= size")
        if self.resume and self.overwrite:
            raise DLSAInputError("resume and overwrite exclude each other")

    @property
    def mode(self) -> Literal["RGB", "L"]:
        """PIL mode of the images."""
        return "L" if self.grayscale else "RGB"

    def result_settings(self) -> dict[str, Any]:
        """The settings a resumed run must share (paths, workers, device ... excluded)."""
        free = {"images", "split_list", "val_images", "val_split_list", "out", "device",
                "workers", "resume", "overwrite", "progress"}  # fmt: skip
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in free}


def arch_names(arch: str) -> str:
    """Check an architecture name; returns ``"bottleneck"`` or ``"small"``."""
    if arch in LAYOUTS:
        return "bottleneck"
    match = _SMALL.match(arch)
    if match and int(match.group(1)) >= 8 and (int(match.group(1)) - 2) % 6 == 0:
        return "small"
    raise DLSAInputError(
        f"arch must be resnet<6n+2> (resnet8, resnet14, resnet20 ...), "
        f"{' or '.join(sorted(LAYOUTS))}; got {arch!r}"
    )


def build_backbone(
    config: ImageTrainConfig, n_classes: int, generator: torch.Generator
) -> Backbone:
    """The backbone named by ``config.arch`` for ``n_classes`` classes."""
    channels = 1 if config.grayscale else 3
    if arch_names(config.arch) == "bottleneck":
        return BottleneckResNet(
            config.arch, in_channels=channels, n_classes=n_classes, generator=generator
        )
    depth = int(config.arch.removeprefix("resnet"))
    return ResNet(
        in_channels=channels, n_classes=n_classes, depth=depth, widths=config.widths,
        generator=generator,
    )  # fmt: skip
