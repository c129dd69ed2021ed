"""Shared fixtures: float64 by default for the math tests, a small synthetic set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dlsa.datasets.synthetic import SyntheticSplit, make_long_tailed_features

# The tests use small tensors; one intra-op thread avoids OpenMP spin-waits that slow
# torch by 100x when another process shares the machine's two cores.
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for the math tests")
    parser.addoption("--dtype", default="float64", choices=["float32", "float64"])


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def lt_data() -> SyntheticSplit:
    """30 classes, D=8, counts 120 .. 3 (imbalance 40)."""
    return make_long_tailed_features(
        n_classes=30, n_features=8, n_max=120, imbalance=40, n_test_per_class=10, seed=3
    )


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], Calls]:
    """``count_calls(owner, name)`` wraps ``owner.name`` for the test; the list it returns
    gets the (args, kwargs) of every call, and the calls go through."""

    def patch(owner: Any, name: str) -> Calls:
        calls: Calls = []
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        return calls

    return patch


@pytest.fixture
def write_photos() -> Callable[[Path, tuple[tuple[str, int], ...], tuple[int, int]], Path]:
    """``write_photos(folder, ((class, n), ...), (height, width))``: n random RGB PNGs per
    class folder (``numpy.random.default_rng(0)``, classes in the order given);
    returns the folder."""

    def write(folder: Path, classes: tuple[tuple[str, int], ...], size: tuple[int, int]) -> Path:
        from PIL import Image

        rng = np.random.default_rng(0)
        for cls, n in classes:
            (folder / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / cls / f"{i}.png")
        return folder

    return write
