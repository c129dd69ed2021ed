"""Estimating the deployment prior from unlabelled rows: EM (on bias-corrected
temperature scaling) and BBSE under a synthetic label shift, EM's no-shift test (the
reference prior kept on balanced data), shrinkage with few rows, refusals, persistence
and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from scipy.special import softmax

from dlsa import DLSAClassifier
from dlsa.cascade import shift_detection
from dlsa.cascade.prior_estimate import (
    MIN_ROWS,
    SHRINK_PER_CLASS,
    bbse_prior,
    confusion_counts,
    em_prior,
)
from dlsa.cascade.shift_detection import log_likelihood_ratio, lr_threshold, null_weights
from dlsa.cascade.temperature import fit_bias_corrected_temperature
from dlsa.config import HeadConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.estimator.calibration import cascade_logits
from dlsa.estimator.prior_estimate import set_estimated_prior

C = 10


def _study_data(seed):
    """Long-tailed train (1000 .. 50 a class), a balanced pool of 2000 a class (sorted by
    class); one Gaussian mode per class, so the linear head is well specified."""
    return make_long_tailed_features(
        n_classes=C, n_features=8, n_max=1000, imbalance=20, n_test_per_class=2000, seed=seed,
        separation=1.0, modes_per_class=1,
    )  # fmt: skip


def _study_model(data):
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=HeadConfig(epochs=100))
    clf.fit(data.X_train, data.y_train)
    return clf.calibrate_out_of_fold(data.X_train, data.y_train)  # T, BCTS, BBSE's confusion


@pytest.fixture(scope="module")
def data():
    return _study_data(0)


@pytest.fixture(scope="module")
def model(data):
    return _study_model(data)


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
    """20 Dirichlet(1) priors, 5000 rows each. Measured: mean L1 error 0.056 (EM on BCTS;
    0.102 on the temperature alone), 0.067 (BBSE), against 0.686 for the uniform prior;
    accuracy 81.84 / 81.74 % against 81.71 % with the true prior and 76.83 % with the
    uniform one."""
    l1 = {"estimate": [], "estimate-bbse": []}
    acc = {"estimate": [], "estimate-bbse": [], "uniform": [], "oracle": []}
    for X, y, truth in _draws(data):
        for name in l1:
            acc[name].append(_accuracy(model, X, y, name))
            l1[name].append(np.abs(model.test_prior_ - truth).sum())
            assert model.test_prior_estimate_["rows"] == len(X)
        assert model.set_test_prior("estimate", X).test_prior_estimate_["shift_test"][
            "shift_detected"
        ]
        acc["uniform"].append(_accuracy(model, X, y, "uniform"))
        acc["oracle"].append(_accuracy(model, X, y, truth))
    model.set_test_prior(None)
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    assert np.mean(l1["estimate"]) < 0.1 and np.mean(l1["estimate-bbse"]) < 0.15
    for name in l1:
        assert mean[name] > mean["oracle"] - 0.015
        assert mean[name] > mean["uniform"] + 0.03


def _pool_changes(model, data):
    """On the whole balanced pool: the accuracy change (against no test prior) and L1
    from uniform of EM with its no-shift test and without it (``level=None``)."""
    X, y = data.X_test, data.y_test
    plain = _accuracy(model, X, y, "uniform")
    gated = _accuracy(model, X, y, "estimate")
    gated_l1 = np.abs(model.test_prior_ - 1 / C).sum()
    set_estimated_prior(model, [X], "estimate", level=None)
    ungated = float((model.predict(X) == y).mean())
    ungated_l1 = np.abs(model.test_prior_ - 1 / C).sum()
    model.set_test_prior(None)
    return gated - plain, gated_l1, ungated - plain, ungated_l1


def test_a_balanced_test_set_keeps_the_reference_prior(model, data):
    """The whole balanced pool (20000 rows); the bar: the estimate stays near uniform and
    accuracy does not drop by more than 0.1 point. EM's no-shift test finds no shift
    (measured: Lambda 27.3 against 163.3; Wilks' chi-square alone would put it at 16.9),
    so the prior is the reference, uniform, and predictions are those without a test
    prior (0 points). Untested, EM lands 0.046 from uniform (-0.07 points); BBSE 0.039
    (+0.08); EM on the temperature alone (Wilks' null: a shift found) 0.120, -0.51."""
    X, y = data.X_test, data.y_test
    change, l1, ungated, ungated_l1 = _pool_changes(model, data)
    assert change == 0.0 and l1 == 0.0
    assert 0.0 < ungated_l1 < 0.06 and ungated >= -0.001
    model.set_test_prior("estimate", X)
    info = model.test_prior_estimate_
    test = info["shift_test"]
    assert info["calibration"] == "bcts" and not test["shift_detected"]
    assert test["null"] == "chi2 + BCTS bias uncertainty" and test["level"] == 0.05
    assert lr_threshold(None, len(X), C, 0.05) < test["value"] < test["threshold"]
    np.testing.assert_array_equal(model.test_prior_, np.full(C, 1 / C))
    expected = model.set_test_prior(None).predict_proba(X)  # log(1/C) added: float32 noise
    got = model.set_test_prior("estimate", X).predict_proba(X)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    plain = _accuracy(model, X, y, "uniform")
    assert _accuracy(model, X, y, "estimate-bbse") >= plain - 0.001
    assert np.abs(model.test_prior_ - 1 / C).sum() < 0.05
    assert model.test_prior_estimate_["shift_test"] is None  # BBSE: not tested
    model.set_test_prior(None)


@pytest.mark.parametrize("seed", [6, 9])
def test_the_bar_holds_where_untested_em_missed_it(seed):
    """The two seeds of the study where untested EM lost most on the balanced pool
    (-0.55 and -0.69 points; 8 of seeds 0-11 miss the bar of 0.1 point): tested, the
    reference prior is kept and accuracy does not move (all 12 seeds: docs/method.md)."""
    data = _study_data(seed)
    change, l1, ungated, ungated_l1 = _pool_changes(_study_model(data), data)
    assert change == 0.0 and l1 == 0.0
    assert ungated < -0.004 and ungated_l1 > 0.09


def test_plain_ce_keeps_the_training_prior_it_predicts_with(data):
    """Plain CE predicts with the training prior when none is set: that is its reference.
    5000 rows drawn at the training prior keep it (measured Lambda 10.0 against 50.1);
    drawn at the uniform prior, the shift is found (2474) and the estimate used (0.054
    from it)."""
    clf = DLSAClassifier(depth=0, base="ce", selection=None, head=HeadConfig(epochs=100))
    clf.fit(data.X_train, data.y_train).calibrate_out_of_fold(data.X_train, data.y_train)
    train = clf.class_counts_ / clf.class_counts_.sum()
    rng = np.random.default_rng(0)
    for truth, shifted in ((train, False), (np.full(C, 1 / C), True)):
        per_class = rng.multinomial(5000, truth)
        keep = np.concatenate([
            rng.choice(np.flatnonzero(data.y_test == c), size=k) for c, k in enumerate(per_class)
        ])  # fmt: skip
        X = data.X_test[keep]
        test = clf.set_test_prior("estimate", X).test_prior_estimate_["shift_test"]
        assert test["shift_detected"] == shifted and test["reference"] == "train"
        if not shifted:
            np.testing.assert_allclose(clf.test_prior_, train)
            np.testing.assert_array_equal(clf.predict(X), clf.set_test_prior(None).predict(X))
        else:
            assert np.abs(clf.test_prior_ - truth).sum() < 0.15


def test_wilks_null_holds_on_calibrated_posteriors_and_miscalibration_inflates_it():
    """Exact posteriors of three Gaussian classes: with no shift, Wilks' chi-square (2
    d.o.f.) rejects about as often as its level (measured 14 of 200 at 0.05) and a shift
    to (0.5, 0.3, 0.2) is nearly always found (199 of 200). Posteriors calibrated by BCTS
    on 700 held-out rows (scores scaled by 1.3 and biased) are another matter: at 20000
    rows Wilks rejects most no-shift samples (16 of 20), the null with BCTS's bias
    uncertainty none (conservative here, where BCTS's family is right and the held-out
    class counts fixed; on the study's models the bias errors are as large as it
    assumes: docs/method.md)."""
    means = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])

    def scores(counts, rng):
        y = np.repeat(np.arange(3), counts)
        x = means[y] + rng.normal(size=(len(y), 2))
        return x @ means.T - 0.5 * (means**2).sum(axis=1), y

    rng = np.random.default_rng(0)
    uniform = np.full(3, 1 / 3)
    rejected = {"none": 0, "shift": 0}
    for _ in range(200):
        for name, truth in (("none", uniform), ("shift", np.array([0.5, 0.3, 0.2]))):
            q = softmax(scores(rng.multinomial(1000, truth), rng)[0], axis=1)
            pi = em_prior(q)[0]
            rejected[name] += log_likelihood_ratio(q, pi, uniform) > lr_threshold(
                None, 1000, 3, 0.05
            )
    assert 2 <= rejected["none"] <= 20 and rejected["shift"] >= 190
    wilks = calibrated = 0
    held_prior, distort = np.array([4, 2, 1]) / 7, np.array([0.4, 0.0, -0.4])
    for _ in range(20):
        held, target = scores([400, 200, 100], rng)
        logits = 1.3 * held + distort
        fit = fit_bias_corrected_temperature(logits, target, np.log(held_prior))
        args = (fit.temperature, fit.bias, held_prior, uniform, 1.0)
        weights = null_weights(logits, target, *args)
        z = scores(rng.multinomial(20000, uniform), rng)[0]
        q = softmax((1.3 * z + distort) / fit.temperature + fit.bias, axis=1)
        value = log_likelihood_ratio(q, em_prior(q)[0], uniform)
        wilks += value > lr_threshold(None, 20000, 3, 0.05)
        calibrated += value > lr_threshold(weights, 20000, 3, 0.05)
    assert wilks >= 10 and calibrated == 0


