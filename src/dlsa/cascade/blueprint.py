"""Which parts a cascade has and how they are wired, built untrained: the one place that
knows the modules of a cascade of a :class:`~dlsa.cascade.spec.CascadeSpec` on data of D
features and C classes with L levels, their input widths and their links.

::

    filters[l]   FlowFilter(D, C)                                  l = 0 .. L-1
    heads[l]     cluster-aided classifier: inputs (N, W) and the cluster prior (N, C);
                 W = 2D for [x, z], D with classifier_layout="release", + C with
                 stack_base; with residual, it adds the fallback's logits of x
    regular      the fallback itself when L = 0 or regular_data="all"; else a classifier
                 of x (N, D), or, cluster-aided, of (N, W) and the last filter's prior
    fallback     the base method's classifier of x (N, D)

Fitting (:mod:`dlsa.cascade.levels`) builds each part with :class:`Blueprint` just before
it trains it, so that the part's initial weights are drawn from its generator at that
moment (a level's classifier after the draw of its coverage samples); loading
(:mod:`dlsa.estimator.persistence`) builds the whole cascade at once with
:meth:`Blueprint.build` and loads the saved states into its modules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlsa.cascade.model import Cascade
from dlsa.cascade.spec import CascadeSpec
from dlsa.stage2.classifiers import StageClassifier
from dlsa.stage2.filter import FlowFilter


@dataclass(frozen=True)
class Blueprint:
    """The structure of one cascade.

    Attributes:
        spec: the configuration.
        n_features: D.
        n_classes: C.
        n_levels: L, the flow filters (and cluster-aided classifiers).
        fallback_is_regular: whether the regular classifier is the fallback itself.
    """

    spec: CascadeSpec
    n_features: int
    n_classes: int
    n_levels: int
    fallback_is_regular: bool

    @classmethod
    def of(
        cls,
        spec: CascadeSpec,
        n_features: int,
        n_classes: int,
        n_levels: int | None = None,
        fallback_is_regular: bool | None = None,
    ) -> Blueprint:
        """The structure of ``spec`` on D = ``n_features`` and C = ``n_classes`` with
        ``n_levels`` levels (default ``spec.depth``); the regular classifier is the
        fallback when there is no level or with ``regular_data="all"``, unless
        ``fallback_is_regular`` says otherwise (a saved model's word on it).

        Example:
            >>> from dlsa.cascade.spec import resolve
            >>> spec = resolve({"depth": 2, "base": "balsoftmax", "selection": None})
            >>> plan = Blueprint.of(spec, 8, 3)
            >>> plan.n_levels, plan.cluster_width, plan.fallback_is_regular
            (2, 16, True)
        """
        levels = spec.depth if n_levels is None else n_levels
        if fallback_is_regular is None:
            fallback_is_regular = levels == 0 or spec.regular_data == "all"
        return cls(spec, n_features, n_classes, levels, fallback_is_regular)

    @property
    def cluster_width(self) -> int:
        """W, the input width of a cluster-aided classifier: ``[x, z]`` (2D), or x (D)
        with ``classifier_layout="release"``, plus the base method's logits (C) with
        ``stack_base``."""
        d = self.n_features if self.spec.twin else 2 * self.n_features
        return d + self.n_classes * self.spec.stack_base

    @property
    def regular_is_cluster_aided(self) -> bool:
        """Whether the regular classifier takes ``[x, z]`` and the cluster prior of the
        last filter (:attr:`CascadeSpec.regular_is_cluster_aided` at L levels)."""
        spec = dataclasses.replace(self.spec, depth=self.n_levels)
        return not self.fallback_is_regular and spec.regular_is_cluster_aided

    def flow_filter(self, generator: torch.Generator) -> FlowFilter:
        """An untrained flow filter of x (N, D), weights drawn from ``generator``."""
        return FlowFilter(
            self.n_features, self.n_classes, self.spec.flow_filter, generator=generator
        )

    def head(self, generator: torch.Generator, fallback: StageClassifier) -> StageClassifier:
        """An untrained cluster-aided classifier of inputs (N, W) and the cluster prior
        (N, C), weights drawn from ``generator``; with ``residual``, it starts as (and
        then adds) ``fallback``'s logits of x (N, D) (:meth:`StageClassifier.make_residual`)."""
        spec = self.spec
        model = spec.base.build(
            self.cluster_width, self.n_classes, use_prior=True, generator=generator, twin=spec.twin
        )
        if spec.residual:
            model.make_residual(fallback)
        return model

    def regular(self, generator: torch.Generator) -> StageClassifier:
        """An untrained regular classifier apart from the fallback: of (N, W) and the
        last filter's cluster prior (N, C) when cluster-aided, else of x (N, D)."""
        spec, c = self.spec, self.n_classes
        if self.regular_is_cluster_aided:
            width, use_prior = self.cluster_width, True
        else:
            width, use_prior = self.n_features, False
        return spec.base.build(width, c, use_prior=use_prior, generator=generator, twin=spec.twin)

    def fallback(self, generator: torch.Generator) -> StageClassifier:
        """An untrained fallback: the base method's classifier of x (N, D)."""
        return self.spec.base.build(
            self.n_features, self.n_classes, use_prior=False, generator=generator
        )

    def build(self, class_counts: np.ndarray, generator: torch.Generator | None = None) -> Cascade:
        """The whole cascade, untrained (weights drawn from ``generator``, by default
        one seeded with 0), with every stage enabled, on the CPU.

        Args:
            class_counts: (C,) training samples per class.
            generator: draws the initial weights of every part.
        """
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        cascade = Cascade(self.spec, self.n_features, np.asarray(class_counts))
        fallback = self.fallback(gen)
        cascade.fallback = fallback
        cascade.filters = nn.ModuleList(self.flow_filter(gen) for _ in range(self.n_levels))
        cascade.heads = nn.ModuleList(self.head(gen, fallback) for _ in range(self.n_levels))
        cascade.regular = fallback if self.fallback_is_regular else self.regular(gen)
        cascade.stage_enabled = [True] * (self.n_levels + 1)
        return cascade
