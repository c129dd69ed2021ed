"""Config dataclasses, presets and dict round trips."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from dlsa.config import (
    PAPER_ALIASES,
    PRESETS,
    RELEASE_CONFIGS,
    DLSAConfig,
    FilterConfig,
    FlowConfig,
    HeadConfig,
    MixtureConfig,
    SelectionConfig,
    from_dict,
    get_preset,
    to_dict,
)
from dlsa.config.checks import check_config
from dlsa.config.domains import DOMAINS
from dlsa.errors import DLSAInputError

PAPER_PRESETS = ("imagenet-lt", "places-lt", "inat18")

# The numbers of the original release's config files (github.com/silicx/DLSA, commit
# 9559ab6, config/<name>.yaml), transcribed with their line numbers. Lines 5 (max_depth),
# 14 (gmflow batchsize), 18 (gmflow lr), 19 (gmflow epoch), 22-24 (lambda_lh,
# lambda_balance, lambda_purity), 38 / 41 / 45 (cacls type, loss, sampler name), 46
# (cacls lr); the Places_CE files have one more line before gmflow (15, 19, 20, 23-25,
# 39, 42, 47). regcls repeats the cacls values in every file.
RELEASE_FILES = {
    "ImgNet_CE_R50_bsm": (1, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("linear", "BSM", None), 1e-2),
    "ImgNet_CBS_R50_bsm": (1, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("linear", "BSM", None), 1e-2),
    "ImgNet_PaCo_R50_bsm": (3, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("linear", "BSM", None), 1e-4),
    "ImgNet_PaCo_R50_cbs": (3, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("linear", "CE", "CBS"), 1e-4),
    "ImgNet_PaCo_R50_cos": (1, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("cosine", "CE", None), 1e-4),
    "ImgNet_PaCo_R50_m2m": (3, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("linear", "BSM", "M2M"), 1e-4),
    "ImgNet_PaCo_R50_ride": (3, 1024, 0.2, 50, 2.0, 1.0, 0.02, ("ride", "BSM", None), 1e-4),
    "Inat_PaCo_R50_bsm": (3, 1024, 0.2, 30, 1.0, 1.0, 0.02, ("linear", "BSM", None), 1e-4),
    "Places_CE_R152_bsm": (1, 512, 0.2, 60, 1.0, 2.0, 0.03, ("linear", "BSM", None), 1e-2),
    "Places_CE_R152_cos": (1, 512, 0.2, 60, 1.0, 2.0, 0.03, ("cosine", "CE", None), 1e-2),
    "Places_CE_R152_ride": (1, 512, 0.2, 60, 1.0, 2.0, 0.03, ("ride", "CE", None), 1e-2),
    "Places_PaCo_R152_bsm": (1, 512, 0.2, 60, 1.0, 2.0, 0.03, ("linear", "BSM", None), 1e-4),
}
# (cacls type, loss, sampler) -> dlsa base method. The release implements no "M2M"
# sampler (its get_data_sampler returns None for it) and no "ride" classifier type
# (get_classifier raises); those presets run dlsa's M2M and RIDE in its procedure.
RELEASE_BASES = {
    ("linear", "BSM", None): "balsoftmax",
    ("linear", "CE", "CBS"): "cbs",
    ("cosine", "CE", None): "cosine",
    ("linear", "BSM", "M2M"): "m2m",
    ("ride", "BSM", None): "ride",
    ("ride", "CE", None): "ride",
}


def test_one_preset_per_release_file():
    assert set(RELEASE_CONFIGS) == set(RELEASE_FILES)
    assert dict(PAPER_ALIASES) == {
        "imagenet-lt": "ImgNet_PaCo_R50_bsm",
        "places-lt": "Places_PaCo_R152_bsm",
        "inat18": "Inat_PaCo_R50_bsm",
    }
    for alias, name in PAPER_ALIASES.items():
        assert get_preset(alias) == get_preset(name)


@pytest.mark.parametrize("name", sorted(RELEASE_FILES))
def test_release_preset_pins_its_file(name):
    depth, batch, lr, epochs, lh, bal, pure, cls, head_lr = RELEASE_FILES[name]
    cfg = get_preset(name)
    f, flow = cfg.flow_filter, cfg.flow_filter.flow
    assert (cfg.depth, cfg.base) == (depth, RELEASE_BASES[cls])
    assert (f.batch_size, f.lr, f.epochs) == (batch, lr, epochs)
    assert (f.lambda_mle, f.lambda_bal, f.lambda_pure) == (lh, bal, pure)
    # lines 9-12, 15, 20, 25-27, 32 of every file; BaseConfig.yaml 26-29 (momentum 0,
    # no warm-up, no cosine or step schedule, grad_clip False), 43-44 (min_purity, min_size)
    assert (flow.n_blocks, flow.hidden_layers) == (2, 2)  # n_blocks 2, n_hidden 1: D-D-D-2D
    assert (f.mixture.n_components, f.mixture.sigma, f.q, f.momentum) == (500, 0.05, 2.0, 0.0)
    assert (f.eta, f.detach_purity_target, cfg.routed_share) == (0.7, True, 0.3)
    assert (f.min_purity, f.min_cluster_size, f.grad_clip) == (0.7, 10, None)
    # lines 44-48 / 60-64 (cacls / regcls batchsize, lr, epoch, momentum); BaseConfig.yaml:
    # no weight decay in the optimiser, constant lr
    assert cfg.head == HeadConfig(
        epochs=150,
        batch_size=128,
        lr=head_lr,
        momentum=0.0,
        weight_decay=0.0,
        standardize=False,
        schedule="constant",
    )
    if cls[0] == "cosine":  # models/Classifiers.py CosNorm_Classifier: scale 16, squashed x
        assert dict(cfg.base_params) == {"learn_scale": False, "squash": True}


@pytest.mark.parametrize("name", sorted(RELEASE_FILES))
def test_release_presets_run_the_release_procedure(name):
    cfg = get_preset(name)
    f, flow = cfg.flow_filter, cfg.flow_filter.flow
    assert cfg.selection is None
    assert (cfg.regular_data, cfg.regular_prior, cfg.regular_cluster_aided) == (
        "remaining",
        "global",
        False,
    )
    assert (cfg.classifier_layout, cfg.mask_unseen, cfg.cluster_prior_data) == (
        "release",
        False,
        "all",
    )
    assert (cfg.cover_classes, cfg.residual, cfg.stage_prior) == (False, False, "routed")
    assert (f.batch_sampler, f.purity_anchors, f.flow_passes) == (
        "class-balanced",
        "batch",
        "separate",
    )
    assert (f.mle_normalization, f.mle_per_dimension, f.max_class_share) == ("batch", False, None)
    assert (f.epoch_ties, f.selection_start, f.max_cluster_share, f.max_cluster_size) == (
        "earliest",
        0.0,
        1.0,
        5000,
    )
    assert (flow.zero_init, flow.bn_unbiased, f.standardize) == (False, True, False)


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
    assert (f.mle_normalization, f.purity_anchors, f.flow_passes) == (
        "weight-sum",
        "drawn",
        "joint",
    )
    assert (f.max_class_share, f.grad_clip, f.max_cluster_size) == (5.0, 10.0, None)
    assert (cfg.classifier_layout, cfg.mask_unseen) == ("paper", True)


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


def test_every_checked_domain_is_the_configs_literal():
    """The estimator refuses exactly the values its config field's Literal does not list."""
    from dlsa import DLSAClassifier
    from dlsa.config import DLSAConfig, choices

    hints = typing.get_type_hints(DLSAConfig)
    literal = [name for name, hint in hints.items() if typing.get_origin(hint) is typing.Literal]
    assert {"stage_prior", "features_on", "base"} <= set(literal)
    for name in literal:
        allowed = choices(DLSAConfig, name)
        for value in allowed:
            DLSAClassifier(**{name: value}).check_params()
        with pytest.raises(ValueError, match=f"{name} must be"):
            DLSAClassifier(**{name: "nonsense"}).check_params()
    with pytest.raises(TypeError, match="not a Literal"):
        choices(DLSAConfig, "depth")


