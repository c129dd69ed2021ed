"""Any torch encoder as a dlsa backbone: ``MODULE:CALLABLE`` (your own code).

``dlsa extract --backbone mypkg.models:make_encoder`` imports ``mypkg.models`` (from
``sys.path``, then the current directory) and calls ``make_encoder()`` with no
arguments. It must return a :class:`torch.nn.Module` mapping images (N, 3, H, W),
standardized with the model's mean and std, to features (N, D), or to feature maps
(N, D, h, w), which are averaged over h and w (global average pooling).

The preprocessing comes, in this order, from the flags (``--size``, ``--resize``,
``--mean``, ``--std``; the keyword arguments of :func:`load_encoder`), from the
module's ``dlsa_preprocess`` attribute if it has one, a dict with any of the keys
``size``, ``resize``, ``mean``, ``std``::

    net.dlsa_preprocess = {"size": 224, "resize": 256,
                           "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

and else from ImageNet's convention (size 224, resize 256, ImageNet mean and std).
Weights from ``--weights FILE`` are read by dlsa (:func:`dlsa.io.weights.read_weights`,
no pickled code run) and loaded with ``load_state_dict`` (strict).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlsa.backbones.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LIBRARIES,
    PretrainedEncoder,
    load_tensors,
)
from dlsa.errors import DLSAInputError
from dlsa.io.weights import read_weights

PREPROCESS_ATTRIBUTE = "dlsa_preprocess"
"""Name of the module attribute (a dict) giving its preprocessing."""
PREPROCESS_KEYS = ("size", "resize", "mean", "std")
"""Keys that attribute may hold."""


class GlobalPooled(nn.Module):
    """``module``'s output as (N, D): feature maps (N, D, h, w) are averaged over h, w."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, D) of standardized images (N, 3, H, W)."""
        out = self.module(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the encoder returned {type(out).__name__}, not a tensor (N, D) or (N, D, h, w)"
            )
        if out.dim() == 4:
            return out.mean(dim=(2, 3))
        if out.dim() == 2:
            return out
        raise ValueError(
            f"the encoder returned shape {tuple(out.shape)}; expected (N, D) or (N, D, h, w)"
        )


def _is_dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def parse_factory(spec: str) -> tuple[str, str] | None:
    """``MODULE:CALLABLE`` as ``(module, callable)``; None for anything else.

    A spec is a factory when its part before the colon is a dotted module path
    (``mypkg.models``), or a module that can be imported (here or in the current
    directory) and is not one of the libraries ``torchvision``, ``timm``, ``open_clip``
    (those are ``LIBRARY:MODEL``, :func:`dlsa.backbones.pretrained.parse_backbone`);
    an existing folder is never a factory.

    Raises:
        DLSAInputError: for a dotted module path without a callable name after the colon.

    Example:
        >>> parse_factory("mypkg.models:make_encoder"), parse_factory("timm:resnet50")
        (('mypkg.models', 'make_encoder'), None)
    """
    module, colon, attr = spec.partition(":")
    if not colon or module in LIBRARIES or not _is_dotted(module) or Path(spec).is_dir():
        return None
    if "." not in module and not _importable(module):
        return None  # an unknown LIBRARY: parse_backbone says so
    if not _is_dotted(attr):
        raise DLSAInputError(
            f"--backbone {spec}: give MODULE:CALLABLE, the name of a function of "
            f"{module} after the colon"
        )
    return module, attr


