"""Config dataclasses, presets and dict round trips."""

from __future__ import annotations

import dataclasses

import pytest

from dlsa.config import PRESETS, DLSAConfig, FilterConfig, from_dict, get_preset, to_dict


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
    ],
)
def test_from_dict_errors(data, match):
    with pytest.raises(ValueError, match=match):
        from_dict(DLSAConfig, data)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("cifar")
