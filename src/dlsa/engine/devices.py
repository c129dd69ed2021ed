"""The torch device a user names (``--device``, ``device=``), checked once, in one line.

``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per process under
torchrun; ``cuda:0`` otherwise), else the CPU. Any other value is a
:class:`torch.device` string; a name torch does not know, a CUDA device on a machine or
a torch build without CUDA, a GPU index beyond the ones present, or MPS where it is not
available is a :class:`dlsa.errors.DLSAInputError` naming the value, not a traceback
from inside torch.
"""

from __future__ import annotations

import os

import torch

from dlsa.errors import DLSAInputError


def resolve_device(spec: str | torch.device, *, what: str = "device") -> torch.device:
    """The device ``spec`` names, checked to exist here.

    Args:
        spec: "auto", "cpu", "cuda", "cuda:1", "mps", ... or a :class:`torch.device`.
        what: how the value is named in errors (e.g. "--device").

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(spec, torch.device):
        device = spec
    elif spec == "auto":
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(spec)
        except (RuntimeError, TypeError) as err:
            raise DLSAInputError(f"{what} {spec!r} is not a torch device ({err})") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise DLSAInputError(
                f"{what} {str(spec)!r}: CUDA is not available here (torch {torch.__version__}, "
                f"{build}); use 'cpu' or 'auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DLSAInputError(
                f"{what} {str(spec)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DLSAInputError(f"{what} {str(spec)!r}: MPS is not available here")
    return device
