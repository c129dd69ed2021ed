"""Calibration: ECE / NLL / Brier against their formulas, accumulation by chunks,
temperature scaling (recovers a known temperature, never worsens held-out NLL, keeps the
predicted classes, survives save / load), and the CLI's --calibrate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlsa import DLSAClassifier
from dlsa.cascade.temperature import fit_temperature, nll_at
from dlsa.cli import main
from dlsa.config import HeadConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import ModelFileError
from dlsa.io.features import save_features
from dlsa.metrics.calibration import CalibrationCounts, calibration_report


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(2, 5), st.integers(0, 10_000), st.integers(1, 20))
def test_ece_nll_brier_equal_their_formulas_and_chunks_add_up(n, c, seed, n_bins):
    rng = np.random.default_rng(seed)
    proba = _softmax(3 * rng.normal(size=(n, c)))
    y = rng.integers(0, c, n)
    got = calibration_report(proba, y, n_bins)
    conf, hit = proba.max(1), (proba.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        upper = conf <= edges[b + 1] if b == n_bins - 1 else conf < edges[b + 1]
        in_bin = (conf >= edges[b]) & upper
        if in_bin.any():
            ece += in_bin.mean() * abs(hit[in_bin].mean() - conf[in_bin].mean())
    onehot = np.eye(c)[y]
    assert got["ece"] == pytest.approx(ece, abs=1e-9)
    assert got["nll"] == pytest.approx(-np.log(proba[np.arange(n), y]).mean())
    assert got["brier"] == pytest.approx(((proba - onehot) ** 2).sum(1).mean())
    assert sum(b["n"] for b in got["bins"]) == n
    chunked = CalibrationCounts(n_bins)
    for idx in np.array_split(np.arange(n), 3):
        chunked.update(proba[idx], y[idx])
    again = chunked.compute()
    assert again["ece"] == pytest.approx(got["ece"]) and again["nll"] == pytest.approx(got["nll"])


def test_a_perfectly_calibrated_predictor_has_zero_ece():
    proba = np.tile([[0.75, 0.25]], (8, 1))  # confidence 0.75, right 6 of 8 times
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert calibration_report(proba, y)["ece"] == pytest.approx(0.0)


def test_temperature_minimises_nll_and_ignores_impossible_samples():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 3000)
    logits = 5.0 * (2.0 * np.eye(4)[y] + rng.normal(size=(3000, 4)))  # over-confident
    t = fit_temperature(logits, y)
    assert t > 2.0
    for other in (0.5 * t, 0.9 * t, 1.1 * t, 2.0 * t, 1.0):
        assert nll_at(np.log(t), logits, y) <= nll_at(np.log(other), logits, y) + 1e-9
    masked = logits.copy()
    masked[:10, :] = -np.inf
    masked[:10, (y[:10] + 1) % 4] = 0.0  # the true class is impossible: left out
    assert fit_temperature(masked, y) == pytest.approx(
        fit_temperature(logits[10:], y[10:]), rel=1e-3
    )


@pytest.fixture(scope="module")
def fitted():
    d = make_long_tailed_features(n_classes=6, n_features=5, n_max=200, imbalance=20,
                                  n_test_per_class=40, seed=4)  # fmt: skip
    clf = DLSAClassifier(depth=0, base="ce", selection=None, head=HeadConfig(epochs=60))
    return d, clf.fit(d.X_train, d.y_train)


def test_calibrate_on_a_validation_set_lowers_its_nll_and_keeps_the_classes(fitted, tmp_path):
    d, clf = fitted
    Xv, yv, Xt = d.X_test[::2], d.y_test[::2], d.X_test[1::2]
    before_pred, before = clf.predict(Xt), calibration_report(clf.predict_proba(Xv), yv)
    clf.calibrate(Xv, yv)
    after = calibration_report(clf.predict_proba(Xv), yv)
    assert clf.temperature_ is not None and clf.temperature_ != 1.0
    assert after["nll"] <= before["nll"]
    np.testing.assert_array_equal(clf.predict(Xt), before_pred)
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.temperature_ == clf.temperature_
    np.testing.assert_allclose(loaded.predict_proba(Xt), clf.predict_proba(Xt), rtol=1e-6)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["temperature"] = -1.0
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="temperature"):
        DLSAClassifier.load(tmp_path / "m")


def test_calibrate_out_of_fold_fits_on_training_data_only(fitted):
    d, clf = fitted
    oof = DLSAClassifier(**clf.get_params()).fit(d.X_train, d.y_train)
    oof.calibrate_out_of_fold(d.X_train, d.y_train, folds=3)
    assert oof.temperature_ is not None and 0.05 < oof.temperature_ < 20
    with pytest.raises(ValueError, match="not a training class"):
        oof.calibrate(d.X_test[:5], np.full(5, 99))


def test_fit_calibrate_reports_calibration_and_evaluate_prints_it(fitted, tmp_path, capsys):
    d, _ = fitted
    for name, X, y in (("train", d.X_train, d.y_train), ("val", d.X_test[::2], d.y_test[::2]),
                       ("test", d.X_test[1::2], d.y_test[1::2])):  # fmt: skip
        save_features(tmp_path / f"{name}.h5", X, y)
    out = tmp_path / "run"
    argv = ["-q", "fit", "--train", str(tmp_path / "train.h5"), "--val", str(tmp_path / "val.h5"),
            "--test", str(tmp_path / "test.h5"), "--out", str(out), "--calibrate",
            "--no-selection", "--base", "ce", "--depth", "0", "--head.epochs", "20"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["calibrated_on"] == "--val"
    for key in ("base", "dlsa"):
        assert results[key]["temperature"] > 0
        assert 0 <= results[key]["calibration"]["ece"] <= 1
    assert "ECE (%)" in text and "Calibration" in (out / "report.md").read_text()
    assert main(["-q", "evaluate", "--model", str(out / "model"),
                 "--features", str(tmp_path / "test.h5")]) == 0  # fmt: skip
    assert "ECE (%)" in capsys.readouterr().out
