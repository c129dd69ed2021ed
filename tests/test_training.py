"""The generic minibatch loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlsa.engine import training
from dlsa.engine.training import SGD, OptimSettings, minibatches, train_epochs


def test_minibatches_cover_the_order_and_skip_small_tail():
    order = torch.arange(10)
    batches = list(minibatches(order, 4))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(minibatches(order, 4, min_batch=3))) == 2


def test_train_epochs_fits_a_linear_model_and_calls_back_each_epoch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    w = torch.nn.Parameter(torch.zeros(3))
    seen = []
    history = train_epochs(
        [w],
        lambda idx: (x[idx] @ w - y[idx]).square().mean(),
        lambda: torch.randperm(256, generator=g),
        OptimSettings(epochs=30, batch_size=32, lr=0.1, momentum=0.9, cosine=True),
        on_epoch_end=lambda e, loss: seen.append(e),
    )
    assert seen == list(range(1, 31))
    assert history.losses[-1] < 1e-4 < history.losses[0]
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=1e-2, rtol=0)


def test_non_finite_loss_stops_before_the_update():
    w = torch.nn.Parameter(torch.ones(1))
    calls = []

    def loss(idx: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return w.sum() * (math.inf if len(calls) == 3 else 1.0)

    history = train_epochs(
        [w], loss, lambda: torch.arange(4), OptimSettings(epochs=5, batch_size=2, lr=0.1)
    )
    assert history.diverged_epoch == 2
    assert len(history.losses) == 1
    assert torch.isfinite(w).all() and float(w.detach()) == pytest.approx(1 - 0.1 * 2)


def test_gradient_clipping_bounds_the_step():
    w = torch.nn.Parameter(torch.zeros(2))
    train_epochs(
        [w],
        lambda idx: (w * torch.tensor([1000.0, 0.0])).sum(),
        lambda: torch.arange(1),
        OptimSettings(epochs=1, batch_size=1, lr=1.0, grad_clip=0.5),
    )
    assert float(w.detach().norm()) == pytest.approx(0.5)


def test_optimiser_settings_come_from_the_config_fields_of_the_same_name():
    from dlsa.config import FilterConfig, HeadConfig

    head = HeadConfig(epochs=7, batch_size=33, lr=0.05, momentum=0.5, weight_decay=1e-3)
    assert OptimSettings.of(head) == OptimSettings(7, 33, 0.05, 0.5, 1e-3, None, True, 1)
    assert not OptimSettings.of(HeadConfig(schedule="constant")).cosine
    flt = FilterConfig(epochs=4, batch_size=16, lr=0.3, momentum=0.1, grad_clip=2.0)
    settings = OptimSettings.of(flt, min_batch=2)
    assert settings == OptimSettings(4, 16, 0.3, 0.1, 0.0, 2.0, False, 2)
    assert OptimSettings.of(head, lr=1.0, epochs=2).lr == 1.0


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 5e-4), (0.5, 0.0)])
def test_sgd_is_torch_sgd_bit_for_bit(momentum, weight_decay):
    """The lean SGD of the training loop gives exactly the parameters of
    ``torch.optim.SGD`` over 50 steps with a changing learning rate and a parameter
    that gets no gradient."""
    from dlsa.engine.training import SGD

    def run(lean: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        layer, unused = nn.Linear(6, 4), nn.Parameter(torch.ones(3))
        params = [*layer.parameters(), unused]
        if lean:
            opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
        x, y = torch.randn(32, 6), torch.randint(0, 4, (32,))
        for step in range(50):
            lr = 0.1 * (1 - step / 50)
            if lean:
                opt.lr = lr
            else:
                opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            nn.functional.cross_entropy(layer(x[step % 4 :: 4]), y[step % 4 :: 4]).backward()
            opt.step()
        return [p.detach() for p in params]

    for lean, ref in zip(run(True), run(False), strict=True):
        assert torch.equal(lean, ref)


def test_max_steps_runs_fewer_epochs_and_anneals_over_them() -> None:
    """100 steps an epoch: 40 epochs would be 4000 steps; ``max_steps=250`` runs 3 epochs
    (300 steps), the cosine schedule annealed over those 300; at 6 steps an epoch the
    limit does not bind."""
    w = nn.Parameter(torch.zeros(1))
    lrs: list[float] = []

    class Recording(SGD):
        def step(self) -> None:
            lrs.append(self.lr)
            super().step()

    settings = OptimSettings(epochs=40, batch_size=10, lr=1.0, cosine=True, max_steps=250)

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return (w * batch.float()).sum()

    original = training.SGD
    training.SGD = Recording
    try:
        history = train_epochs([w], loss, lambda: torch.arange(1000), settings)
        assert len(history.losses) == 3 and len(lrs) == 300
        last = 0.5 * (1 + math.cos(math.pi * 299 / 300))
        assert lrs[0] == 1.0 and lrs[-1] == pytest.approx(last)
        lrs.clear()
        history = train_epochs([w], loss, lambda: torch.arange(60), settings)
        assert len(history.losses) == 40 and len(lrs) == 240
    finally:
        training.SGD = original
