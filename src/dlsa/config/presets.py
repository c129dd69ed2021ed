"""Named configurations: one preset per config file of the original release (its
values and its procedure; ``imagenet-lt``, ``places-lt`` and ``inat18`` name its PaCo +
Balanced Softmax configs), the default, and the fixed presets of earlier releases."""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

from dlsa.config.schema import (
    DLSAConfig,
    FilterConfig,
    FlowConfig,
    HeadConfig,
    MixtureConfig,
)
from dlsa.errors import DLSAInputError


def release_filter(**changes: Any) -> FilterConfig:
    """Flow filter trained as the original release trains it (its ``finetune_representations``
    and ``config/BaseConfig.yaml``), with the per-config ``changes`` (fields of
    :class:`FilterConfig`): K = 500 means of std 0.05; two MADE blocks with two hidden
    layers of width D, PyTorch's default initialisation and unbiased batch-norm variance;
    SGD without momentum at a constant lr; class-balanced batches whose samples are also
    the first of the purity pairs, each paired with a sample of another class, the two
    groups in separate flow passes; the log-likelihood term as a batch mean of class
    weights that sum to one (lambda_lh = 2); no weight cap, no gradient clipping (the
    release's clip call runs before ``backward()``); every epoch eligible, the earliest
    of equally good ones, none whose largest cluster holds 5,000 samples or more.

    Example:
        >>> release_filter(lr=0.1).flow.hidden_layers, release_filter(lr=0.1).lr
        (2, 0.1)
    """
    base = FilterConfig(
        flow=FlowConfig(hidden_layers=2, zero_init=False, bn_unbiased=True),
        mixture=MixtureConfig(n_components=500, sigma=0.05),
        max_class_share=None,
        mle_normalization="batch",
        lambda_mle=2.0,
        mle_per_dimension=False,
        purity_anchors="batch",
        flow_passes="separate",
        batch_sampler="class-balanced",
        grad_clip=None,
        epoch_ties="earliest",
        selection_start=0.0,
        max_cluster_share=1.0,
        max_cluster_size=5000,
    )
    return dataclasses.replace(base, **changes)


def release_config(
    *,
    depth: int,
    base: str,
    head_lr: float,
    flow_filter: FilterConfig,
    base_params: Mapping[str, Any] | None = None,
) -> DLSAConfig:
    """The cascade of one released config file (``train_dlsa.py``'s
    ``divide_and_conquer``): ``depth`` filters routing 30% each, classifiers built as
    two summed maps (``classifier_layout="release"``) trained from scratch on raw inputs
    with SGD without momentum or weight decay at the constant ``head_lr``, batch 128, 150
    epochs, keeping the last epoch (the release picks it on the test set); the regular
    classifier on the samples no filter took with the class counts of all training
    samples; each level's cluster prior counted over all training samples; the raw
    argmax over all classes; no selection.

    The one part of the release a feature file cannot carry: its PaCo and iNaturalist
    configs name a backbone checkpoint to initialise the ``FC(x)`` map from (its loader
    looks for ``linear.weight`` only); here every classifier starts from random weights.
    """
    return DLSAConfig(
        depth=depth,
        base=base,  # type: ignore[arg-type]
        base_params=dict(base_params or {}),
        flow_filter=flow_filter,
        routed_share=0.3,
        head=HeadConfig(
            epochs=150,
            batch_size=128,
            lr=head_lr,
            momentum=0.0,
            weight_decay=0.0,
            standardize=False,
            schedule="constant",
        ),
        selection=None,
        regular_data="remaining",
        regular_prior="global",
        regular_cluster_aided=False,
        cluster_prior_data="all",
        classifier_layout="release",
        mask_unseen=False,
        cover_classes=False,
        residual=False,
        stage_prior="routed",
    )


_IMAGENET = {}  # ImgNet_*.yaml: batch 1024, lr 0.2, 50 epochs, lambda_lh 2, bal 1, pure 0.02
_INAT = {"epochs": 30, "lambda_mle": 1.0}  # Inat_PaCo_R50_bsm.yaml
_PLACES = {  # Places_*.yaml
    "batch_size": 512,
    "epochs": 60,
    "lambda_mle": 1.0,
    "lambda_bal": 2.0,
    "lambda_pure": 0.03,
}
_RELEASE_COSINE = {"learn_scale": False, "squash": True}  # CosNorm_Classifier, scale 16

