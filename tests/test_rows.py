"""Training features kept in host memory (``features_on="host"``, :mod:`dlsa.engine.rows`): the
helpers agree with plain tensors, and a cascade fitted with its features in host memory
is the one fitted with them on the device (bit for bit on the CPU; on CUDA, where the
rows cross from host to device, see the ``gpu`` case).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlsa import DLSAClassifier
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.engine import rows
from dlsa.engine.rows import HostRows, cat_columns, column_moments, gather, map_rows
from dlsa.errors import DLSAInputError
from dlsa.stage2.classifiers import ClusterPrior

CPU = torch.device("cpu")
FLT = FilterConfig(mixture=MixtureConfig(12), epochs=3, batch_size=64, standardize=True)
HEAD = HeadConfig(epochs=2, batch_size=64, standardize=True)


def test_helpers_agree_with_tensors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g)
    host = HostRows(x.clone(), CPU)
    idx = torch.tensor([3, 0, 49, 3])
    mask = x[:, 0] > 0
    assert host.shape == x.shape and len(host) == 50 and host.dtype == x.dtype
    assert torch.equal(gather(host, idx), x[idx])
    assert torch.equal(host[mask].data, x[mask])
    assert torch.equal(torch.cat(list(host.chunks(7))), x)
    doubled = map_rows(lambda b: 2 * b, host, 7)
    assert isinstance(doubled, HostRows) and torch.equal(doubled.data, 2 * x)
    assert torch.equal(map_rows(lambda b: 2 * b, x, 7), 2 * x)
    both = cat_columns([host, doubled])
    assert isinstance(both, HostRows) and torch.equal(both.data, torch.cat([x, 2 * x], 1))
    for got, want in zip(column_moments(host), column_moments(x), strict=True):
        assert torch.equal(got, want)
    torch.testing.assert_close(column_moments(x)[1], x.std(0, unbiased=False))
    with pytest.raises(TypeError, match="mix of HostRows"):
        cat_columns([host, x])


def test_only_cuda_features_can_be_too_large_for_the_device():
    assert rows.fits_on_device(10**15, CPU)
    assert rows.fits_on_device(10**15, torch.device("meta"))


def fit(lt_data, **kw):
    params = {"selection": None, "flow_filter": FLT, "head": HEAD, "random_state": 0}
    return DLSAClassifier(**(params | kw)).fit(lt_data.X_train, lt_data.y_train)


@pytest.mark.parametrize(
    "kw",
    [
        {"base": "balsoftmax", "depth": 2},
        {"base": "m2m", "depth": 1},
        {"base": "tau-norm", "depth": 1},
        {"base": "ride", "depth": 1, "stack_base": True},
    ],
    ids=["balsoftmax-depth2", "m2m", "tau-norm", "ride-stacked"],
)
def test_host_memory_features_give_the_same_model(kw, lt_data, monkeypatch):
    device = fit(lt_data, features_on="device", **kw).decision_function(lt_data.X_test)
    copied = []
    rows_of = HostRows.rows
    monkeypatch.setattr(
        HostRows, "rows", lambda self, i: copied.append(i.numel()) or rows_of(self, i)
    )
    host = fit(lt_data, features_on="host", **kw).decision_function(lt_data.X_test)
    # the training batches were copied out of host memory (2 epochs of each stage)
    assert sum(copied) >= 2 * lt_data.X_train.shape[0]
    np.testing.assert_array_equal(host, device)


def test_features_on_is_checked_and_not_saved(lt_data, tmp_path):
    with pytest.raises(DLSAInputError, match="features_on"):
        fit(lt_data, base="ce", depth=0, features_on="disk")
    clf = fit(lt_data, base="balsoftmax", depth=1, features_on="host")
    clf.save(tmp_path / "m")
    params = json.loads((tmp_path / "m" / "model.json").read_text())["params"]
    assert "features_on" not in params and "device" not in params
    back = DLSAClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict(lt_data.X_test), clf.predict(lt_data.X_test))


def test_no_dense_cluster_prior_larger_than_a_batch_while_fitting(lt_data, monkeypatch):
    """The cluster prior stays (clusters, table) during training: (N, C) rows are gathered
    only for a minibatch, never for a whole level (gigabytes at 8,142 classes)."""
    rows = []
    dense = ClusterPrior.dense
    monkeypatch.setattr(ClusterPrior, "dense", lambda self: rows.append(len(self)) or dense(self))
    fit(lt_data, base="balsoftmax", depth=2)
    assert rows and max(rows) <= HEAD.batch_size
