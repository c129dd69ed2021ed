"""The one structure of a cascade (dlsa.cascade.blueprint): what fitting trains is what
loading builds, and a saved model reloads to the same predictions bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlsa import DLSAClassifier
from dlsa.cascade import Cascade
from dlsa.cascade.blueprint import Blueprint
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig

FLT = FilterConfig(mixture=MixtureConfig(n_components=4, sigma=0.5), epochs=2, batch_size=128)
HEAD = HeadConfig(epochs=2, batch_size=128)
BASE = {"flow_filter": FLT, "head": HEAD, "random_state": 0, "selection": None}
BASE |= {"base": "balsoftmax"}

WIRINGS = {
    "residual, regular = fallback": {},
    "depth 0": {"depth": 0},
    "remaining, not residual": {"depth": 2, "regular_data": "remaining", "residual": False},
    "cluster-aided regular, stacked base": {
        "depth": 2,
        "regular_data": "remaining",
        "regular_cluster_aided": True,
        "stack_base": True,
    },
    "release layout": {"classifier_layout": "release", "regular_data": "remaining"},
    "tau-norm, safeguard": {"base": "tau-norm", "validation_fraction": 0.2},
}


def _modules(cascade: Cascade) -> dict[str, nn.Module]:
    assert cascade.regular is not None and cascade.fallback is not None
    return {
        "filters": cascade.filters,
        "heads": cascade.heads,
        "regular": cascade.regular,
        "fallback": cascade.fallback,
    }


def _shapes(module: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module", params=list(WIRINGS))
def fitted(request, lt_data) -> DLSAClassifier:
    return DLSAClassifier(**BASE | WIRINGS[request.param]).fit(lt_data.X_train, lt_data.y_train)


def test_the_untrained_structure_is_the_fitted_one(fitted):
    cascade = fitted.cascade_
    plan = Blueprint.of(cascade.spec, cascade.n_features, cascade.n_classes)
    built = plan.build(cascade.class_counts)
    assert plan.n_levels == len(cascade.filters)
    mine, theirs = _modules(built), _modules(cascade)
    for name in mine:
        assert _shapes(mine[name]) == _shapes(theirs[name]), name
    assert (built.regular is built.fallback) == (cascade.regular is cascade.fallback)
    assert built.regular.use_prior == cascade.regular.use_prior
    for head, trained in zip(built.heads, cascade.heads, strict=True):
        assert head.residual == trained.residual
        assert head.offset_model in (None, built.fallback)
        assert (head.twin is None) == (trained.twin is None)


def test_save_and_load_give_the_same_model_bit_for_bit(fitted, lt_data, tmp_path):
    loaded = DLSAClassifier.load(fitted.save(tmp_path / "m"))
    X = lt_data.X_test
    assert loaded.predict_proba(X).tobytes() == fitted.predict_proba(X).tobytes()
    np.testing.assert_array_equal(loaded.route(X), fitted.route(X))
    assert loaded.stage_enabled_ == fitted.stage_enabled_
    mine, theirs = _modules(loaded.cascade_), _modules(fitted.cascade_)
    for name in mine:
        a, b = mine[name].state_dict(), theirs[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    for head in loaded.cascade_.heads:  # a residual head adds the loaded fallback
        assert head.offset_model in (None, loaded.cascade_.fallback)
    assert all(h.residual == fitted.cascade_.spec.residual for h in loaded.cascade_.heads)
