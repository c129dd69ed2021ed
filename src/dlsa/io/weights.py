"""Reading a weights file someone else wrote, without running any of its code.

A ``.pth``/``.pt`` file is a pickle: unpickling it with ``torch.load(weights_only=False)``
(what several libraries do with a local checkpoint) can call any importable function.
:func:`read_weights` reads ``.safetensors`` with safetensors (no code at all) and any
other file with ``torch.load(weights_only=True)``, whose unpickler builds tensors and
plain containers only and refuses every other global; dlsa then hands the tensors to
the model itself (``load_state_dict``), never the file's path to a library.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from dlsa.errors import ModelFileError
from dlsa.io.integrity import read_tensors

WRAPPERS = ("state_dict", "model", "module", "model_state_dict")
"""Keys under which a training checkpoint keeps its state dict (unwrapped on read)."""

_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def read_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict (name -> tensor) of a ``.safetensors`` or a torch ``.pth``/``.pt``
    file, read without executing code.

    Args:
        path: the weights file.

    Returns:
        Mapping of parameter names to tensors, on the CPU; a training checkpoint's
        ``state_dict`` / ``model`` entry is unwrapped.

    Raises:
        ModelFileError: naming the file, if it is truncated or not a weights file, if it
            holds pickled objects other than tensors (refused, never run), or if it holds
            no mapping of names to tensors.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"state_dict": {"w": torch.ones(2)}}, f"{tmp}/w.pth")
        ...     read_weights(f"{tmp}/w.pth")
        {'w': tensor([1., 1.])}
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        return read_tensors(p, finite=False)
    state = _torch_load(p)
    for _ in range(3):  # {"state_dict": {...}}, {"model": {"state_dict": ...}}, ...
        inner = [state[k] for k in WRAPPERS if isinstance(state, dict) and k in state]
        if len(inner) != 1 or not isinstance(inner[0], dict):
            break
        state = inner[0]
    return _tensors_only(state, p)


def _torch_load(p: Path) -> object:
    """``torch.load(p, weights_only=True)``, its failures as one :class:`ModelFileError`."""
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        what = f" ({found.group(1)})" if found else ""
        raise ModelFileError(
            f"{p}: refused: the file holds pickled objects{what} besides tensors, or is not "
            "a torch weights file; dlsa reads .pth files with torch.load(weights_only=True) "
            "and never runs their code: save model.state_dict() or a .safetensors file"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise ModelFileError(
            f"{p}: not a readable torch weights file, truncated or damaged ({reason})"
        ) from None


def _tensors_only(state: object, p: Path) -> dict[str, Tensor]:
    """``state`` if it maps names to tensors, else a :class:`ModelFileError`."""
    if not isinstance(state, Mapping) or not state:
        raise ModelFileError(
            f"{p}: holds {type(state).__name__}, not a state dict (a mapping of parameter "
            "names to tensors)"
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise ModelFileError(f"{p}: entries that are not tensors: {shown}; expected a state dict")
    return dict(state)
