"""The device rule of :mod:`dlsa.engine.rng`: draws are made where the generator lives, then
moved to the data's device.

A CPU-only machine has no second real device, but the ``meta`` device behaves like one for
this purpose: an op mixing a CPU tensor with a meta tensor fails exactly as a CPU draw
combined with CUDA data does ("... not on the expected device"). Tables placed on ``meta``
and a CPU generator therefore catch a draw that is not moved, as the CUDA crash in the
purity-pair sampler was.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlsa.engine import rng
from dlsa.engine.sampling import ClassIndex, PurityPairSampler

META = torch.device("meta")


def test_meta_emulates_a_second_device():
    with pytest.raises(RuntimeError, match="device"):
        torch.rand(3) * torch.ones(3, dtype=torch.long, device=META)


@pytest.mark.parametrize(
    "draw",
    [
        lambda g: rng.rand(5, g, META),
        lambda g: rng.rand((2, 3), g, META, dtype=torch.float64),
        lambda g: rng.randn((4, 2), g, META),
        lambda g: rng.randint(7, 5, g, META),
        lambda g: rng.randperm(5, g, META),
    ],
)
def test_draws_are_moved_to_the_requested_device(draw):
    out = draw(torch.Generator().manual_seed(0))
    assert out.device == META


def test_draws_do_not_depend_on_the_target_device():
    a = rng.randperm(50, torch.Generator().manual_seed(3), "cpu")
    b = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_purity_pairs_with_tables_on_another_device():
    sampler = PurityPairSampler(torch.tensor([0, 0, 1, 1, 2, 2, 2]))
    sampler.index = sampler.index.to(META)  # the labels live on "another device"
    i, j = sampler.draw(16, torch.Generator().manual_seed(0))
    assert i.device == META and j.device == META and i.shape == (16,)


def test_pairs_of_an_epoch_drawn_at_once_equal_the_pairs_drawn_step_by_step():
    sampler = PurityPairSampler(torch.tensor([0, 0, 1, 1, 2, 2, 2, 3]))
    step_by_step = torch.Generator().manual_seed(4)
    at_once = torch.Generator().manual_seed(4)
    i, j = sampler.draw_steps(5, 6, at_once)
    assert i.shape == j.shape == (5, 6)
    for s in range(5):
        i_s, j_s = sampler.draw(6, step_by_step)
        assert torch.equal(i[s], i_s) and torch.equal(j[s], j_s)
    assert torch.equal(torch.rand(3, generator=step_by_step), torch.rand(3, generator=at_once))
    sampler.index = sampler.index.to(META)  # tables on "another device": one copy there
    assert sampler.draw_steps(3, 4, torch.Generator())[0].device == META


def test_the_unmoved_draw_fails_on_another_device():
    """What the purity sampler did before the fix (CPU draw x counts on the data's device)."""
    counts = ClassIndex(torch.tensor([0, 0, 1])).to(META).counts
    with pytest.raises(RuntimeError, match="device"):
        torch.rand(4, generator=torch.Generator()) * counts[torch.zeros(4, dtype=torch.long)]


def test_multinomial_returns_on_the_probabilities_device():
    probs = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert rng.multinomial(probs, 1, torch.Generator()).tolist() == [[1], [0]]


@settings(max_examples=25, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=2, max_size=40).filter(lambda v: len(set(v)) > 1),
    seed=st.integers(0, 2**31),
)
def test_purity_pairs_always_join_two_classes(labels, seed):
    y = torch.tensor(labels)
    i, j = PurityPairSampler(y).draw(32, torch.Generator().manual_seed(seed))
    assert bool((y[i] != y[j]).all())
    assert int(i.max()) < len(labels) and int(j.min()) >= 0


@settings(max_examples=25, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=30),
    u=st.floats(0.0, 1.0, exclude_max=True),
)
def test_class_index_picks_a_sample_of_the_requested_class(labels, u):
    y = torch.tensor(labels)
    index = ClassIndex(y)
    cls = torch.arange(index.n_classes)
    picked = index.pick(cls, torch.full((index.n_classes,), u))
    assert torch.equal(y[picked], index.classes)


DRAW = re.compile(r"torch\.(rand|randn|randint|randperm|multinomial|bernoulli|normal)\(")


def test_every_seeded_draw_goes_through_rng():
    """Outside dlsa/engine/rng.py no code draws from a generator directly (docstring examples,
    which use the global RNG, excepted)."""
    root = Path(__file__).resolve().parents[1] / "src" / "dlsa"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "rng.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.strip()
            if DRAW.search(code) and "generator" in code and not code.startswith((">>>", "...")):
                offenders.append(f"{path.relative_to(root)}:{n}: {code}")
    assert not offenders, "\n".join(offenders)
