"""Gaussian-mixture latent: densities against torch.distributions, Bayes' rule, no params."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from dlsa.stage2.mixture import GaussianMixtureLatent, default_sigma, squared_distances


@pytest.fixture
def latent(generator, dtype) -> GaussianMixtureLatent:
    return GaussianMixtureLatent.random(7, 5, sigma=0.8, generator=generator, dtype=dtype)


def test_log_prob_equals_mixture_same_family(latent, generator, dtype):
    z = torch.randn(20, 5, generator=generator, dtype=dtype)
    k = latent.n_components
    reference = D.MixtureSameFamily(
        D.Categorical(probs=torch.full((k,), 1.0 / k, dtype=dtype)),
        D.Independent(D.Normal(latent.means, torch.ones_like(latent.means)), 1),
    )
    torch.testing.assert_close(latent.log_prob(z), reference.log_prob(z))


def test_posterior_is_bayes_rule(latent, generator, dtype):
    z = torch.randn(9, 5, generator=generator, dtype=dtype)
    comp = torch.stack(
        [D.MultivariateNormal(m, torch.eye(5, dtype=dtype)).log_prob(z) for m in latent.means],
        dim=1,
    )
    prior = 1.0 / latent.n_components
    joint = comp.exp() * prior
    expected = joint / joint.sum(dim=1, keepdim=True)
    post = latent.posterior(z)
    torch.testing.assert_close(post, expected)
    torch.testing.assert_close(post.sum(dim=1), torch.ones(9, dtype=dtype))


def test_matmul_distances_equal_direct(generator, dtype):
    z = torch.randn(11, 6, generator=generator, dtype=dtype)
    mu = torch.randn(4, 6, generator=generator, dtype=dtype)
    direct = (z[:, None, :] - mu[None, :, :]).square().sum(-1)
    torch.testing.assert_close(squared_distances(z, mu), direct)


def test_latent_has_no_trainable_parameters_and_saves_means(latent):
    assert list(latent.parameters()) == []
    assert "means" in latent.state_dict()


def test_means_follow_generator_not_global_rng():
    a = GaussianMixtureLatent.random(3, 4, sigma=0.1, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(999)
    b = GaussianMixtureLatent.random(3, 4, sigma=0.1, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.means, b.means)


def test_default_sigma_of_the_supplement():
    assert default_sigma(1024) == pytest.approx(math.sqrt(3 / 2048))
    latent = GaussianMixtureLatent.random(
        4000, 64, sigma=None, generator=torch.Generator().manual_seed(0)
    )
    assert latent.means.std().item() == pytest.approx(default_sigma(64), rel=0.02)


def test_means_must_be_2d():
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        GaussianMixtureLatent(torch.zeros(3))
