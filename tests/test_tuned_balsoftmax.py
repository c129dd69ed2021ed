"""``balsoftmax-tuned``: Balanced Softmax by L-BFGS with C chosen by held-out balanced
log-loss, alone and as a selection candidate (its C chosen on the selection's evidence)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlsa import DLSAClassifier
from dlsa.cascade import resolve
from dlsa.config import SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine.splits import stratified_folds
from dlsa.selection.candidates import tuned_variant, tunes_on_log_loss
from dlsa.selection.folds import out_of_fold
from dlsa.selection.rule import Candidate
from dlsa.stage2.bases import make_base
from dlsa.stage2.bases._base import balanced_mean
from dlsa.stage2.bases.tuned_balsoftmax import TUNED_GRID


def _tuned(split, **params):
    clf = DLSAClassifier(
        base="balsoftmax-tuned", base_params=params, depth=0, selection=None, random_state=0
    )
    return clf.fit(split.X_train, split.y_train)


def test_it_is_logreg_with_the_balanced_softmax_loss_and_a_log_loss_criterion():
    base = make_base("balsoftmax-tuned")
    assert (base.objective, base.criterion, base.cs) == ("balsoftmax", "log-loss", TUNED_GRID)
    assert tunes_on_log_loss("balsoftmax-tuned") and not tunes_on_log_loss("logreg")
    with pytest.raises(ValueError, match="criterion"):
        make_base("logreg", {"criterion": "auc"})


def test_balanced_mean_weights_every_class_alike():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0])
    target = torch.tensor([2, 2, 2, 0])
    assert balanced_mean(values, target) == pytest.approx((2.0 + 10.0) / 2)


def test_log_loss_chooses_strong_regularisation_for_noise_and_weak_for_clean_classes():
    """Classes of 3-6 samples in 64 noisy dimensions need the strongest penalty; well
    separated classes of 200 samples the weakest of the grid."""
    noisy = make_long_tailed_features(
        n_classes=20, n_features=64, n_max=6, imbalance=2, separation=0.1, seed=0
    )
    clean = make_long_tailed_features(
        n_classes=4, n_features=4, n_max=200, imbalance=1, separation=8.0, seed=0
    )
    c_noisy = float(_tuned(noisy).cascade_.fallback.head.c)
    c_clean = float(_tuned(clean).cascade_.fallback.head.c)
    assert c_noisy <= 0.01 and c_clean >= 3.0


def test_the_tuned_variant_has_the_lowest_balanced_log_loss_over_rows_all_scored():
    y = np.array([0, 0, 0, 1, 2])
    pred = np.zeros(5, dtype=np.int64)
    a = Candidate("a", {}, pred, nll=np.array([1.0, 1.0, 1.0, 3.0, np.nan]))
    b = Candidate("b", {}, pred, nll=np.array([0.0, 0.0, 6.0, 2.0, 0.0]))
    best, losses = tuned_variant([a, b], y)  # row 4 is left out of both
    assert losses == {"a": pytest.approx(2.0), "b": pytest.approx(((6 / 3) + 2.0) / 2)}
    assert best is a  # a tie goes to the first (stronger regularisation)


def test_out_of_fold_log_losses_are_those_of_the_fold_models_and_nan_for_unknown_classes():
    """Recorded for a base that tunes on log-loss, and only for such a base."""
    d = make_long_tailed_features(n_classes=5, n_features=4, n_max=40, imbalance=10, seed=1)
    X, y = d.X_train, d.y_train.copy()
    y[np.flatnonzero(y == 4)[1:]] = 3  # class 4: one sample, unknown to the fold lacking it
    folds = stratified_folds(y, 2, seed=0)
    tuned = {"base": "balsoftmax-tuned", "base_params": {"c": 0.1}}
    params = DLSAClassifier(**tuned, depth=0, selection=None).get_params()
    found, models = out_of_fold(resolve(params), X, y, folds)
    nll = found[0].nll
    plain = DLSAClassifier(base="balsoftmax", depth=0, selection=None).get_params()
    assert out_of_fold(resolve(plain), X, y, folds)[0][0].nll is None  # not recorded
    lone = int(np.flatnonzero(y == 4)[0])
    assert np.isnan(nll[lone]) and np.isfinite(np.delete(nll, lone)).all()
    for model, held in zip(models, folds, strict=True):
        rows = held[y[held] != 4]
        logits, _ = model.logits_and_stage(torch.as_tensor(X[rows]))
        expected = -torch.log_softmax(logits.double(), 1)[torch.arange(len(rows)), y[rows]]
        np.testing.assert_allclose(nll[rows], expected.numpy(), rtol=1e-6)


def test_in_the_selection_it_is_one_candidate_whose_c_has_the_lowest_log_loss():
    d = make_long_tailed_features(
        n_classes=10, n_features=8, n_max=100, imbalance=20, n_test_per_class=10, seed=2
    )
    sel = SelectionConfig(bases=("balsoftmax-tuned", "balsoftmax"))
    clf = DLSAClassifier(depth=0, selection=sel, random_state=0).fit(d.X_train, d.y_train)
    rnd = clf.selection_["rounds"][0]
    names = [c["name"] for c in rnd["candidates"]]
    assert len(names) == 2 and names[1] == "balsoftmax"
    losses = rnd["log_loss"]["balsoftmax-tuned"]
    assert len(losses) == len(TUNED_GRID)
    assert names[0] == min(losses, key=losses.get) == rnd["reference"]
    assert clf.fitted_params_["base"] == "balsoftmax-tuned"  # the reference is kept here
    fresh = DLSAClassifier(**clf.fitted_params_).fit(d.X_train, d.y_train)
    np.testing.assert_array_equal(clf.predict(d.X_test), fresh.predict(d.X_test))
