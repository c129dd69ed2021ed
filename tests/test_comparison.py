"""compare_bases: shared filters per seed, aggregation over seeds, the Table-1 layout."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dlsa.analysis.comparison import compare_bases, comparison_table, format_mean_std
from dlsa.analysis.peer import PEER_NAME
from dlsa.analysis.report import COLUMNS
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, MixtureConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.stage2.filter import FlowFilter

CONFIG = DLSAConfig(
    depth=1,
    base="balsoftmax",
    selection=None,
    flow_filter=FilterConfig(
        mixture=MixtureConfig(n_components=8, sigma=0.5), epochs=3, batch_size=128, lr=0.2
    ),
    head=HeadConfig(epochs=5, batch_size=128),
)


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=10, n_features=6, n_max=150, imbalance=20, n_test_per_class=10, seed=5
    )


@pytest.fixture(scope="module")
def compared(data):
    """Two bases, two seeds; counts the flow filters that are really trained."""
    fitted: list[FlowFilter] = []
    original = FlowFilter.fit

    def counting_fit(self, *args, **kwargs):
        fitted.append(self)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FlowFilter, "fit", counting_fit)
        result = compare_bases(
            data.X_train,
            data.y_train,
            data.X_test,
            data.y_test,
            bases=["balsoftmax", "cbs"],
            config=CONFIG,
            seeds=[0, 1],
            progress=False,
        )
    return result, fitted


def test_filters_are_trained_once_per_seed(compared):
    result, fitted = compared
    assert len(fitted) == 2  # 2 seeds x depth 1, shared by both bases
    assert len({id(f) for f in fitted}) == 2
    assert result["filter_fits"] == 2


def test_runs_and_summary_cover_every_seed_and_base(compared):
    result, _ = compared
    assert result["bases"] == ["balsoftmax", "cbs"] and result["seeds"] == [0, 1]
    assert [(r["seed"], r["base_method"]) for r in result["runs"]] == [
        (0, "balsoftmax"),
        (0, "cbs"),
        (1, "balsoftmax"),
        (1, "cbs"),
    ]
    for name in result["bases"]:
        summary = result["summary"][name]
        runs = [r for r in result["runs"] if r["base_method"] == name]
        for variant in ("base", "dlsa"):
            values = [r[variant]["overall"] for r in runs]
            assert summary[variant]["overall"]["mean"] == pytest.approx(np.mean(values))
            assert summary[variant]["overall"]["std"] == pytest.approx(np.std(values, ddof=1))
        gains = [r["dlsa"]["overall"] - r["base"]["overall"] for r in runs]
        assert summary["gain"]["overall"]["mean"] == pytest.approx(np.mean(gains))
    assert set(result["summary"]["cbs"]["base"]) == set(COLUMNS)


def test_result_is_json_ready(compared):
    result, _ = compared
    assert json.loads(json.dumps(result))["bases"] == ["balsoftmax", "cbs"]


def test_table_has_the_shape_of_table_1(compared):
    result, _ = compared
    lines = comparison_table(result).splitlines()
    assert lines[0] == "Test metrics (%), mean ± std over 2 seeds"
    header, rows = lines[2], lines[4:]
    assert header == "| classifier | overall | many | medium | few | MCC | NMI |"
    assert [r.split(" | ")[0] for r in rows] == [
        "| balsoftmax",
        "| balsoftmax + DLSA",
        "| cbs",
        "| cbs + DLSA",
        f"| {PEER_NAME}, C {result['peer']['c']:g}",
    ]
    assert "±" not in rows[-1]
    for row in rows[:-1]:
        cells = row.strip("| ").split(" | ")[1:]
        assert len(cells) == 6
        present = [c for c in cells if c != "-"]
        assert present and all(" ± " in c for c in present)
        if "DLSA" in row:
            assert all(c.endswith(")") and ("(+" in c or "(-" in c) for c in present)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_peer_row_is_scikit_learns_logistic_regression_cv(compared, data):
    """One fit of the user's ten lines, scored like every row (not a number of ours)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import accuracy_score, matthews_corrcoef
    from sklearn.preprocessing import StandardScaler

    result, _ = compared
    scaler = StandardScaler().fit(data.X_train)
    lr = LogisticRegressionCV(
        Cs=[1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0], cv=3, class_weight="balanced",
        scoring="balanced_accuracy", max_iter=1000,
    ).fit(scaler.transform(data.X_train), data.y_train)  # fmt: skip
    pred = lr.predict(scaler.transform(data.X_test))
    peer = result["peer"]
    assert peer["c"] == pytest.approx(float(lr.C_[0]))
    assert peer["metrics"]["overall"] == pytest.approx(accuracy_score(data.y_test, pred))
    assert peer["metrics"]["mcc"] == pytest.approx(matthews_corrcoef(data.y_test, pred))


def test_without_the_peer_there_is_no_peer_row(data):
    cfg = dataclasses.replace(CONFIG, depth=1)
    result = compare_bases(
        data.X_train, data.y_train, data.X_test, data.y_test,
        bases=["balsoftmax"], config=cfg, seeds=[0], peer=False,
    )  # fmt: skip
    assert "peer" not in result and "peer" not in comparison_table(result)


def test_mean_std_formatting():
    assert format_mean_std({"mean": 0.43219, "std": 0.01234}) == "43.2 ± 1.2"
    assert format_mean_std({"mean": 0.43219, "std": 0.01234}, digits=2) == "43.22 ± 1.23"
    assert format_mean_std({"mean": 0.4, "std": None}) == "40.0"
    assert format_mean_std({"mean": None, "std": None}) == "-"


def test_single_seed_table_has_no_std():
    metrics = {c: {"mean": 0.5, "std": None} for c in COLUMNS}
    gain = {c: {"mean": 0.01, "std": None} for c in COLUMNS}
    result = {
        "bases": ["ce"],
        "seeds": [3],
        "summary": {"ce": {"base": metrics, "dlsa": metrics, "gain": gain}},
    }
    text = comparison_table(result)
    assert "over 1 seed\n" in text and "±" not in text.split("\n", 1)[1]
    assert "| ce + DLSA | 50.0 (+1.0) |" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bases": ["ce", "nope"]}, "unknown base"),
        ({"bases": []}, "non-empty"),
        ({"bases": ["ce", "ce"]}, "repeats"),
        ({"seeds": [1, 1]}, "repeats"),
        ({"config": DLSAConfig(depth=0)}, "depth"),
    ],
)
def test_bad_arguments_are_rejected_before_any_fit(data, kwargs, match):
    args = {"bases": ["ce"], "config": CONFIG, "seeds": [0]} | kwargs
    with pytest.raises(ValueError, match=match):
        compare_bases(data.X_train, data.y_train, data.X_test, data.y_test, **args)


def test_seeds_in_worker_processes_give_the_same_table(compared, data, monkeypatch):
    import dlsa.engine.parallel

    monkeypatch.setattr(dlsa.engine.parallel.os, "cpu_count", lambda: 2)  # 1 torch thread each
    result, _ = compared
    pooled = compare_bases(
        data.X_train, data.y_train, data.X_test, data.y_test, bases=["balsoftmax", "cbs"],
        config=dataclasses.replace(CONFIG, n_jobs=2), seeds=[0, 1],
    )  # fmt: skip
    assert pooled["filter_fits"] == result["filter_fits"] == 2
    for a, b in zip(pooled["runs"], result["runs"], strict=True):
        assert (a["seed"], a["base_method"], a["base"], a["dlsa"]) == (
            b["seed"], b["base_method"], b["base"], b["dlsa"],
        )  # fmt: skip
