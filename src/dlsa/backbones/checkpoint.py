"""Backbone checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint ``<dir>/<name>`` is two files: ``<name>.safetensors`` (the state dict) and
``<name>.json`` (the architecture, its constructor arguments and free metadata such as
the training history). Both are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dlsa.backbones.bottleneck import BottleneckResNet
from dlsa.backbones.resnet import ResNet
from dlsa.errors import ModelFileError
from dlsa.io.atomic import write_atomic
from dlsa.io.integrity import read_tensors

Backbone = ResNet | BottleneckResNet
_ARCHITECTURES: dict[str, type[Backbone]] = {
    "resnet": ResNet,
    "bottleneck-resnet": BottleneckResNet,
}


def save_checkpoint(
    model: Backbone,
    directory: str | os.PathLike[str],
    name: str = "best",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory/name.safetensors`` and ``directory/name.json``.

    Args:
        model: the backbone (:class:`ResNet` or :class:`BottleneckResNet`).
        directory: destination folder (created if needed).
        name: file stem.
        metadata: JSON-serializable extras (history, training arguments, seed ...).

    Returns:
        The path of the ``.safetensors`` file.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    arch = getattr(model, "architecture", "resnet")
    info = {"architecture": arch, "config": model.config(), "metadata": metadata or {}}
    weights = folder / f"{name}.safetensors"
    write_atomic(weights, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(info, indent=2)
    write_atomic(folder / f"{name}.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return weights


def load_checkpoint(
    directory: str | os.PathLike[str], name: str = "best", device: str | torch.device = "cpu"
) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild a backbone written by :func:`save_checkpoint`.

    Args:
        directory: the folder.
        name: file stem.
        device: where to put the model.

    Returns:
        ``(model, metadata)``, the model in eval mode.

    Raises:
        FileNotFoundError: if either file is missing.
        ModelFileError: (a ``ValueError``) naming the file, if the JSON is invalid or
            names an unknown architecture or bad settings, or the tensors are damaged
            (truncated, not safetensors, not finite) or do not match the architecture.
    """
    folder = Path(directory)
    weights, info_file = folder / f"{name}.safetensors", folder / f"{name}.json"
    for p in (weights, info_file):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such checkpoint file")
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except ValueError as err:  # also UnicodeDecodeError
        raise ModelFileError(f"{info_file}: invalid JSON ({err})") from err
    arch = info.get("architecture") if isinstance(info, dict) else None
    if arch not in _ARCHITECTURES:
        raise ModelFileError(f"{info_file}: unknown architecture {arch!r}")
    try:
        model = _ARCHITECTURES[arch](**info["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{info_file}: invalid 'config' ({err})") from err
    try:
        model.load_state_dict(read_tensors(weights))
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:300]
        raise ModelFileError(
            f"{weights}: tensors do not match {info['config']} ({reason})"
        ) from err
    return model.to(device).eval(), info.get("metadata", {})
