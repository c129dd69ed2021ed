"""Stage 2 on a cluster: the selection's fold fits and the safeguard's folds run on a
local Dask cluster of 2 worker processes through joblib's Dask backend (and on a local
Ray runtime through joblib's Ray backend, where ``ray`` is installed), with the same
evidence, choice and predictions as in local processes (one torch thread per fit)."""

from __future__ import annotations

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cli import main
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, MixtureConfig, SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine.parallel import cluster
from dlsa.errors import DLSAInputError
from dlsa.io.features import save_features

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=6, n_features=5, n_max=100, imbalance=10, n_test_per_class=10, seed=2
    )


def _params(**kw):
    flt = FilterConfig(mixture=MixtureConfig(8, sigma=0.5), epochs=2, batch_size=128, lr=0.2)
    cfg = DLSAConfig(flow_filter=flt, head=HeadConfig(epochs=3, batch_size=128))
    sel = SelectionConfig(bases=("balsoftmax", "tau-norm", "cbs"), tau_grid=(0.5, 1.0))
    return cfg.estimator_params() | {"selection": sel, "random_state": 3} | kw


def _evidence(clf):
    return [
        [(r["name"], r["balanced_accuracy"], r["gain"]) for r in rd["candidates"]]
        for rd in clf.selection_["rounds"]
    ]


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_cluster_gives_what_local_processes_give(data, monkeypatch, backend):
    """Dask: a LocalCluster of 2 worker processes, 1 thread each; Ray: ``ray.init()``,
    a local runtime on this machine's cores (skipped where ray is not installed)."""
    pytest.importorskip("distributed" if backend == "dask" else "ray")
    import dlsa.engine.parallel

    monkeypatch.setattr(dlsa.engine.parallel.os, "cpu_count", lambda: 2)  # loky: 1 thread
    params = _params(validation_folds=2)
    local = DLSAClassifier(**(params | {"n_jobs": 2})).fit(data.X_train, data.y_train)
    with cluster(backend):
        remote = DLSAClassifier(**params).fit(data.X_train, data.y_train)
    assert _evidence(remote) == _evidence(local)
    assert remote.selection_["chosen"] == local.selection_["chosen"]
    assert remote.validation_ == local.validation_
    np.testing.assert_array_equal(
        remote.decision_function(data.X_test), local.decision_function(data.X_test)
    )


def test_an_unknown_backend_is_one_clear_error(data, tmp_path, capsys):
    with pytest.raises(DLSAInputError, match="backend must be one of"):
        with cluster("spark"):
            pass
    save_features(tmp_path / "train.h5", data.X_train, data.y_train)
    argv = ["diagnose", "--train", str(tmp_path / "train.h5"), "--backend", "spark"]
    assert main(argv) == 2
    assert "invalid choice: 'spark'" in capsys.readouterr().err