def test_null_weights_scale_with_the_held_out_rows_and_their_diagonal_approximation(
    model, data, monkeypatch
):
    """The weights are the calibration's share of the statistic per test row: twice the
    held-out rows (each row twice; no bias prior), half the weights. Above
    EXACT_MAX_CLASSES only the matrices' diagonals are used: on the study's held-out rows
    their sum is within 15 % of the exact one (measured 0.00288 against 0.00333)."""
    from dlsa.estimator.calibration import out_of_fold_logits
    from dlsa.estimator.prior_estimate import balanced_offset

    logits, target = out_of_fold_logits(model, data.X_train, data.y_train)
    counts = np.bincount(target, minlength=C)
    bcts = model.bcts_
    args = (bcts.temperature, balanced_offset(model) + bcts.bias, counts / counts.sum())
    exact = null_weights(logits, target, *args, np.full(C, 1 / C), 1.0)
    assert exact.shape == (C - 1,) and (exact >= 0).all()
    np.testing.assert_allclose(exact, bcts.null_weights)
    once = null_weights(logits, target, *args, np.full(C, 1 / C), 0.0)
    twice = null_weights(
        np.r_[logits, logits], np.r_[target, target], *args, np.full(C, 1 / C), 0.0
    )
    np.testing.assert_allclose(twice, once / 2, rtol=1e-6)
    monkeypatch.setattr(shift_detection, "EXACT_MAX_CLASSES", C - 1)
    diagonal = null_weights(logits, target, *args, np.full(C, 1 / C), 1.0)
    assert diagonal.shape == (C - 1,)
    assert abs(diagonal.sum() / exact.sum() - 1) < 0.15