def _importable(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (current directory included)."""
    _with_cwd()
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _with_cwd() -> None:
    """Put the current directory at the end of ``sys.path`` (as ``python -m`` would put
    it first; last, so that it never shadows an installed package)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    importlib.invalidate_caches()  # a module file written since the last import


def import_factory(module: str, attr: str) -> Callable[[], Any]:
    """The callable ``attr`` (dotted attributes allowed) of the module ``module``.

    Raises:
        DLSAInputError: one line naming the module or the callable, if the module
            cannot be imported, has no such attribute, or it is not callable.
    """
    _with_cwd()
    spec = f"{module}:{attr}"
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise DLSAInputError(
            f"--backbone {spec}: cannot import module {module!r} ({err}); is it on "
            "sys.path or in the current directory?"
        ) from err
    except Exception as err:  # the user's module raised while importing
        raise DLSAInputError(
            f"--backbone {spec}: importing {module} failed: {type(err).__name__}: {err}"
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise DLSAInputError(f"--backbone {spec}: module {module} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DLSAInputError(f"--backbone {spec}: {attr} is not callable")
    return obj  # type: ignore[no-any-return]


def preprocess_of(
    module: nn.Module,
    *,
    size: int | None = None,
    resize: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The preprocessing of ``module``: the arguments given, else its ``dlsa_preprocess``
    attribute, else ImageNet's (size 224, resize ``size * 256 / 224``, ImageNet stats).

    Raises:
        DLSAInputError: for an attribute that is not a dict of the known keys, a mean or
            std that is not 3 numbers (std > 0), or a resize smaller than the size.

    Example:
        >>> preprocess_of(nn.Identity(), size=112)["resize"]
        128
    """
    own = getattr(module, PREPROCESS_ATTRIBUTE, None) or {}
    if not isinstance(own, Mapping) or any(k not in PREPROCESS_KEYS for k in own):
        raise DLSAInputError(
            f"{type(module).__name__}.{PREPROCESS_ATTRIBUTE} must be a dict with keys "
            f"among {', '.join(PREPROCESS_KEYS)}, got {own!r}"
        )
    size = int(size or own.get("size") or 224)
    given_resize = resize or own.get("resize")
    resize = int(given_resize) if given_resize else round(size * 256 / 224)
    mean = tuple(float(v) for v in (mean or own.get("mean") or IMAGENET_MEAN))
    std = tuple(float(v) for v in (std or own.get("std") or IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DLSAInputError(f"mean and std must be 3 numbers (std > 0), got {mean}, {std}")
    if size < 1 or resize < size:
        raise DLSAInputError(f"resize ({resize}) must be at least size ({size}) and size >= 1")
    return {"size": size, "resize": resize, "mean": mean, "std": std}


def load_encoder(
    factory: Callable[[], nn.Module] | str,
    weights: str | os.PathLike[str] | None = None,
    *,
    size: int | None = None,
    resize: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    device: str | torch.device = "cpu",
) -> PretrainedEncoder:
    """An encoder for :func:`dlsa.backbones.extract_features` from any torch module.

    Args:
        factory: a callable taking no arguments and returning an ``nn.Module`` that maps
            standardized images (N, 3, H, W) to (N, D) or (N, D, h, w) (pooled), or its
            ``"MODULE:CALLABLE"`` name.
        weights: optional local weights file (``.safetensors``, ``.pth``), read without
            running pickled code and loaded with ``load_state_dict`` (strict).
        size, resize, mean, std: preprocessing (see :func:`preprocess_of`).
        name: id stored in feature files (default: the factory's ``MODULE:CALLABLE``).
        device: where to put the model.

    Returns:
        The encoder in eval mode; ``input_size`` and ``resize`` give its preprocessing.

    Raises:
        DLSAInputError: bad factory name or preprocessing, or a factory that does not
            return an ``nn.Module``.
        FileNotFoundError: if ``weights`` does not exist.
        ModelFileError: if the weights are unreadable, pickled objects, or do not match.

    Example:
        >>> enc = load_encoder(lambda: nn.Conv2d(3, 8, 3), size=32, name="conv")
        >>> enc.embed(torch.rand(2, 3, 32, 32)).shape, enc.resize
        (torch.Size([2, 8]), 37)
    """
    if isinstance(factory, str):
        parsed = factory.partition(":")
        if not parsed[1] or not _is_dotted(parsed[0]) or not _is_dotted(parsed[2]):
            raise DLSAInputError(f"--backbone {factory}: expected MODULE:CALLABLE")
        name = name or factory
        factory = import_factory(parsed[0], parsed[2])
    name = name or f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"
    module = factory()
    if not isinstance(module, nn.Module):
        raise DLSAInputError(
            f"--backbone {name}: returned {type(module).__name__}, not a torch.nn.Module"
        )
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such weights file")
        load_tensors(module, read_weights(path), path)
    pre = preprocess_of(module, size=size, resize=resize, mean=mean, std=std)
    encoder = PretrainedEncoder(
        GlobalPooled(module), pre["mean"], pre["std"], name, pre["size"], pre["resize"]
    )
    return encoder.to(device).eval()
