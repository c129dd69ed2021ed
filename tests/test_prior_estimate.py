"""Estimating the deployment prior from unlabelled rows: EM and BBSE under a synthetic
label shift, shrinkage with few rows, refusals, persistence and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cascade.prior_estimate import (
    MIN_ROWS,
    SHRINK_PER_CLASS,
    bbse_prior,
    confusion_counts,
    em_prior,
)
from dlsa.config import HeadConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError

C = 10


@pytest.fixture(scope="module")
def data():
    """Long-tailed train (1000 .. 50 a class), a balanced pool of 2000 a class; one
    Gaussian mode per class, so the linear head is well specified."""
    return make_long_tailed_features(
        n_classes=C, n_features=8, n_max=1000, imbalance=20, n_test_per_class=2000, seed=0,
        separation=1.0, modes_per_class=1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(data):
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=HeadConfig(epochs=100))
    clf.fit(data.X_train, data.y_train)
    return clf.calibrate_out_of_fold(data.X_train, data.y_train)  # T and BBSE's confusion


def _draws(data, n_draws=20, rows=5000, alpha=1.0, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(n_draws):
        per_class = rng.multinomial(rows, rng.dirichlet(np.full(C, alpha)))
        keep = np.concatenate([
            rng.choice(np.flatnonzero(data.y_test == c), size=k, replace=True)
            for c, k in enumerate(per_class) if k
        ])  # fmt: skip
        yield data.X_test[keep], data.y_test[keep], per_class / rows


def _accuracy(model, X, y, prior):
    return float((model.set_test_prior(prior, X).predict(X) == y).mean())


def test_em_and_bbse_recover_a_shifted_prior_and_its_accuracy(model, data):
    """20 Dirichlet(1) priors, 5000 rows each. Measured: mean L1 error 0.102 (EM), 0.067
    (BBSE), against 0.686 for the uniform prior; accuracy 81.25 / 81.74 % against
    81.71 % with the true prior and 76.83 % with the uniform one."""
    l1 = {"estimate": [], "estimate-bbse": []}
    acc = {"estimate": [], "estimate-bbse": [], "uniform": [], "oracle": []}
    for X, y, truth in _draws(data):
        for name in l1:
            acc[name].append(_accuracy(model, X, y, name))
            l1[name].append(np.abs(model.test_prior_ - truth).sum())
            assert model.test_prior_estimate_["rows"] == len(X)
        acc["uniform"].append(_accuracy(model, X, y, "uniform"))
        acc["oracle"].append(_accuracy(model, X, y, truth))
    model.set_test_prior(None)
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    assert np.mean(l1["estimate"]) < 0.2 and np.mean(l1["estimate-bbse"]) < 0.15
    for name in l1:
        assert mean[name] > mean["oracle"] - 0.015
        assert mean[name] > mean["uniform"] + 0.03


def test_a_balanced_test_set_stays_near_uniform(model, data):
    """The whole balanced pool (20000 rows). Measured: L1 to uniform 0.120 (EM) and 0.039
    (BBSE); accuracy -0.51 (EM) and +0.08 (BBSE) points against the uniform prior (EM
    inherits the bias of the tail classes' posteriors; see docs/method.md)."""
    X, y = data.X_test, data.y_test
    plain = _accuracy(model, X, y, "uniform")
    for name, bound, drop in (("estimate", 0.2, 0.01), ("estimate-bbse", 0.1, 0.003)):
        got = _accuracy(model, X, y, name)
        assert np.abs(model.test_prior_ - 1 / C).sum() < bound
        assert got >= plain - drop
    model.set_test_prior(None)


def test_few_rows_are_shrunk_toward_the_training_prior_and_too_few_refused(model, data):
    train = model.class_counts_ / model.class_counts_.sum()
    for name in ("estimate", "estimate-bbse"):
        for start in range(0, 50, 5):
            model.set_test_prior(name, data.X_test[start : start + 5])
            # 5 rows against m = 10 C = 100 pseudo-rows: at most 5/105 of the mass moves
            assert np.abs(model.test_prior_ - train).sum() <= 2 * 5 / 105 + 1e-9
            info = model.test_prior_estimate_
            assert info["rows"] == 5 and info["shrinkage_rows"] == SHRINK_PER_CLASS * C
        with pytest.raises(DLSAInputError, match=f"at least {MIN_ROWS} rows, got 1"):
            model.set_test_prior(name, data.X_test[:1])
    with pytest.raises(DLSAInputError, match="needs the features X"):
        model.set_test_prior("estimate")
    model.set_test_prior(None)


def test_bbse_needs_a_held_out_confusion_matrix(data):
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=HeadConfig(epochs=5))
    clf.fit(data.X_train, data.y_train)
    with pytest.raises(DLSAInputError, match="held-out confusion"):
        clf.set_test_prior("estimate-bbse", data.X_test)
    clf.fit_held_out_confusion(data.X_test[:500], data.y_test[:500])
    assert clf.held_out_confusion_.sum() == 500
    assert clf.set_test_prior("estimate-bbse", data.X_test).test_prior_ is not None


