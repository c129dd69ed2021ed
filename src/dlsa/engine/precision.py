"""Matmul precision of training steps: float32, TF32 or bfloat16 autocast.

Training steps may run their matmuls at lower precision (``FilterConfig.precision``,
``HeadConfig.precision``); scoring, thresholds and predictions never do. Under bfloat16
autocast, the modules keep in float32 what needs its range or accuracy: the mixture's
squared distances (a difference of large norms, :func:`float32_region`), the flow's
shift and log-scale, and every logit. CUDA's autocast would already run exp, sums and
log-softmax in float32, the CPU's does not; with these casts both give the same forward
pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import get_args

import torch
from torch import Tensor

from dlsa.config.schema import Precision

AUTOCAST_DEVICES = ("cpu", "cuda")
"""Device types ``torch.autocast`` supports here; elsewhere (e.g. ``meta``) "bf16" is a
no-op."""


@contextmanager
def step_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Run a training step's forward pass at ``precision``.

    "fp32": as is. "tf32": on CUDA, float32 matmuls and convolutions use TF32 tensor
    cores (the global switches are restored afterwards); elsewhere no effect. "bf16":
    ``torch.autocast`` to bfloat16 on ``device``; the modules keep their numerically
    sensitive parts in float32 themselves (the mixture's distances, the flow's scale
    and shift, every logit), so the forward pass is the same on the CPU and on CUDA,
    whose autocast policies differ.
    """
    if precision == "bf16" and device.type in AUTOCAST_DEVICES:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    elif precision in get_args(Precision):
        yield
    else:
        raise ValueError(f"precision must be 'fp32', 'tf32' or 'bf16', got {precision!r}")


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` as float32 if it is bfloat16 or float16 (an autocast output), else as is
    (float32 and float64 stay)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def float32_region(device: torch.device) -> AbstractContextManager[None]:
    """A context in which autocast is off on ``device``: its matmuls run in the inputs'
    own dtype (cast them to float32 first)."""
    if device.type in AUTOCAST_DEVICES:
        return torch.autocast(device.type, enabled=False)
    return nullcontext()