def test_bcts_recovers_a_known_bias_and_temperature():
    """Logits of a calibrated softmax model, scaled by 2 and shifted by a per-class
    bias a: BCTS finds T = 2 and b = -a / 2 up to a constant (b has mean 0), within 0.05
    (20000 rows; the bias prior's pull is ~1e-4). -inf logits (a class a fold never
    saw: class 4 in a tenth of the rows) are no probability, not NaN; a class no row
    belongs to, closed by the offset (class 5), keeps b near 0 instead of -inf."""
    rng = np.random.default_rng(0)
    n, a = 20000, np.array([1.0, -0.6, 0.3, 0.0, -0.7])
    z = 1.5 * rng.normal(size=(n, 5))
    z[: n // 10, 4] = -np.inf
    y = (rng.random((n, 1)) > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    centred = -(a - a.mean()) / 2
    fit = fit_bias_corrected_temperature(2.0 * z + a, y)
    assert abs(fit.temperature - 2.0) < 0.05
    np.testing.assert_allclose(fit.bias, centred, atol=0.05)
    assert abs(fit.bias.mean()) < 1e-9
    fit = fit_bias_corrected_temperature(np.c_[2.0 * z + a, np.zeros(n)], y, [0.0] * 5 + [-np.inf])
    assert abs(fit.temperature - 2.0) < 0.05 and abs(fit.bias[5]) < 0.05
    np.testing.assert_allclose(fit.bias[:5] - fit.bias[:5].mean(), centred, atol=0.05)
    with pytest.raises(DLSAInputError, match="at least 2 held-out samples, got 1"):
        fit_bias_corrected_temperature(z[:1], y[:1])


def test_bcts_enters_predictions_only_with_an_em_estimate(model, data):
    """Without an estimated prior (uniform, train, given, BBSE) predictions are those of
    the temperature alone; with EM's estimate pi the logits are Bayes' rule relative to
    the held-out prior on the BCTS posteriors: ``logits / T_b + b + log pi`` (Balanced
    Softmax: the balanced frame is the logits')."""
    X = data.X_test[:3000]
    raw = torch.from_numpy(cascade_logits(model.cascade_, X)).double().numpy()
    bcts, t = model.bcts_, model.temperature_
    assert bcts is not None and bcts.bias.shape == (C,) and t is not None
    for prior in (None, "train", np.arange(1, C + 1.0), "estimate-bbse"):
        model.set_test_prior(prior, X)
        shift = 0.0 if model.test_prior_ is None else np.log(model.test_prior_)
        np.testing.assert_allclose(model.decision_function(X), raw / t + shift, atol=1e-4)
    model.set_test_prior("estimate", X)
    expected = raw / bcts.temperature + bcts.bias + np.log(model.test_prior_)
    np.testing.assert_allclose(model.decision_function(X), expected, atol=1e-4)
    model.set_test_prior(None)


def test_few_rows_keep_the_reference_or_are_shrunk_and_too_few_refused(model, data):
    """5 rows of class 0: EM's test rarely finds a shift (1 of 10 times; the prior is then
    shrunk toward the training prior as BBSE's always is), else keeps the reference;
    5 rows of 5 classes: no shift."""
    train = model.class_counts_ / model.class_counts_.sum()
    found = 0
    for name in ("estimate", "estimate-bbse"):
        for start in range(0, 50, 5):
            model.set_test_prior(name, data.X_test[start : start + 5])
            info = model.test_prior_estimate_
            assert info["rows"] == 5 and info["shrinkage_rows"] == SHRINK_PER_CLASS * C
            if name == "estimate" and not info["shift_test"]["shift_detected"]:
                np.testing.assert_array_equal(model.test_prior_, np.full(C, 1 / C))
                continue
            found += name == "estimate"
            # 5 rows against m = 10 C = 100 pseudo-rows: at most 5/105 of the mass moves
            assert np.abs(model.test_prior_ - train).sum() <= 2 * 5 / 105 + 1e-9
    assert found <= 2
    model.set_test_prior("estimate", data.X_test[np.arange(5) * 4000 + 7])
    assert not model.test_prior_estimate_["shift_test"]["shift_detected"]
    for name in ("estimate", "estimate-bbse"):
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
    assert loaded.bcts_.temperature == model.bcts_.temperature
    np.testing.assert_array_equal(loaded.bcts_.bias, model.bcts_.bias)
    np.testing.assert_array_equal(loaded.bcts_.null_weights, model.bcts_.null_weights)
    assert loaded.test_prior_estimate_["shift_test"]["shift_detected"]
    np.testing.assert_array_equal(loaded.predict(data.X_test), model.predict(data.X_test))
    model.set_test_prior("train")
    assert model.test_prior_estimate_ is None
    model.set_test_prior(None)


def _edited_copy(saved, folder, edit):
    folder.mkdir()
    for name in ("model.safetensors", "model.json"):
        (folder / name).write_bytes((saved / name).read_bytes())
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_a_model_saved_before_bcts_loads_and_estimates_on_the_temperature(model, data, tmp_path):
    """A model.json without ``bcts`` (written before it existed) loads with none; its EM
    estimate is the temperature's, as before. A damaged ``bcts`` is refused at load."""
    X = data.X_test[:3000]
    saved = model.save(tmp_path / "m")

    def before_bcts(meta):
        del meta["bcts"]

    old = DLSAClassifier.load(_edited_copy(saved, tmp_path / "old", before_bcts))
    assert old.bcts_ is None and old.temperature_ == model.temperature_
    old.set_test_prior("estimate", X)
    assert old.test_prior_estimate_["calibration"] == "temperature"
    bcts, model.bcts_ = model.bcts_, None
    try:
        again = model.set_test_prior("estimate", X).test_prior_
        np.testing.assert_allclose(old.test_prior_, again)
        np.testing.assert_array_equal(old.predict(X), model.predict(X))
    finally:
        model.bcts_ = bcts
        model.set_test_prior(None)
    model.set_test_prior("estimate", X)
    with_estimate = model.save(tmp_path / "e")
    model.set_test_prior(None)

    def before_the_test(meta):
        del meta["bcts"]["null_weights"]

    untested = DLSAClassifier.load(_edited_copy(with_estimate, tmp_path / "nt", before_the_test))
    assert untested.bcts_.null_weights is None
    untested.set_test_prior("estimate", data.X_test)  # the balanced pool: Wilks finds a shift
    assert untested.test_prior_estimate_["shift_test"]["null"] == "chi2"
    assert untested.test_prior_estimate_["shift_test"]["shift_detected"]
    bad = {
        "missing": before_bcts,
        "length": lambda meta: meta["bcts"].update(bias=[0.0] * (C - 1)),
        "temperature": lambda meta: meta["bcts"].update(temperature=-1.0),
        "tiny": lambda meta: meta["bcts"]["bias"].__setitem__(0, 1e-300),
        "weights": lambda meta: meta["bcts"]["null_weights"].__setitem__(0, -1.0),
        "weights-length": lambda meta: meta["bcts"].update(null_weights=[0.0] * C),
    }
    weights_message = f"bcts.null_weights must be at most {C - 1} finite numbers >= 0"
    messages = {
        "missing": "made with BCTS, but bcts is missing",
        "length": f"bcts.bias must be {C} finite numbers",
        "temperature": "bcts must be",
        "tiny": "bcts.bias[0] = 1e-300 is 0",
        "weights": weights_message,
        "weights-length": weights_message,
    }
    for name, edit in bad.items():
        with pytest.raises(ModelFileError, match=re.escape(messages[name])):
            DLSAClassifier.load(_edited_copy(with_estimate, tmp_path / name, edit))


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
    assert record["test_prior_estimate"]["shift_test"]["shift_detected"]
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
