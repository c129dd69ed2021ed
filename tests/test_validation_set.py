"""Selection and safeguard decided on a validation set (``X_val``, ``y_val``, ``--val``):
the evidence is the candidates' accuracy on it, each fitted once on all the training
data; the rule's rarer half comes from the training counts; bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cli import main
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, MixtureConfig, SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError
from dlsa.io.features import save_features
from dlsa.selection import Candidate, balanced_accuracy, choose, paired_gain, rarer_half

FLT = FilterConfig(
    mixture=MixtureConfig(n_components=10, sigma=0.5), epochs=3, batch_size=128, lr=0.2
)
HEAD = HeadConfig(epochs=4, batch_size=128)


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=8, n_features=6, n_max=120, imbalance=20, n_test_per_class=30, seed=5
    )


def params(**kw):
    cfg = DLSAConfig(flow_filter=FLT, head=HEAD, selection=None, base="balsoftmax")
    return cfg.estimator_params() | kw


def split(data):
    """Validation = even test rows, test = odd rows."""
    return (data.X_test[::2], data.y_test[::2]), (data.X_test[1::2], data.y_test[1::2])


def test_candidates_are_fitted_on_all_the_data_and_scored_on_the_validation_set(data):
    (Xv, yv), _ = split(data)
    sel = SelectionConfig(bases=("balsoftmax", "ce"), proportions=(0.3,))
    clf = DLSAClassifier(**params(base="auto", depth=1, selection=sel))
    clf.fit(data.X_train, data.y_train, X_val=Xv, y_val=yv)
    ev = clf.selection_
    assert ev["source"] == "validation" and ev["n_scored"] == len(yv) and ev["folds"] is None
    rows = {r["name"]: r for r in ev["rounds"][0]["candidates"]}
    for name in ("balsoftmax", "ce"):  # each candidate = that model fitted on all of X
        alone = DLSAClassifier(**params(base=name, depth=0)).fit(data.X_train, data.y_train)
        expected = balanced_accuracy(alone.predict(Xv), yv, 8)
        assert rows[name]["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    # the DLSA round is scored on the same validation rows
    dlsa = ev["rounds"][1]["candidates"]
    assert dlsa[0]["name"] == ev["rounds"][0]["chosen"]
    ref = DLSAClassifier(**params(base="balsoftmax", depth=1)).fit(data.X_train, data.y_train)
    if ev["rounds"][0]["chosen"] == "balsoftmax":
        acc = balanced_accuracy(ref.predict(Xv), yv, 8)
        assert dlsa[1]["balanced_accuracy"] == pytest.approx(acc, abs=1e-12)


def test_the_safeguard_decides_on_the_validation_set(data):
    (Xv, yv), _ = split(data)
    clf = DLSAClassifier(**params(depth=1, validation_folds=2))
    clf.fit(data.X_train, data.y_train, X_val=Xv, y_val=yv)
    v = clf.validation_
    assert v["source"] == "validation set"
    assert v["n_val"] == len(yv) and v["n_fit"] == len(data.y_train) and v["n_folds"] is None
    assert sum(r["n"] for r in v["stages"]) == len(yv)
    # without a validation set: the folds of the training data
    plain = DLSAClassifier(**params(depth=1, validation_folds=2)).fit(data.X_train, data.y_train)
    assert plain.validation_["n_val"] == len(data.y_train)


def test_string_labels_of_the_validation_set_are_encoded_like_training(data):
    (Xv, yv), _ = split(data)
    names = np.array([f"c{k}" for k in range(8)])
    sel = SelectionConfig(bases=("balsoftmax", "ce"), proportions=(0.3,))
    a = DLSAClassifier(**params(base="auto", depth=0, selection=sel))
    a.fit(data.X_train, names[data.y_train], X_val=Xv, y_val=names[yv])
    b = DLSAClassifier(**params(base="auto", depth=0, selection=sel))
    b.fit(data.X_train, data.y_train, X_val=Xv, y_val=yv)
    assert a.selection_["rounds"] == [
        r | {"seconds": a.selection_["rounds"][i]["seconds"]}
        for i, r in enumerate(b.selection_["rounds"])
    ]


@pytest.mark.parametrize(
    "X_val, y_val, match",
    [
        ("X", None, "together"),
        ("narrow", "y", "features"),
        ("X", "unknown", "not a training class"),
    ],
)
def test_bad_validation_input_is_refused_in_one_line(data, X_val, y_val, match):
    Xv, yv = data.X_test[:10], data.y_test[:10].copy()
    X_arg = {"X": Xv, "narrow": Xv[:, :3]}[X_val]
    y_arg = {None: None, "y": yv, "unknown": np.where(np.arange(10) == 3, 99, yv)}[y_val]
    with pytest.raises(DLSAInputError, match=match):
        DLSAClassifier(**params(depth=0)).fit(data.X_train, data.y_train, X_val=X_arg, y_val=y_arg)


def test_rarer_half_of_a_balanced_validation_set_follows_the_training_counts():
    y_val = np.repeat(np.arange(4), 5)  # balanced: by its own counts, ties by index
    counts = np.array([3, 100, 50, 4])
    assert np.unique(y_val[rarer_half(y_val, 4, counts)]).tolist() == [0, 3]
    # the rule's tail condition uses them: a departure that loses on classes 0 and 3
    # (the rare ones) is not eligible, one that loses on 1 and 2 is
    ref = Candidate("ref", {}, y_val.copy())
    worse_tail = y_val.copy()
    worse_tail[y_val == 0] = 1
    worse_tail[y_val == 1] = 1
    rows = choose([ref, Candidate("t", {}, worse_tail)], y_val, 4, margin=0.0,
                  min_gain=-1.0, counts=counts)[2]  # fmt: skip
    gain, _ = paired_gain(worse_tail, y_val, y_val, 4)
    assert gain < 0 and rows[1]["tail_gain"] < 0 and not rows[1]["eligible"]


def test_defaults_count_cbs_once_and_bound_departures_over_all_candidates():
    sel = SelectionConfig()
    assert "crt" not in sel.bases and "cbs" in sel.bases and sel.bases[0] == "balsoftmax"
    assert sel.multiplicity == "max-t"


def test_fit_and_diagnose_take_val_from_the_command_line(data, tmp_path, capsys):
    (Xv, yv), (Xt, yt) = split(data)
    save_features(tmp_path / "train.h5", data.X_train, data.y_train)
    save_features(tmp_path / "val.h5", Xv, yv)
    save_features(tmp_path / "test.h5", Xt, yt)
    save_features(tmp_path / "narrow.h5", Xv[:, :3], yv)
    small = ["--head.epochs", "3", "--flow-filter.epochs", "2",
             "--flow-filter.mixture.n-components", "8",
             "--selection.bases", "balsoftmax,ce", "--selection.proportions", "0.3"]  # fmt: skip
    out = tmp_path / "fit"
    argv = [
        "-q",
        "fit",
        "--train",
        str(tmp_path / "train.h5"),
        "--test",
        str(tmp_path / "test.h5"),
        "--val",
        str(tmp_path / "val.h5"),
        "--out",
        str(out),
    ]
    assert main(argv + small) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["val"].endswith("val.h5") and results["selection"]["source"] == "validation"
    assert f"validation set, {len(yv)} samples" in text and "validation balanced acc" in text
    bad = argv[:-1] + [str(tmp_path / "bad")]
    bad[bad.index(str(tmp_path / "val.h5"))] = str(tmp_path / "narrow.h5")
    assert main(bad + small) == 2
    err = capsys.readouterr().err.strip()
    assert "--val" in err and "3 features" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    diag = ["-q", "diagnose", "--train", str(tmp_path / "train.h5"), "--val",
            str(tmp_path / "val.h5"), "--out", str(tmp_path / "d.json")]  # fmt: skip
    assert main(diag + small) == 0
    assert "on the validation set" in json.loads((tmp_path / "d.json").read_text())["verdict"]


def _counts_data(seed: int = 0, counts: tuple[int, ...] = (30, 15, 8, 5)):
    """Features (N, 3) and labels of ``counts`` samples per class (58 by default)."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).normal(size=(len(y), 3)) + y[:, None], y


