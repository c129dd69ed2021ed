"""The routed share is the level's (``DLSAConfig.routed_share``), not the filter's
training: the old key ``flow_filter.proportion`` of YAML files, saved models and flags
still reads as it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cli.flags import resolve_config
from dlsa.cli.parser import build_parser
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, MixtureConfig, from_dict
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError


def test_the_old_key_reads_as_the_routed_share():
    cfg = from_dict(DLSAConfig, {"flow_filter": {"proportion": 0.5, "lr": 0.1}})
    assert (cfg.routed_share, cfg.flow_filter.lr) == (0.5, 0.1)
    assert cfg.flow_filter == from_dict(DLSAConfig, {"flow_filter": {"lr": 0.1}}).flow_filter
    with pytest.raises(DLSAInputError, match=r"flow_filter.proportion \(now routed_share\)"):
        from_dict(DLSAConfig, {"flow_filter": {"proportion": 1.5}})
    with pytest.raises(DLSAInputError, match="give only routed_share"):
        from_dict(DLSAConfig, {"flow_filter": {"proportion": 0.5}, "routed_share": 0.3})


def test_yaml_and_flag_of_the_old_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("depth: 2\nflow_filter:\n  proportion: 0.5\n", encoding="utf-8")
    parser = build_parser()
    args = parser.parse_args(
        ["fit", "--train", "a", "--test", "b", "--out", "o", "--config", str(path)]
    )
    assert resolve_config(args).routed_share == 0.5
    old = ["fit", "--train", "a", "--test", "b", "--out", "o", "--flow-filter.proportion", "0.7"]
    assert resolve_config(parser.parse_args(old)).routed_share == 0.7
    new = ["fit", "--train", "a", "--test", "b", "--out", "o", "--routed-share", "0.2"]
    assert resolve_config(parser.parse_args(new)).routed_share == 0.2


def test_a_model_saved_with_the_old_key_loads_and_predicts_the_same(tmp_path):
    d = make_long_tailed_features(
        n_classes=5, n_features=4, n_max=80, imbalance=10, n_test_per_class=5, seed=0
    )
    flt = FilterConfig(mixture=MixtureConfig(n_components=6), epochs=2, batch_size=64)
    clf = DLSAClassifier(
        depth=2, base="balsoftmax", selection=None, flow_filter=flt, routed_share=0.5,
        head=HeadConfig(epochs=2, batch_size=64),
    ).fit(d.X_train, d.y_train)  # fmt: skip
    clf.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    params = meta["params"]
    params["flow_filter"]["proportion"] = params.pop("routed_share")  # as saved before
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    loaded = DLSAClassifier.load(tmp_path / "m")
    assert loaded.routed_share == 0.5 and loaded.fitted_params_["routed_share"] == 0.5
    np.testing.assert_array_equal(loaded.predict_proba(d.X_test), clf.predict_proba(d.X_test))