def test_the_estimators_on_known_numbers():
    pi, iterations = em_prior(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]]))
    np.testing.assert_allclose(pi, [0.64, 0.36], atol=0.005)
    assert iterations < 1000
    conf = confusion_counts(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    np.testing.assert_array_equal(conf, [[1, 1], [1, 2]])
    # clipping: predictions all of class 0 from a perfect classifier: prior (1, 0)
    np.testing.assert_allclose(bbse_prior(np.eye(2) * 50, np.array([10, 0])), [1, 0])


def test_the_estimate_is_saved_with_the_model(model, data, tmp_path):
    model.set_test_prior("estimate", data.X_test[:3000])
    loaded = DLSAClassifier.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.test_prior_, model.test_prior_)
    assert loaded.test_prior_estimate_ == model.test_prior_estimate_
    np.testing.assert_array_equal(loaded.held_out_confusion_, model.held_out_confusion_)
    np.testing.assert_array_equal(loaded.predict(data.X_test), model.predict(data.X_test))
    model.set_test_prior("train")
    assert model.test_prior_estimate_ is None
    model.set_test_prior(None)


def test_cli_predict_and_evaluate_with_an_estimated_prior(model, data, tmp_path, capsys):
    from dlsa.cli import main
    from dlsa.io.features import save_features

    model.save(tmp_path / "m")
    X, y, truth = next(_draws(data, rows=3000, seed=7))
    features = save_features(tmp_path / "shifted.h5", X, y)
    run = ["--model", str(tmp_path / "m"), "--features", str(features)]
    out = tmp_path / "p.npz"
    assert main(["-q", "predict", *run, "--out", str(out), "--test-prior", "estimate"]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("test prior: ")]
    record = json.loads(line[0][len("test prior: ") :])
    assert record["test_prior_estimate"]["method"] == "em"
    assert record["test_prior_estimate"]["rows"] == 3000
    expected = model.set_test_prior("estimate", X)
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["pred"], expected.predict(X))
    report = tmp_path / "e.json"
    argv = ["-q", "evaluate", *run, "--out", str(report), "--test-prior", "estimate-bbse"]
    assert main(argv) == 0
    payload = json.loads(report.read_text())
    assert payload["test_prior_estimate"]["method"] == "bbse"
    got = np.array([payload["test_prior"][str(c)] for c in range(C)])
    assert np.abs(got - truth).sum() < 0.2
    one = save_features(tmp_path / "one.h5", X[:1], y[:1])
    argv = ["predict", "--model", str(tmp_path / "m"), "--features", str(one)]
    assert main([*argv, "--out", str(tmp_path / "q.npz"), "--test-prior", "estimate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 2 rows" in err
    model.set_test_prior(None)


def test_cli_fit_estimates_on_the_test_features(data, tmp_path):
    from dlsa.cli import main
    from dlsa.io.features import save_features

    train = save_features(tmp_path / "train.h5", data.X_train, data.y_train)
    X, y, truth = next(_draws(data, rows=3000, seed=3))
    test = save_features(tmp_path / "test.h5", X, y)
    argv = ["-q", "fit", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "r"),
            "--config", "default", "--no-selection", "--base", "balsoftmax", "--depth", "0",
            "--head.epochs", "30", "--test-prior", "estimate-bbse"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["test_prior_estimate"]["method"] == "bbse"
    assert results["base_test_prior"]["test_prior_estimate"]["rows"] == 3000
    got = np.array([results["test_prior"][str(c)] for c in range(C)])
    assert np.abs(got - truth).sum() < 0.25
    loaded = DLSAClassifier.load(tmp_path / "r" / "model")
    np.testing.assert_allclose(loaded.test_prior_, got)