@pytest.fixture
def no_training(monkeypatch):
    def tripwire(*args, **kwargs):
        pytest.fail("training started before the inputs were checked")

    monkeypatch.setattr("dlsa.estimator.final_fit.fit_cascade", tripwire)
    monkeypatch.setattr("dlsa.estimator.classifier.select", tripwire)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda X, y: (X[:, :2], y), "X_val has 2 features"),
        (lambda X, y: (np.where(X > 1, np.nan, X), y), "X_val: features contain"),
        (lambda X, y: (X[:, 0], y), r"X_val: features must have shape \(N, D\)"),
        (lambda X, y: (X, y[:-1]), "y_val: 20 feature rows but 19 labels"),
        (lambda X, y: (X, y + 0.5), "y_val: labels must be integers"),
        (lambda X, y: (X, y.astype(str)), "y_val: labels are text"),
        (lambda X, y: (X, np.where(y == 1, 9, y)), r"y_val: labels not seen in training: \[9\]"),
        (lambda X, y: (X, None), "X_val and y_val must be given together"),
    ],
    ids=["dimension", "nan", "1d", "count", "fraction", "text", "unseen", "alone"],
)
def test_fit_checks_the_validation_set_before_training(no_training, change, match):
    X, y = _counts_data()
    X_val, y_val = change(*_counts_data(1, (5, 5, 5, 5)))
    with pytest.raises(DLSAInputError, match=match):
        DLSAClassifier(depth=0, base="balsoftmax").fit(X, y, X_val=X_val, y_val=y_val)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            dict(depth=1, selection=None, flow_filter=FilterConfig(mixture=MixtureConfig(100))),
            "58 training samples but the flow filters have K=100",
        ),
        (
            dict(base="auto", depth=0, selection=SelectionConfig(folds=31)),
            "selection.folds=31 but the largest class",
        ),
        (
            dict(
                depth=1,
                selection=None,
                validation_folds=31,
                flow_filter=FilterConfig(mixture=MixtureConfig(4)),
            ),
            "validation_folds=31",
        ),
    ],
    ids=["K", "selection-folds", "validation-folds"],
)
def test_fit_refuses_data_too_small_for_its_parameters_before_training(no_training, params, match):
    with pytest.raises(DLSAInputError, match=match):
        DLSAClassifier(**({"base": "balsoftmax"} | params)).fit(*_counts_data())
