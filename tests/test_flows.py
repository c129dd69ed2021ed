"""MAF: log-det against the autograd Jacobian, inversion, masks, batch norm."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from dlsa.stage2.flows import MAF, BatchNormTransform, MaskedAutoregressiveTransform, made_masks


def _randomize(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.3) -> None:
    """Give every parameter a random value so the transform is far from the identity."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)


def _per_sample_jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    out = []
    for row in x:
        jac = jacobian(lambda v: fn(v[None])[0][0], row)
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


@pytest.mark.parametrize("hidden_layers", [1, 2])
@pytest.mark.parametrize("n_features", [2, 3, 5])
@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_maf_logdet_matches_autograd_jacobian(
    n_features, n_blocks, hidden_layers, generator, dtype
):
    flow = MAF(n_features, n_blocks, n_hidden=7, hidden_layers=hidden_layers).to(dtype)
    _randomize(flow, generator)
    x = torch.randn(6, n_features, generator=generator, dtype=dtype)
    flow.train()
    flow(x)  # move the running statistics away from (0, 1)
    flow.eval()
    _, ladj = flow(x)
    expected = _per_sample_jacobian_logdet(flow, x)
    torch.testing.assert_close(ladj, expected, rtol=1e-6, atol=1e-6)


def test_maf_inverse_recovers_input(generator, dtype):
    flow = MAF(5, 2, n_hidden=9).to(dtype)
    _randomize(flow, generator)
    x = torch.randn(10, 5, generator=generator, dtype=dtype)
    flow.train()
    flow(x)
    flow.eval()
    z, _ = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_made_jacobian_is_strictly_triangular_in_the_order(hidden_layers, generator, dtype):
    t = MaskedAutoregressiveTransform(4, 12, hidden_layers=hidden_layers).to(dtype)
    _randomize(t, generator)
    x = torch.randn(4, dtype=dtype, generator=generator)
    jac = jacobian(lambda v: t.shift_and_log_scale(v[None])[0][0], x)
    assert torch.all(torch.triu(jac) == 0), "m_d must depend on x_<d only"
    u_jac = jacobian(lambda v: t(v[None])[0][0], x)
    assert torch.all(torch.triu(u_jac, diagonal=1) == 0)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_made_masks_connect_every_allowed_pair(n_layers):
    masks = made_masks(4, 6, n_layers)
    assert len(masks) == n_layers + 1
    paths = masks[0]
    for mask in masks[1:]:
        paths = mask @ paths
    assert torch.all((paths > 0) == torch.tril(torch.ones(4, 4), diagonal=-1).bool())


def test_release_made_has_two_hidden_layers_and_default_initialisation(generator, dtype):
    """Original release: D -> D -> D -> 2D with PyTorch's default initialisation."""
    t = MaskedAutoregressiveTransform(5, 5, hidden_layers=2, zero_init=False).to(dtype)
    layers = [t.hidden, *t.deeper, t.output]
    assert [tuple(layer.weight.shape) for layer in layers] == [(5, 5), (5, 5), (10, 5)]
    assert bool(t.output.weight.abs().sum() > 0) and bool(t.output.bias.abs().sum() > 0)
    x = torch.randn(4, 5, generator=generator, dtype=dtype)
    u, _ = t(x)
    assert not torch.allclose(u, x)  # not the identity at initialisation
    flow = MAF(5, 2, hidden_layers=2, zero_init=False)
    assert all(len(b.deeper) == 1 for b in flow.transforms if hasattr(b, "deeper"))


def test_one_hidden_layer_made_keeps_the_state_dict_keys_of_saved_models():
    keys = set(MAF(3, 1).state_dict())
    assert {"transforms.0.hidden.weight", "transforms.0.output.weight"} <= keys
    assert not any(".deeper." in k for k in keys)
    assert any(".deeper.0.weight" in k for k in MAF(3, 1, hidden_layers=2).state_dict())


def test_made_needs_two_features():
    with pytest.raises(ValueError, match="at least 2"):
        made_masks(1, 4)


def test_new_maf_block_is_identity(dtype):
    t = MaskedAutoregressiveTransform(3, 5).to(dtype)
    x = torch.randn(4, 3, dtype=dtype)
    u, ladj = t(x)
    torch.testing.assert_close(u, x)
    assert torch.all(ladj == 0)


def test_batch_norm_uses_batch_stats_in_train_and_running_in_eval(generator, dtype):
    bn = BatchNormTransform(3, momentum=0.5).to(dtype)
    x = torch.randn(200, 3, generator=generator, dtype=dtype) * 4 + 2
    y, _ = bn(x)  # training mode
    torch.testing.assert_close(y.mean(0), torch.zeros(3, dtype=dtype), atol=1e-6, rtol=0)
    torch.testing.assert_close(bn.running_mean, 0.5 * x.mean(0))
    bn.eval()
    before = bn.running_mean.clone()
    y_eval, ladj = bn(x)
    torch.testing.assert_close(bn.running_mean, before)  # eval does not update
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(y_eval, expected)
    torch.testing.assert_close(ladj[0], -0.5 * torch.log(bn.running_var + bn.eps).sum())


@pytest.mark.parametrize("unbiased", [False, True])
def test_batch_norm_variance_is_unbiased_when_asked(unbiased, generator, dtype):
    bn = BatchNormTransform(3, momentum=1.0, eps=0.0, unbiased=unbiased).to(dtype)
    x = torch.randn(5, 3, generator=generator, dtype=dtype) * 3 + 1
    y, ladj = bn(x)  # training mode; momentum 1: the running variance is the batch's
    var = x.var(dim=0, unbiased=unbiased)
    torch.testing.assert_close(bn.running_var, var)
    torch.testing.assert_close(y, (x - x.mean(0)) / var.sqrt())
    torch.testing.assert_close(ladj[0], -0.5 * torch.log(var).sum())


def test_every_flow_parameter_gets_a_gradient(generator):
    flow = MAF(4, 2)
    _randomize(flow, generator, scale=0.1)
    z, ladj = flow(torch.randn(16, 4, generator=generator))
    (z.square().sum() - ladj.sum()).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_maf_state_dict_round_trip(generator, dtype):
    flow = MAF(4, 2).to(dtype)
    _randomize(flow, generator)
    flow.eval()
    other = MAF(4, 2).to(dtype)
    other.load_state_dict(flow.state_dict())
    other.eval()
    x = torch.randn(5, 4, dtype=dtype)
    torch.testing.assert_close(flow(x)[0], other(x)[0])
