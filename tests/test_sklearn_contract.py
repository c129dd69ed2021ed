"""scikit-learn's estimator checks on DLSAClassifier (a cheap configuration with one flow
filter): every check passes, none is expected to fail."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from dlsa import DLSAClassifier
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig

ESTIMATOR = DLSAClassifier(
    depth=1,
    selection=None,
    base="balsoftmax",
    flow_filter=FilterConfig(
        mixture=MixtureConfig(n_components=2, sigma=0.5), epochs=2, batch_size=64
    ),
    head=HeadConfig(epochs=3, batch_size=64),
)


@parametrize_with_checks([ESTIMATOR])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_fit_without_y_is_refused_in_sklearns_words():
    with pytest.raises(ValueError, match="requires y to be passed"):
        DLSAClassifier().fit([[0.0, 1.0], [1.0, 0.0]], None)