def test_every_number_of_the_configs_has_a_domain():
    """A new int or float field gets a domain (n_jobs: a non-zero int, checked apart)."""

    def numeric(hint: object) -> bool:
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = typing.get_args(hint) if union else (hint,)
        items = [typing.get_args(k)[0] if typing.get_origin(k) is tuple else k for k in kinds]
        return any(k in (int, float) for k in items)

    for cls in (FlowConfig, MixtureConfig, FilterConfig, HeadConfig, SelectionConfig, DLSAConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if numeric(hints[f.name]) and (cls, f.name) != (DLSAConfig, "n_jobs"):
                assert f.name in DOMAINS[cls.__name__], f"{cls.__name__}.{f.name}"


def test_defaults_and_presets_are_inside_their_domains():
    for name in PRESETS:
        check_config(get_preset(name), "config")
    check_config(DLSAConfig(), "config")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (HeadConfig(lr=0.0), r"head.lr must be > 0, got 0.0"),
        (HeadConfig(epochs=2**40), r"head.epochs must be in \[1, 2147483647\]"),
        (FilterConfig(eta=1.0), r"flow_filter.eta must be in \[0, 1\)"),
        (SelectionConfig(tau_grid=(0.5, float("nan"))), r"selection.tau_grid\[1\] must be >= 0"),
    ],
)
def test_a_number_outside_its_domain_is_named(config, match):
    where = {"HeadConfig": "head", "FilterConfig": "flow_filter"}.get(type(config).__name__)
    with pytest.raises(DLSAInputError, match=match):
        check_config(config, where or "selection")
