"""Named configurations: the paper presets (the supplement's settings, trained as the
original release trains them), the default, and the fixed presets of earlier releases."""

from __future__ import annotations

import dataclasses
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


def paper(flow_filter: FilterConfig) -> DLSAConfig:
    """The paper's cascade as the original release trains it, with the given flow-filter
    settings (:func:`release_filter` gives the release's): three filters routing 30% each,
    Balanced Softmax, classifiers trained from scratch on their routed samples with the
    release's optimiser (SGD without momentum or weight decay, constant lr 0.01, batch
    128, 150 epochs, raw inputs), a cluster-aided regular classifier on the samples no
    filter took with the global class prior, no selection.

    Departures from the original release, kept on purpose:

    * a level's cluster prior P(y | k) counts the level's own training samples
      (``cluster_prior_data="level"``, the paper's definition); the release counts all
      training samples, which leaks the samples earlier levels took into later levels'
      priors;
    * classifiers start from random weights: for PaCo and iNaturalist features the
      release copies the backbone's classifier into them, which a feature file cannot
      reproduce (it holds no classifier weights);
    * the head lr is the release's value on CE / CBS features (0.01); on PaCo features
      the release uses 1e-4 (set ``head.lr``).
    """
    return DLSAConfig(
        depth=3,
        base="balsoftmax",
        flow_filter=flow_filter,
        head=HeadConfig(
            epochs=150,
            batch_size=128,
            lr=0.01,
            momentum=0.0,
            weight_decay=0.0,
            standardize=False,
            schedule="constant",
        ),
        selection=None,
        regular_data="remaining",
        regular_prior="global",
        regular_cluster_aided=True,
        cover_classes=False,
        residual=False,
        stage_prior="routed",
    )


def release_filter(**changes: Any) -> FilterConfig:
    """Flow filter trained as the original release trains it, with the per-data-set
    ``changes`` (fields of :class:`FilterConfig`): two-hidden-layer MADEs with PyTorch's
    default initialisation, unbiased batch-norm variance, class-balanced batches, the
    class-weighted mean log-likelihood (not divided by D) weighted by lambda_lh = 2, B
    purity pairs per step, and the earliest of equally good epochs.

    lambda_lh = 2 is the release's ImageNet-LT value; its Places-LT and iNaturalist
    values are not published, and 2 is assumed for them too.

    Example:
        >>> release_filter(lr=0.1).flow.hidden_layers, release_filter(lr=0.1).lr
        (2, 0.1)
    """
    base = FilterConfig(
        flow=FlowConfig(hidden_layers=2, zero_init=False, bn_unbiased=True),
        lambda_mle=2.0,
        mle_per_dimension=False,
        purity_pairs=1.0,
        batch_sampler="class-balanced",
        epoch_ties="earliest",
    )
    return dataclasses.replace(base, **changes)


def imagenet_lt() -> DLSAConfig:
    """ImageNet-LT preset (supplement, Sec. 5): K=500, lr 0.2, batch 1024, 50 epochs,
    lambda_bal 1, lambda_pure 0.02; the release's training choices (:func:`paper`,
    :func:`release_filter`)."""
    return paper(release_filter())


def places_lt() -> DLSAConfig:
    """Places-LT preset (supplement, Sec. 5): K=500, lr 0.1, batch 512, 60 epochs,
    lambda_bal 2, lambda_pure 0.03; the release's training choices (:func:`paper`,
    :func:`release_filter`)."""
    return paper(
        release_filter(lr=0.1, batch_size=512, epochs=60, lambda_bal=2.0, lambda_pure=0.03)
    )


def inat18() -> DLSAConfig:
    """iNaturalist 2018 preset (supplement, Sec. 5): K=500, lr 0.2, batch 1024, 30 epochs,
    lambda_bal 1, lambda_pure 0.05; the release's training choices (:func:`paper`,
    :func:`release_filter`)."""
    return paper(release_filter(lr=0.2, batch_size=1024, epochs=30, lambda_pure=0.05))


def small() -> DLSAConfig:
    """Preset for small sets of about 10 classes and a few thousand samples (e.g.
    Fashion-MNIST-LT, CIFAR-10-LT). Not in the paper. On such sets a classifier trained
    on a 30% subset often loses to the base method trained on all data, so this preset
    trains the regular classifier on all data, lets every cluster-aided classifier see
    every class (``cover_classes``), learn a correction of the base method
    (``residual``) with the class prior of all data (``stage_prior``), and turns on the
    safeguard with 2-fold out-of-fold decisions. K = 100, the share routed (0.3) and one
    filter were chosen on validation splits of the Fashion-MNIST-LT demo features
    (``benchmarks/tune_preset.py``: +0.75 points of balanced accuracy at depth 1, +0.28 at
    2, +0.24 at 3; K = 30: +0.07 at depth 1)."""
    return DLSAConfig(
        depth=1,
        base="balsoftmax",
        flow_filter=_small_filter(n_components=100, proportion=0.3),
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
    synthetic 200-class set (``benchmarks/tune_preset.py``: balanced accuracy +4.1
    points at depth 3 with K = 600 and proportion 0.5; +3.6 with K = 200; +3.1 with
    proportion 0.3)."""
    return dataclasses.replace(
        small(), depth=3, flow_filter=_small_filter(n_components=600, proportion=0.5)
    )


def _small_filter(*, n_components: int, proportion: float) -> FilterConfig:
    """Flow-filter settings shared by the presets for small feature sets: smaller batch,
    30 epochs at lr 0.05, clusters of 5 samples count for the epoch rule."""
    return FilterConfig(
        mixture=MixtureConfig(n_components=n_components),
        batch_size=256,
        epochs=30,
        lr=0.05,
        min_cluster_size=5,
        proportion=proportion,
    )


PRESETS: Mapping[str, Callable[[], DLSAConfig]] = types.MappingProxyType(
    {
        "default": DLSAConfig,
        "imagenet-lt": imagenet_lt,
        "places-lt": places_lt,
        "inat18": inat18,
        "small": small,
        "many-classes": many_classes,
    }
)
"""Read-only mapping from preset name to the function that builds it."""


def get_preset(name: str) -> DLSAConfig:
    """Return the preset called ``name``.

    Raises:
        DLSAInputError: (a ``ValueError``) if no preset has that name.

    Example:
        >>> get_preset("places-lt").flow_filter.lr
        0.1
    """
    if name not in PRESETS:
        raise DLSAInputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
