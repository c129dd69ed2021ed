"""Pretrained image encoders (torchvision, timm, open_clip) loaded from LOCAL weights only.

The libraries are optional extras, imported inside the functions; weights are never
downloaded. The returned :class:`PretrainedEncoder` takes images (N, 3, H, W) scaled to
[0, 1], standardizes them with the model's own mean/std, and returns pooled features
(N, D) from ``embed``, so :func:`dlsa.backbones.extract_features` works on it as on our
ResNets. Feed it images of the model's input size, e.g. an
:class:`~dlsa.datasets.ImageListDataset` with ``size=224, resize=256``.

Weight files are read by dlsa itself, never by the library
(:func:`dlsa.io.weights.read_weights`): ``.safetensors`` with safetensors, other files
(``.pth``/``.pt``) with ``torch.load(weights_only=True)``, which refuses pickled objects
other than tensors. The model is built without weights and gets the tensors through
``load_state_dict``, for every library: timm and open_clip, given a file, may unpickle it
with ``weights_only=False`` and so run its code.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor, nn

from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.io.weights import read_weights

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


def parse_backbone(spec: str) -> tuple[Library, str] | None:
    """``LIBRARY:MODEL`` as ``(library, model)``; None for anything else (a folder).

    Raises:
        DLSAInputError: for ``NAME:MODEL`` whose ``NAME`` is not a known library, or a
            known library without a model name; the message lists the libraries.

    Example:
        >>> parse_backbone("timm:vit_small_patch14_dinov2"), parse_backbone("runs/a")
        (('timm', 'vit_small_patch14_dinov2'), None)
    """
    library, colon, name = spec.partition(":")
    if not colon or Path(spec).is_dir() or len(library) < 2 or not library.isidentifier():
        return None  # a folder (also one whose name holds a colon, or C:\\...)
    if library not in LIBRARIES:
        raise DLSAInputError(
            f"--backbone {spec}: unknown library {library!r} (nor a module that can be "
            f"imported, nor a backbone folder); use LIBRARY:MODEL with LIBRARY one of "
            f"{', '.join(LIBRARIES)}, MODULE:CALLABLE (a module you can import), or a "
            "folder of dlsa train"
        )
    if not name:
        raise DLSAInputError(f"--backbone {spec}: no model name after {library}:")
    return library, name  # type: ignore[return-value]


def load_pretrained(
    library: Library,
    name: str,
    weights: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
) -> PretrainedEncoder:
    """Build a pretrained encoder from local weights, with its classifier removed.

    The weights are read by dlsa (:func:`dlsa.io.weights.read_weights`, no code run)
    and loaded into the library's model, built without weights, with
    ``load_state_dict``.

    Args:
        library: ``"torchvision"`` (e.g. ``"resnet50"``), ``"timm"`` (any model name) or
            ``"open_clip"`` (e.g. ``"ViT-B-32"``; the image tower is used).
        name: the model's name in that library.
        weights: local weight file (``.safetensors``, or a ``.pth``/``.pt`` state dict;
            for open_clip, a CLIP checkpoint whose image tower's keys start ``visual.``).
        device: where to put the model.

    Returns:
        The encoder, in eval mode.

    Raises:
        DLSAInputError: on an unknown library or a model name that would be downloaded.
        FileNotFoundError: if ``weights`` does not exist (nothing is downloaded).
        ImportError: if the library is not installed; the message names the extra.
        ModelFileError: if the weights file is damaged, holds pickled objects (refused)
            or its tensors do not match the model.
    """
    if library not in _EXTRAS:
        raise DLSAInputError(f"library must be one of {', '.join(_EXTRAS)}, got {library!r}")
    if name.startswith(("hf-hub:", "hf_hub:")):
        raise DLSAInputError(
            f"{library}:{name}: dlsa never downloads models; give the model's name and a "
            "local --weights file"
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such weights file; {library} weights must be a local file "
            "(dlsa never downloads models)"
        )
    module = _import(library)
    state = read_weights(path)
    build = {"torchvision": _torchvision, "timm": _timm, "open_clip": _open_clip}[library]
    return build(module, name, state, path).to(device).eval()


def _import(library: str) -> ModuleType:
    module_name, hint = _EXTRAS[library]
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{library} is not installed: `{hint}`") from err


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, safely, from a torch ``.pth``/``.pt``
    (:func:`dlsa.io.weights.read_weights`).

    Args:
        path: the weight file.

    Returns:
        Mapping of parameter names to tensors (a ``state_dict``/``model`` entry of a
        training checkpoint is unwrapped).
    """
    return read_weights(path)


def load_tensors(
    model: nn.Module,
    state: Mapping[str, Tensor],
    path: Path,
    *,
    drop: Iterable[str] = (),
) -> None:
    """``model.load_state_dict(state)`` (strict) without the entries under the prefixes
    ``drop`` (a removed classifier), a mismatch as a :class:`ModelFileError` naming
    the file and the first differing keys."""
    prefixes = tuple(drop)
    kept = {
        k: v
        for k, v in state.items()
        if not any(k == d or k.startswith(d + ".") for d in prefixes)
    }
    own = model.state_dict()
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    shapes = [k for k in kept if k in own and kept[k].shape != own[k].shape]
    problems = [
        f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if keys
    ]
    if problems:
        raise ModelFileError(
            f"{path}: its tensors do not match the model ({'; '.join(problems)}); "
            "is it the weights of this model?"
        )
    model.load_state_dict(kept, strict=True)


def _torchvision(
    tv: ModuleType, name: str, state: dict[str, Tensor], path: Path
) -> PretrainedEncoder:
    model = tv.models.get_model(name, weights=None)
    load_tensors(model, state, path)
    for head in ("fc", "heads", "classifier", "head"):
        if hasattr(model, head):
            setattr(model, head, nn.Identity())
            break
    # torchvision's classification weights: resize 256, center crop 224
    return PretrainedEncoder(model, IMAGENET_MEAN, IMAGENET_STD, f"torchvision:{name}", 224, 256)


def _timm(timm: ModuleType, name: str, state: dict[str, Tensor], path: Path) -> PretrainedEncoder:
    # built without weights and without a classifier: timm never opens the file
    model = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = cfg.get("classifier", "head")
    load_tensors(
        model, state, path, drop=[classifier] if isinstance(classifier, str) else classifier
    )
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    resize = int(math.floor(size / float(cfg.get("crop_pct", 0.875))))
    return PretrainedEncoder(model, mean, std, f"timm:{name}", size, resize)


def _open_clip(
    open_clip: ModuleType, name: str, state: dict[str, Tensor], path: Path
) -> PretrainedEncoder:
    # built without weights (nor the text tower's from the hub): open_clip never opens
    # the file; the image tower gets the checkpoint's visual.* tensors
    params = inspect.signature(open_clip.create_model).parameters
    no_download = {k: False for k in ("pretrained_hf", "pretrained_text") if k in params}
    model = open_clip.create_model(name, pretrained=None, **no_download)
    visual = model.visual
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    tower = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    load_tensors(visual, tower or state, path)
    mean = getattr(visual, "image_mean", None) or CLIP_MEAN
    std = getattr(visual, "image_std", None) or CLIP_STD
    size = getattr(visual, "image_size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return PretrainedEncoder(visual, mean, std, f"open_clip:{name}", size, size)  # resize = crop
