"""Config dataclasses, presets and dict round trips."""

from __future__ import annotations

import dataclasses

import pytest

from dlsa.config import (
    PRESETS,
    DLSAConfig,
    FilterConfig,
    HeadConfig,
    from_dict,
    get_preset,
    to_dict,
)

PAPER_PRESETS = ("imagenet-lt", "places-lt", "inat18")


def test_paper_defaults():
    cfg = get_preset("imagenet-lt")
    f = cfg.flow_filter
    assert (cfg.depth, f.q, f.eta, f.proportion, f.mixture.sigma) == (3, 2.0, 0.7, 0.3, 0.05)
    assert (f.mixture.n_components, f.lr, f.batch_size, f.epochs) == (500, 0.2, 1024, 50)
    assert (f.lambda_bal, f.lambda_pure, f.flow.n_blocks) == (1.0, 0.02, 2)


@pytest.mark.parametrize(
    ("name", "lr", "batch", "epochs", "bal", "pure"),
    [
        ("imagenet-lt", 0.2, 1024, 50, 1.0, 0.02),
        ("places-lt", 0.1, 512, 60, 2.0, 0.03),
        ("inat18", 0.2, 1024, 30, 1.0, 0.05),
    ],
)
def test_presets_of_the_supplement(name, lr, batch, epochs, bal, pure):
    f = get_preset(name).flow_filter
    assert (f.lr, f.batch_size, f.epochs, f.lambda_bal, f.lambda_pure) == (
        lr,
        batch,
        epochs,
        bal,
        pure,
    )
    assert f.mixture.n_components == 500


def test_presets_for_small_sets_differ_from_the_paper_where_validation_said_so():
    small, many = get_preset("small"), get_preset("many-classes")
    assert small.flow_filter.mixture.n_components < 500 and small.depth == 1
    assert many.depth == 3 and many.flow_filter.proportion == 0.5
    for cfg in (small, many):
        assert cfg.residual and cfg.stage_prior == "global" and cfg.validation_folds == 2


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_train_as_the_original_release(name):
    cfg = get_preset(name)
    f, flow = cfg.flow_filter, cfg.flow_filter.flow
    assert (cfg.regular_data, cfg.regular_prior, cfg.regular_cluster_aided) == (
        "remaining",
        "global",
        True,
    )
    assert cfg.cluster_prior_data == "level"  # kept: the paper's definition, no leak
    assert (f.batch_sampler, f.mle_per_dimension, f.lambda_mle) == ("class-balanced", False, 2.0)
    assert (f.purity_pairs, f.epoch_ties) == (1.0, "earliest")
    assert (flow.hidden_layers, flow.zero_init, flow.bn_unbiased) == (2, False, True)
    assert cfg.head == HeadConfig(
        epochs=150,
        batch_size=128,
        lr=0.01,
        momentum=0.0,
        weight_decay=0.0,
        standardize=False,
        schedule="constant",
    )


@pytest.mark.parametrize("name", ["default", "small", "many-classes"])
def test_release_options_default_to_our_behaviour(name):
    cfg = get_preset(name)
    f, flow = cfg.flow_filter, cfg.flow_filter.flow
    assert (cfg.regular_prior, cfg.regular_cluster_aided, cfg.cluster_prior_data) == (
        "reaching",
        False,
        "level",
    )
    assert (f.batch_sampler, f.mle_per_dimension, f.lambda_mle) == ("shuffle", True, 1.0)
    assert (f.purity_pairs, f.epoch_ties) == (0.25, "latest")
    assert (flow.hidden_layers, flow.zero_init, flow.bn_unbiased) == (1, True, False)
    assert (cfg.head.schedule, cfg.head.standardize) == ("cosine", True)


@pytest.mark.parametrize("name", list(PRESETS))
def test_dict_round_trip(name):
    cfg = get_preset(name)
    assert from_dict(DLSAConfig, to_dict(cfg)) == cfg


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FilterConfig().lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"depht": 1}, "unknown key"),
        ({"depth": "3"}, "wrong type"),
        ({"depth": True}, "wrong type"),
        ({"flow_filter": {"mixture": {"sigma": "a"}}}, "flow_filter.mixture.sigma"),
        ({"flow_filter": 3}, "wrong type"),
        ({"regular_prior": "routed"}, "regular_prior must be one of"),
        ({"cluster_prior_data": "train"}, "cluster_prior_data must be one of"),
        ({"flow_filter": {"batch_sampler": "cbs"}}, "batch_sampler must be one of"),
        ({"flow_filter": {"epoch_ties": "first"}}, "epoch_ties must be one of"),
        ({"head": {"schedule": "step"}}, "schedule must be one of"),
    ],
)
def test_from_dict_errors(data, match):
    with pytest.raises(ValueError, match=match):
        from_dict(DLSAConfig, data)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("cifar")
