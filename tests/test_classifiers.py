"""Heads and the stage classifier (cluster-aided and regular)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlsa.stage2.bases.ride import RideHead
from dlsa.stage2.classifiers import CosineHead, LinearHead, StageClassifier, zero_output_


def test_cosine_head_is_scaled_cosine_similarity():
    head = CosineHead(4, 3, scale=5.0)
    x = torch.randn(6, 4)
    expected = 5.0 * F.cosine_similarity(x[:, None, :], head.weight[None], dim=-1)
    torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)
    assert head(x * 7).allclose(head(x), atol=1e-5)  # invariant to the input norm


def test_fixed_scale_is_a_buffer():
    head = CosineHead(4, 3, scale=5.0, learn_scale=False)
    assert "scale" in dict(head.named_buffers())
    assert all(name != "scale" for name, _ in head.named_parameters())


def test_cluster_aided_adds_the_prior_branch():
    clf = StageClassifier(LinearHead(5, 3), 5, 3, use_prior=True)
    x, prior = torch.randn(4, 5), torch.eye(3)[[0, 1, 2, 0]]
    expected = clf.head(x) + clf.prior_fc(prior)
    torch.testing.assert_close(clf(x, prior), expected)
    with pytest.raises(ValueError, match="cluster prior"):
        clf(x)


def test_regular_classifier_has_no_prior_branch_and_standardises():
    clf = StageClassifier(LinearHead(2, 3), 2, 3, use_prior=False)
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    clf.fit_standardization(x)
    torch.testing.assert_close(clf.standardize(x), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert clf.prior_fc is None and not clf.use_prior
    assert "input_mean" in clf.state_dict()


def test_zero_output_keeps_cosine_directions_and_centres_ride_experts():
    cos = CosineHead(4, 3, scale=8.0)
    weight = cos.weight.detach().clone()
    zero_output_(cos)
    assert float(cos.scale.detach()) == 0.0 and torch.equal(cos.weight, weight)
    fixed = CosineHead(4, 3, scale=8.0, learn_scale=False)
    zero_output_(fixed)
    assert float(fixed.scale) == 8.0
    x = torch.randn(5, 4)
    for n_experts, norm_scale in [(3, None), (2, 30.0), (4, 30.0)]:
        ride = RideHead(
            4, 3, n_experts=n_experts, use_router=False, router_top_k=5, norm_scale=norm_scale
        )
        zero_output_(ride)
        torch.testing.assert_close(ride(x), torch.zeros(5, 3), atol=1e-5, rtol=0)
        experts = ride.expert_logits(x)
        assert (experts[0] - experts[1]).abs().max() > 1e-3


def test_make_residual_rejects_an_offset_of_another_shape():
    clf = StageClassifier(LinearHead(6, 3), 6, 3, use_prior=True)
    with pytest.raises(ValueError, match="offset model maps 8 inputs to 3 classes"):
        clf.make_residual(StageClassifier(LinearHead(8, 3), 8, 3, use_prior=False))
    with pytest.raises(ValueError, match="4 classes"):
        clf.make_residual(StageClassifier(LinearHead(4, 4), 4, 4, use_prior=False))


def test_release_layout_sums_two_maps_of_x_and_of_x_with_the_prior():
    """The original release's classifiers: ``FC(x) + FC([x, P])`` (cluster-aided) and
    ``FC(x) + FC(x)`` (regular), each map with its own bias and initialisation."""
    from dlsa.stage2.bases import make_base

    g = torch.Generator().manual_seed(0)
    x, prior = torch.randn(5, 4), torch.softmax(torch.randn(5, 3), 1)
    aided = make_base("balsoftmax").build(4, 3, use_prior=True, generator=g, twin=True)
    assert aided.prior_fc is None and aided.use_prior
    expected = aided.head(x) + aided.twin(torch.cat([x, prior], 1))
    torch.testing.assert_close(aided(x, prior), expected)
    with pytest.raises(ValueError, match="cluster prior"):
        aided(x)
    regular = make_base("balsoftmax").build(4, 3, use_prior=False, generator=g, twin=True)
    torch.testing.assert_close(regular(x), regular.head(x) + regular.twin(x))
    assert not torch.equal(regular.head.weight, regular.twin.weight)


def test_squashed_cosine_head_is_the_cosnorm_classifier():
    """OLTR's CosNorm: ``s * (|x| / (1 + |x|)) * <x / |x|, w / |w|>`` with a fixed s."""
    head = CosineHead(4, 3, scale=16.0, learn_scale=False, squash=True)
    x = torch.randn(6, 4) * 3
    norm = x.norm(dim=1, keepdim=True)
    w = head.weight / head.weight.norm(dim=1, keepdim=True)
    expected = 16.0 * (norm / (1 + norm)) * (x / norm) @ w.T
    torch.testing.assert_close(head(x), expected)
    assert not isinstance(head.scale, torch.nn.Parameter)
