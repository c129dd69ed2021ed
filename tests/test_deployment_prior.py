"""The deployment prior: Bayes' rule on the scores, its resolution, persistence, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cascade.deployment_prior import logit_shift, resolve_test_prior
from dlsa.config import HeadConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=6, n_features=5, n_max=300, imbalance=30, n_test_per_class=300, seed=4,
        separation=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(data):
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=HeadConfig(epochs=20))
    return clf.fit(data.X_train, data.y_train)


def test_adjusted_posterior_is_bayes_rule_on_the_balanced_one(model, data):
    """p(y | x) under prior pi is p_uniform(y | x) pi(y), normalised."""
    uniform = model.set_test_prior("uniform").predict_proba(data.X_test)
    pi = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    adjusted = model.set_test_prior(pi).predict_proba(data.X_test)
    expected = uniform * pi
    np.testing.assert_allclose(adjusted, expected / expected.sum(1, keepdims=True), atol=1e-6)
    model.set_test_prior(None)


def test_bayes_rule_on_a_known_mixture():
    """Two unit Gaussians at -1 and +1: the balanced posterior of class 1 is
    sigmoid(2x); under prior (0.8, 0.2) Bayes' rule gives sigmoid(2x + log(0.2/0.8))."""
    x = np.linspace(-3, 3, 13)
    logits = np.stack([-2 * x / 2, 2 * x / 2], 1)  # log N(x | +-1, 1) up to a constant
    shift = logit_shift(np.array([0.8, 0.2]), np.array([1, 1]), balanced=True)
    z = logits + shift
    p1 = np.exp(z[:, 1]) / np.exp(z).sum(1)
    np.testing.assert_allclose(p1, 1 / (1 + np.exp(-(2 * x + np.log(0.2 / 0.8)))))


def test_a_set_drawn_with_the_training_prior_is_predicted_better_with_it(model, data):
    rng = np.random.default_rng(0)
    counts = np.bincount(data.y_train)
    keep = np.concatenate([
        rng.choice(np.flatnonzero(data.y_test == c), size=max(1, round(300 * n / counts.max())),
                   replace=False)
        for c, n in enumerate(counts)
    ])  # fmt: skip
    X, y = data.X_test[keep], data.y_test[keep]
    plain = (model.set_test_prior("uniform").predict(X) == y).mean()
    adjusted = (model.set_test_prior("train").predict(X) == y).mean()
    model.set_test_prior(None)
    assert adjusted > plain + 0.02


def test_cross_entropy_takes_its_training_prior_out_first():
    shift = logit_shift(np.array([0.5, 0.5]), np.array([3, 1]), balanced=False)
    np.testing.assert_allclose(shift, np.log([0.5 / 0.75, 0.5 / 0.25]))
    assert logit_shift(None, np.array([3, 1]), balanced=False) is None  # as trained


def test_resolution_and_errors():
    classes, counts = np.array(["a", "b", "c"]), np.array([6, 3, 1])
    assert resolve_test_prior("uniform", classes, counts) is None
    np.testing.assert_allclose(resolve_test_prior("train", classes, counts), [0.6, 0.3, 0.1])
    got = resolve_test_prior({"c": 2, "b": 1, "a": 1}, classes, counts)
    np.testing.assert_allclose(got, [0.25, 0.25, 0.5])
    for bad, match in [
        ("flat", "uniform"),
        ({"a": 1, "b": 1}, "lacks classes of the model: c"),
        ({"a": 1, "b": 1, "c": 1, "d": 1}, "does not know: 'd'"),
        ({"a": -1, "b": 1, "c": 1}, ">= 0"),
        (np.ones(2), "shape"),
    ]:
        with pytest.raises(DLSAInputError, match=match):
            resolve_test_prior(bad, classes, counts)


def test_the_prior_is_saved_with_the_model(model, data, tmp_path):
    model.set_test_prior("train")
    loaded = DLSAClassifier.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.test_prior_, model.test_prior_)
    np.testing.assert_array_equal(loaded.predict(data.X_test), model.predict(data.X_test))
    model.set_test_prior(None)


def test_cli_test_prior_for_fit_evaluate_and_predict(data, tmp_path, capsys):
    from dlsa.cli import main
    from dlsa.io.features import save_features

    train = save_features(tmp_path / "train.h5", data.X_train, data.y_train)
    test = save_features(tmp_path / "test.h5", data.X_test, data.y_test)
    prior = tmp_path / "prior.csv"
    prior.write_text("class,frequency\n" + "".join(f"{c},{6 - c}\n" for c in range(6)))
    argv = ["-q", "fit", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "r"),
            "--config", "default", "--no-selection", "--base", "balsoftmax", "--depth", "0",
            "--head.epochs", "5", "--test-prior", str(prior)]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["test_prior"]["0"] == pytest.approx(6 / 21)
    model = DLSAClassifier.load(tmp_path / "r" / "model")
    assert model.test_prior_[0] == pytest.approx(6 / 21)
    run = ["--model", str(tmp_path / "r" / "model"), "--features", str(test)]
    assert (
        main(["-q", "predict", *run, "--out", str(tmp_path / "p.npz"), "--test-prior", "uniform"])
        == 0
    )
    with np.load(tmp_path / "p.npz") as saved:
        np.testing.assert_array_equal(
            saved["pred"], model.set_test_prior(None).predict(data.X_test)
        )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": 1, "9": 1}))
    assert main(["evaluate", *run, "--test-prior", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and "'9'" in err
