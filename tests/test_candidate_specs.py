"""The selection's candidates are specs built from their round's one resolved spec
(:mod:`dlsa.selection.candidates`): each must equal what :func:`dlsa.cascade.resolve`
makes of the candidate's full parameters, and its name what :func:`describe` makes of
them, so that the two can never drift apart."""

from __future__ import annotations

from typing import Any

import pytest

import dlsa.estimator.classifier as classifier
from dlsa import DLSAClassifier
from dlsa.cascade import fit_cascade, resolve
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.selection.candidates import base_round, dlsa_specs, fit_base_params
from dlsa.selection.rule import describe


class _Captured(Exception):
    """Stops a fit once the selection has its parameters."""


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=8, n_features=6, n_max=60, imbalance=10, n_test_per_class=5, seed=1
    )


@pytest.fixture(scope="module")
def params(data) -> dict[str, Any]:
    """The parameters a default fit hands the selection on small data (the flow
    filter's K resolved for these classes, the head concrete)."""
    seen: dict[str, Any] = {}

    def capture(p: dict[str, Any], *args: Any) -> None:
        seen.update(p)
        raise _Captured

    mp = pytest.MonkeyPatch()
    mp.setattr(classifier, "select", capture)
    try:
        with pytest.raises(_Captured):
            DLSAClassifier(random_state=0).fit(data.X_train, data.y_train)
    finally:
        mp.undo()
    assert seen["flow_filter"].mixture.n_components is not None
    return seen


def test_every_base_candidate_spec_is_the_resolved_candidate(params, data):
    """Round 1 of the default selection: the spec each fold fits is the resolved fixed
    parameters with the fold fit's base parameters, and every candidate (one per
    post-hoc variant) is the resolved fixed parameters with the ones it records."""
    fixed, configs = base_round(params)
    assert [c.params["base"] for c in configs] == list(params["selection"].bases)
    for config in configs:
        name = config.params["base"]
        fit = {"base": name, "base_params": fit_base_params(name)}
        assert config.spec == resolve(fixed | fit), name
        assert config.spec.depth == 0
        assert config.name == describe(fixed | config.params)
        if config.variants is None:
            assert config.spec == resolve(fixed | config.params), name
            continue
        cascade = fit_cascade(config.spec, data.X_train, data.y_train)
        assert cascade.spec == config.spec
        variants = list(config.variants(cascade))
        assert len(variants) > 1
        for label, cand_params, variant in variants:
            assert variant.spec == resolve(fixed | cand_params), label
            assert label == describe(fixed | cand_params)


@pytest.mark.parametrize(
    "base",
    [
        {"base": "balsoftmax", "base_params": {}},
        {"base": "tau-norm", "base_params": {"tau": 1.25}},
        {"base": "logreg", "base_params": {"c": 0.1}},
    ],
)
@pytest.mark.parametrize("depth", [1, 2])
def test_every_dlsa_candidate_spec_is_the_resolved_candidate(params, base, depth):
    """Round 2 of the default selection on a chosen base: every share and depth."""
    fixed = params | {"selection": None, "depth": depth} | base
    proportions = params["selection"].proportions
    configs = dlsa_specs(fixed, depth, proportions, None)
    shares = list(proportions) + [p for p in proportions if p < 0.9] * (depth - 1)
    assert [c.spec.routed_share for c in configs] == shares
    assert {c.spec.flow_filter for c in configs} == {resolve(fixed).flow_filter}
    for config in configs:
        assert set(config.params) == {"depth", "routed_share"}
        assert config.spec == resolve(fixed | config.params), config.name
        assert config.name == describe(fixed | config.params)
