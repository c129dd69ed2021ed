"""Per-epoch run state of ``dlsa train``: what ``--resume`` needs, without pickle.

After each epoch, rank 0 writes ``<out>/state/epoch-NNNN/`` (built in a temporary folder
and renamed, so it is complete or absent) holding ``state.safetensors`` (the model, the
best epoch's model, the objective's state and the optimizer's momentum buffers, with
key prefixes ``model.``, ``best.``, ``objective.``, ``optim.``) and ``state.json`` (epoch,
history, the run's fingerprint); then it removes the older epoch folders. A run killed at
any moment therefore leaves its last finished epoch, and resuming from it repeats the
same computation an uninterrupted run does.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.io.atomic import atomic_dir
from dlsa.io.integrity import read_tensors

STATE_DIR = "state"
_EPOCH = re.compile(r"^epoch-(\d{4,})$")


class ResumeError(DLSAInputError):
    """``--resume`` on a folder without a saved epoch, or from another configuration."""


def epoch_folders(out: Path) -> list[tuple[int, Path]]:
    """Saved epochs of the run in ``out``, oldest first."""
    root = out / STATE_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _EPOCH.match(p.name))]
    return sorted(found)


def save_state(out: Path, epoch: int, tensors: dict[str, torch.Tensor], info: dict) -> Path:
    """Write epoch ``epoch``'s state atomically, then drop the older epochs."""
    dest = out / STATE_DIR / f"epoch-{epoch:04d}"
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_dir(dest) as tmp:
        save_file(cpu, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(
            json.dumps({"epoch": epoch, **info}, indent=1), encoding="utf-8"
        )
    for old, path in epoch_folders(out):
        if old < epoch:
            shutil.rmtree(path, ignore_errors=True)
    return dest


def load_state(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The last saved epoch's tensors and info.

    Raises:
        ResumeError: if ``out`` holds no saved epoch, or its files are damaged
            (invalid JSON, a truncated or unreadable ``state.safetensors``).
    """
    folders = epoch_folders(out)
    if not folders:
        raise ResumeError(f"--resume: {out} holds no saved epoch ({STATE_DIR}/epoch-*)")
    path = folders[-1][1]
    try:
        info = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except ValueError as err:  # also UnicodeDecodeError
        raise ResumeError(f"--resume: {path / 'state.json'}: invalid JSON ({err})") from err
    try:
        return read_tensors(path / "state.safetensors", finite=False), info
    except ModelFileError as err:
        raise ResumeError(f"--resume: {err}") from err


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    """Refuse to resume a run whose result-defining settings or data differ.

    Raises:
        ResumeError: naming every differing setting with its saved and current value.
    """
    keys = sorted(set(saved) | set(current))
    diff = [f"{k} (saved {saved.get(k)!r}, now {current.get(k)!r})" for k in keys
            if saved.get(k) != current.get(k)]  # fmt: skip
    if diff:
        raise ResumeError(
            f"--resume: {out} was trained with another configuration: {'; '.join(diff)}"
        )


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with ``prefix + '.'``, with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def with_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with keys ``prefix.key``."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """SGD's momentum buffers as ``{"<param index>": buffer}``."""
    state = optimizer.state_dict()["state"]
    return {str(i): s["momentum_buffer"] for i, s in state.items() if "momentum_buffer" in s}


def load_optimizer(optimizer: torch.optim.Optimizer, buffers: dict[str, torch.Tensor]) -> None:
    """Restore momentum buffers written by :func:`optimizer_tensors`."""
    state = optimizer.state_dict()
    state["state"] = {int(i): {"momentum_buffer": b} for i, b in buffers.items()}
    optimizer.load_state_dict(state)
