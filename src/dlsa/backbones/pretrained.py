"""Pretrained image encoders (torchvision, timm, open_clip) loaded from LOCAL weights only.

The libraries are optional extras, imported inside the functions; weights are never
downloaded. The returned :class:`PretrainedEncoder` takes images (N, 3, H, W) scaled to
[0, 1], standardizes them with the model's own mean/std, and returns pooled features
(N, D) from ``embed``, so :func:`dlsa.backbones.extract_features` works on it as on our
ResNets. Feed it images of the model's input size, e.g. an
:class:`~dlsa.datasets.ImageListDataset` with ``size=224, resize=256``.

Weight files: ``.safetensors`` are read with safetensors; other files (``.pth``/``.pt``)
with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch
from torch import nn

Library = Literal["torchvision", "timm", "open_clip"]
LIBRARIES: tuple[str, ...] = ("torchvision", "timm", "open_clip")

_EXTRAS = {
    "torchvision": ("torchvision", "pip install dlsa[vision]"),
    "timm": ("timm", "pip install dlsa[timm]"),
    "open_clip": ("open_clip", "pip install dlsa[clip]"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PretrainedEncoder(nn.Module):
    """A pretrained trunk with its input standardization; ``embed`` gives (N, D).

    Args:
        trunk: module mapping standardized images (N, 3, H, W) to features (N, D).
        mean: per-channel mean of the model's training preprocessing.
        std: per-channel std of the model's training preprocessing.
        name: id of the model (stored in feature files as the backbone id).
        input_size: side of the square images the model takes (its center crop).
        resize: shorter side an image is resized to before that crop.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self,
        trunk: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        name: str,
        input_size: int = 224,
        resize: int = 256,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.name = name
        self.input_size, self.resize = int(input_size), int(resize)
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, D) of images (N, 3, H, W) in [0, 1]."""
        x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        return self.trunk(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)


def load_pretrained(
    library: Library,
    name: str,
    weights: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
) -> PretrainedEncoder:
    """Build a pretrained encoder from local weights, with its classifier removed.

    Args:
        library: ``"torchvision"`` (e.g. ``"resnet50"``), ``"timm"`` (any model name) or
            ``"open_clip"`` (e.g. ``"ViT-B-32"``; the image tower is used).
        name: the model's name in that library.
        weights: local weight file (for open_clip: the checkpoint it accepts as
            ``pretrained``).
        device: where to put the model.

    Returns:
        The encoder, in eval mode.

    Raises:
        ValueError: on an unknown library.
        FileNotFoundError: if ``weights`` does not exist (nothing is downloaded).
        ImportError: if the library is not installed; the message names the extra.
    """
    if library not in _EXTRAS:
        raise ValueError(f"library must be one of {tuple(_EXTRAS)}, got {library!r}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such weights file; {library} weights must be a local file "
            "(dlsa never downloads models)"
        )
    module = _import(library)
    build = {"torchvision": _torchvision, "timm": _timm, "open_clip": _open_clip}[library]
    return build(module, name, path).to(device).eval()


def _import(library: str) -> ModuleType:
    module_name, hint = _EXTRAS[library]
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{library} is not installed: `{hint}`") from err


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, safely, from a torch ``.pth``/``.pt``.

    Args:
        path: the weight file.

    Returns:
        Mapping of parameter names to tensors (a ``state_dict``/``model`` entry of a
        training checkpoint is unwrapped).
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    state = torch.load(p, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _torchvision(tv: ModuleType, name: str, path: Path) -> PretrainedEncoder:
    model = tv.models.get_model(name, weights=None)
    model.load_state_dict(read_state_dict(path))
    for head in ("fc", "heads", "classifier", "head"):
        if hasattr(model, head):
            setattr(model, head, nn.Identity())
            break
    # torchvision's classification weights: resize 256, center crop 224
    return PretrainedEncoder(model, IMAGENET_MEAN, IMAGENET_STD, f"torchvision:{name}", 224, 256)


def _timm(timm: ModuleType, name: str, path: Path) -> PretrainedEncoder:
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
    )
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    resize = int(math.floor(size / float(cfg.get("crop_pct", 0.875))))
    return PretrainedEncoder(model, mean, std, f"timm:{name}", size, resize)


def _open_clip(open_clip: ModuleType, name: str, path: Path) -> PretrainedEncoder:
    model = open_clip.create_model(name, pretrained=str(path))
    visual = model.visual
    mean = getattr(visual, "image_mean", None) or CLIP_MEAN
    std = getattr(visual, "image_std", None) or CLIP_STD
    size = getattr(visual, "image_size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return PretrainedEncoder(visual, mean, std, f"open_clip:{name}", size, size)  # resize = crop
