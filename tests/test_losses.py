"""Losses of the flow filter and Balanced Softmax, each against its definition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlsa.engine.sampling import sample_purity_pairs
from dlsa.stage2.losses import (
    MomentumEstimator,
    balanced_softmax_loss,
    balancedness_loss,
    cap_class_weights,
    class_weights,
    purity_loss,
    weighted_nll,
)


def test_class_weights_sum_to_one_and_favour_the_tail():
    counts = torch.tensor([1000.0, 300.0, 50.0, 5.0])
    w = class_weights(counts, 2.0)
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.all(w[1:] > w[:-1])
    expected = counts.pow(-2) / counts.pow(-2).sum()
    torch.testing.assert_close(w, expected)


def test_class_weights_ignore_absent_classes():
    w = class_weights(torch.tensor([10.0, 0.0, 5.0]), 1.0)
    assert w[1] == 0 and float(w.sum()) == pytest.approx(1.0)


def test_cap_limits_every_class_share_and_keeps_order():
    counts = torch.tensor([2000.0, 500.0, 100.0, 20.0, 1.0])
    w = class_weights(counts, 2.0)
    share_before = w * counts / (w * counts).sum()
    assert share_before[-1] > 0.9  # the pitfall: one sample takes almost all the weight
    capped = cap_class_weights(w, counts, max_share=2.0)
    share = capped * counts / (capped * counts).sum()
    assert float(share.max()) == pytest.approx(2.0 / 5, rel=1e-6)
    assert float(capped.sum()) == pytest.approx(1.0)
    assert torch.all(capped[1:] >= capped[:-1])  # still favours the tail per sample


def test_cap_is_identity_when_no_class_exceeds_it():
    counts = torch.tensor([10.0, 10.0, 10.0])
    w = class_weights(counts, 2.0)
    torch.testing.assert_close(cap_class_weights(w, counts, 1.5), w)


def test_cap_rejects_values_below_one():
    with pytest.raises(ValueError, match="max_share"):
        cap_class_weights(torch.ones(2) / 2, torch.ones(2), 0.5)


def test_weighted_nll_is_weighted_mean():
    lp = torch.tensor([-1.0, -2.0, -4.0])
    w = torch.tensor([0.5, 0.25, 0.25])
    assert float(weighted_nll(lp, w)) == pytest.approx(0.5 + 0.5 + 1.0)
    assert float(weighted_nll(lp, torch.ones(3))) == pytest.approx(7 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_balancedness_loss_equals_kl_to_uniform(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64) * 2, 0)
    uniform = torch.full_like(p, 1 / 12)
    kl = (p * (p / uniform).log()).sum()
    entropy = -(p * p.log()).sum()
    torch.testing.assert_close(balancedness_loss(p), kl)
    torch.testing.assert_close(balancedness_loss(p), -entropy + math.log(12))
    assert float(balancedness_loss(p)) >= 0


def test_balancedness_loss_handles_empty_clusters():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    assert float(balancedness_loss(p)) == pytest.approx(math.log(2))


def test_momentum_estimator_is_unbiased_on_a_constant_stream():
    est = MomentumEstimator(0.7)
    p = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    for _ in range(6):
        torch.testing.assert_close(est.update(p), p)
    raw = est.value
    assert raw is not None and not torch.allclose(raw, p)  # the raw average is biased


def test_momentum_estimator_matches_closed_form_and_lowers_variance():
    eta, t = 0.7, 5
    g = torch.Generator().manual_seed(0)
    batches = torch.rand(t, 4, generator=g, dtype=torch.float64)
    est = MomentumEstimator(eta)
    for b in batches:
        out = est.update(b)
    weights = torch.tensor(
        [(1 - eta) * eta ** (t - i) for i in range(1, t + 1)], dtype=torch.float64
    )
    expected = (weights[:, None] * batches).sum(0) / (1 - eta**t)
    torch.testing.assert_close(out, expected)
    # supplement Sec. 2.2: Var = phi(1)/phi(t) Var[p_hat] <= Var[p_hat]
    assert float((weights / (1 - eta**t)).square().sum()) < 1.0


def test_momentum_gradient_flows_through_current_batch_only():
    est = MomentumEstimator(0.5)
    first = torch.tensor([0.5, 0.5], requires_grad=True)
    est.update(first)
    second = torch.tensor([0.2, 0.8], requires_grad=True)
    est.update(second).sum().backward()
    assert first.grad is None
    torch.testing.assert_close(second.grad, torch.full((2,), 0.5 / 0.75))


def test_purity_loss_definition_and_detach():
    g = torch.Generator().manual_seed(1)
    a = torch.log_softmax(torch.randn(5, 6, generator=g), 1).requires_grad_()
    b = torch.log_softmax(torch.randn(5, 6, generator=g), 1).requires_grad_()
    expected = (a.exp() * b).sum(1).mean()
    torch.testing.assert_close(purity_loss(a, b), expected)
    purity_loss(a, b, detach_i=True).backward()
    assert a.grad is None and b.grad is not None
    a2 = a.detach().clone().requires_grad_()
    purity_loss(a2, b.detach(), detach_i=False).backward()
    assert a2.grad is not None


def test_purity_loss_is_lower_for_separated_posteriors():
    same = torch.log(torch.tensor([[0.9, 0.1]]))
    apart = torch.log(torch.tensor([[0.1, 0.9]]))
    assert purity_loss(same, apart) < purity_loss(same, same)


def test_purity_pairs_never_share_a_class_and_draw_classes_uniformly():
    labels = torch.tensor([0] * 500 + [1] * 50 + [2] * 5 + [3] * 1)
    g = torch.Generator().manual_seed(0)
    i, j = sample_purity_pairs(labels, 40000, g)
    assert torch.all(labels[i] != labels[j])
    for side in (i, j):
        freq = torch.bincount(labels[side], minlength=4).double() / side.numel()
        torch.testing.assert_close(
            freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01, rtol=0
        )
    # within a class, samples are drawn uniformly
    head = i[labels[i] == 0]
    assert torch.unique(head).numel() > 450


def test_purity_pairs_need_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        sample_purity_pairs(torch.zeros(5, dtype=torch.long), 3, torch.Generator())


def test_balanced_softmax_is_ce_on_shifted_logits_and_ce_when_uniform():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 4, generator=g)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    counts = torch.tensor([100.0, 30.0, 5.0, 1.0])
    torch.testing.assert_close(
        balanced_softmax_loss(logits, target, counts),
        F.cross_entropy(logits + counts.log(), target),
    )
    torch.testing.assert_close(
        balanced_softmax_loss(logits, target, torch.full((4,), 7.0)),
        F.cross_entropy(logits, target),
    )