RELEASE_CONFIGS: Mapping[str, dict[str, Any]] = types.MappingProxyType(
    {
        "ImgNet_CE_R50_bsm": {"depth": 1, "base": "balsoftmax", "lr": 1e-2, "flow": _IMAGENET},
        "ImgNet_CBS_R50_bsm": {"depth": 1, "base": "balsoftmax", "lr": 1e-2, "flow": _IMAGENET},
        "ImgNet_PaCo_R50_bsm": {"depth": 3, "base": "balsoftmax", "lr": 1e-4, "flow": _IMAGENET},
        "ImgNet_PaCo_R50_cbs": {"depth": 3, "base": "cbs", "lr": 1e-4, "flow": _IMAGENET},
        "ImgNet_PaCo_R50_cos": {
            "depth": 1,
            "base": "cosine",
            "lr": 1e-4,
            "flow": _IMAGENET,
            "params": _RELEASE_COSINE,
        },
        "ImgNet_PaCo_R50_m2m": {"depth": 3, "base": "m2m", "lr": 1e-4, "flow": _IMAGENET},
        "ImgNet_PaCo_R50_ride": {"depth": 3, "base": "ride", "lr": 1e-4, "flow": _IMAGENET},
        "Inat_PaCo_R50_bsm": {"depth": 3, "base": "balsoftmax", "lr": 1e-4, "flow": _INAT},
        "Places_CE_R152_bsm": {"depth": 1, "base": "balsoftmax", "lr": 1e-2, "flow": _PLACES},
        "Places_CE_R152_cos": {
            "depth": 1,
            "base": "cosine",
            "lr": 1e-2,
            "flow": _PLACES,
            "params": _RELEASE_COSINE,
        },
        "Places_CE_R152_ride": {"depth": 1, "base": "ride", "lr": 1e-2, "flow": _PLACES},
        "Places_PaCo_R152_bsm": {"depth": 1, "base": "balsoftmax", "lr": 1e-4, "flow": _PLACES},
    }
)
"""The released config files (``config/<name>.yaml`` of github.com/silicx/DLSA), each
by what differs between them: depth (``max_depth``), base method (loss, sampler and
classifier type of ``cacls`` / ``regcls``), classifier lr, and the flow filter's
settings beside :func:`release_filter`'s. In the release, the ``m2m`` config's sampler
name "M2M" is not implemented (its loader silently trains plain Balanced Softmax) and
the ``ride`` classifier type raises ``NotImplementedError``; those presets run dlsa's
M2M and RIDE in the release's procedure instead."""

PAPER_ALIASES: Mapping[str, str] = types.MappingProxyType(
    {
        "imagenet-lt": "ImgNet_PaCo_R50_bsm",
        "places-lt": "Places_PaCo_R152_bsm",
        "inat18": "Inat_PaCo_R50_bsm",
    }
)
"""The paper's headline rows (PaCo features + Balanced Softmax) by data set."""


def release_preset(name: str) -> DLSAConfig:
    """The preset of the released config file ``name`` (a key of
    :data:`RELEASE_CONFIGS`).

    Example:
        >>> cfg = release_preset("Places_CE_R152_bsm")
        >>> cfg.depth, cfg.head.lr, cfg.flow_filter.batch_size, cfg.flow_filter.lambda_bal
        (1, 0.01, 512, 2.0)
    """
    spec = RELEASE_CONFIGS[name]
    return release_config(
        depth=spec["depth"],
        base=spec["base"],
        head_lr=spec["lr"],
        flow_filter=release_filter(**spec["flow"]),
        base_params=spec.get("params"),
    )


def small() -> DLSAConfig:
    """Preset for small sets of about 10 classes and a few thousand samples (e.g.
    Fashion-MNIST-LT, CIFAR-10-LT). Not in the paper. On such sets a classifier trained
    on a 30% subset often loses to the base method trained on all data, so this preset
    trains the regular classifier on all data, lets every cluster-aided classifier see
    every class (``cover_classes``), learn a correction of the base method
    (``residual``) with the class prior of all data (``stage_prior``), and turns on the
    safeguard with 2-fold out-of-fold decisions. K = 100, the share routed (0.3) and one
    filter were chosen on validation splits of the Fashion-MNIST-LT demo features
    (``benchmarks/studies/tune_preset.py``: +0.75 points of balanced accuracy at depth 1, +0.28 at
    2, +0.24 at 3; K = 30: +0.07 at depth 1)."""
    return DLSAConfig(
        depth=1,
        base="balsoftmax",
        flow_filter=_small_filter(n_components=100),
        routed_share=0.3,
        head=HeadConfig(epochs=40, batch_size=256),
        selection=None,
        regular_data="all",
        cover_classes=True,
        residual=True,
        stage_prior="global",
        validation_folds=2,
    )


def many_classes() -> DLSAConfig:
    """Preset for sets of a few hundred classes with a long tail of classes under 20
    samples and a few thousand to tens of thousands of samples. Not in the paper. As
    :func:`small`, with three filters that each route half of their samples and K = 600
    (3 per class for 200 classes: scale K with the number of classes, e.g.
    ``--flow-filter.mixture.n-components``). Chosen on a validation split of the
    synthetic 200-class set (``benchmarks/studies/tune_preset.py``: balanced accuracy +4.1
    points at depth 3 with K = 600 and routed share 0.5; +3.6 with K = 200; +3.1 with
    share 0.3)."""
    return dataclasses.replace(
        small(), depth=3, flow_filter=_small_filter(n_components=600), routed_share=0.5
    )


def _small_filter(*, n_components: int) -> FilterConfig:
    """Flow-filter settings shared by the presets for small feature sets: smaller batch,
    30 epochs at lr 0.05, clusters of 5 samples count for the epoch rule."""
    return FilterConfig(
        mixture=MixtureConfig(n_components=n_components),
        batch_size=256,
        epochs=30,
        lr=0.05,
        min_cluster_size=5,
    )


PRESETS: Mapping[str, Callable[[], DLSAConfig]] = types.MappingProxyType(
    {
        "default": DLSAConfig,
        **{
            alias: functools.partial(release_preset, name) for alias, name in PAPER_ALIASES.items()
        },
        "small": small,
        "many-classes": many_classes,
        **{name: functools.partial(release_preset, name) for name in RELEASE_CONFIGS},
    }
)
"""Read-only mapping from preset name to the function that builds it."""


def get_preset(name: str) -> DLSAConfig:
    """Return the preset called ``name``.

    Raises:
        DLSAInputError: (a ``ValueError``) if no preset has that name.

    Example:
        >>> get_preset("places-lt").flow_filter.batch_size
        512
    """
    if name not in PRESETS:
        raise DLSAInputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
