"""Random draws that work on every device.

The rule of the whole package: all randomness comes from ``torch.Generator`` objects
passed in (never the global RNG, except inside :func:`seeded`), and **every draw is
made on the device its generator lives on and then moved to the device of the data it
indexes or scales**. A CPU generator cannot draw on CUDA, and a CPU draw combined with
CUDA tensors fails ("Expected all tensors to be on the same device"); drawing on the
generator's device first and moving the result also makes a seed give the same numbers
on every device. The helpers below are the only way draws are made in the package.

The package's generators are CPU generators (:func:`torch_generator`): the same seed
then gives the same model on the CPU and on a GPU up to floating-point differences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar("T")
DeviceLike = torch.device | str | None


def torch_generator(seed: np.random.SeedSequence) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from a ``SeedSequence`` (63 bits of its state).

    Example:
        >>> a = torch_generator(np.random.SeedSequence(1))
        >>> torch.equal(torch.rand(2, generator=a),
        ...             torch.rand(2, generator=torch_generator(np.random.SeedSequence(1))))
        True
    """
    return torch.Generator().manual_seed(int(seed.generate_state(1, dtype=np.uint64)[0] >> 1))


def seeded(build: Callable[[], T], generator: torch.Generator) -> T:
    """Run ``build`` with torch's RNG seeded from ``generator``, restoring it afterwards.

    Module constructors draw their initial weights from the global RNG; this makes them
    depend on our generator only, without leaving any global state changed.

    Example:
        >>> a = seeded(lambda: torch.rand(2), torch.Generator().manual_seed(1))
        >>> b = seeded(lambda: torch.rand(2), torch.Generator().manual_seed(1))
        >>> torch.equal(a, b)
        True
    """
    seed = seed_from(generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


Size = int | tuple[int, ...]


def _shape(size: Size) -> tuple[int, ...]:
    return (size,) if isinstance(size, int) else tuple(size)


def rand(
    size: Size, generator: torch.Generator, device: DeviceLike, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Uniform draws in [0, 1) of shape ``size``, made on the generator's device, moved
    to ``device``.

    Example:
        >>> rand(3, torch.Generator().manual_seed(0), "cpu").shape
        torch.Size([3])
    """
    out = torch.rand(_shape(size), generator=generator, device=generator.device, dtype=dtype)
    return out.to(device)


def randn(
    size: Size, generator: torch.Generator, device: DeviceLike, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Standard normal draws of shape ``size``, made on the generator's device, moved.

    Example:
        >>> randn((2, 3), torch.Generator().manual_seed(0), "cpu").shape
        torch.Size([2, 3])
    """
    out = torch.randn(_shape(size), generator=generator, device=generator.device, dtype=dtype)
    return out.to(device)


def randint(high: int, size: Size, generator: torch.Generator, device: DeviceLike) -> Tensor:
    """int64 draws uniform in ``[0, high)`` of shape ``size``, made on the generator's
    device, moved to ``device``.

    Example:
        >>> bool((randint(4, 100, torch.Generator().manual_seed(0), "cpu") < 4).all())
        True
    """
    out = torch.randint(high, _shape(size), generator=generator, device=generator.device)
    return out.to(device)


def randperm(n: int, generator: torch.Generator, device: DeviceLike) -> Tensor:
    """A random permutation (n,) of ``range(n)``, drawn on the generator's device, moved.

    Example:
        >>> sorted(randperm(4, torch.Generator().manual_seed(0), "cpu").tolist())
        [0, 1, 2, 3]
    """
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def multinomial(probs: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws per row of probs (R, M) (with ``torch.multinomial``'s rules), made on
    the generator's device; indices (R, n) on ``probs``' device.

    Example:
        >>> multinomial(torch.tensor([[0.0, 1.0]]), 1, torch.Generator()).tolist()
        [[1]]
    """
    out = torch.multinomial(probs.to(generator.device), n, generator=generator)
    return out.to(probs.device)


def seed_from(generator: torch.Generator, high: int = 2**62) -> int:
    """An integer seed in ``[0, high)`` drawn from ``generator``."""
    return int(torch.randint(0, high, (1,), generator=generator, device=generator.device))
