"""``logreg``: class-balanced L2 logistic regression with a tuned C (issue 29), and the
selection's prior guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dlsa import DLSAClassifier
from dlsa.config import SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError
from dlsa.selection.rule import Candidate, choose
from dlsa.selection.search import guard
from dlsa.selection.shift import head_shift, rarer_classes
from dlsa.stage2.bases import make_base
from dlsa.stage2.bases.logreg import PathHead


@pytest.fixture(scope="module")
def small():
    return make_long_tailed_features(
        n_classes=8, n_features=6, n_max=120, imbalance=20, separation=1.2, seed=3
    )


def _fit(split, **base_params):
    clf = DLSAClassifier(
        base="logreg", base_params=base_params, depth=0, selection=None, random_state=0
    )
    return clf.fit(split.X_train, split.y_train)


@pytest.mark.parametrize("loss_c", [0.01, 1.0])
def test_the_weighted_objective_has_scikit_learns_minimiser(small, loss_c):
    """Same data term and penalty as LogisticRegression(C, class_weight="balanced") on
    standardised inputs (ours divides the objective by C N): the same probabilities."""
    clf = _fit(small, c=loss_c, max_iter=500, tol=1e-7)
    scaler = StandardScaler().fit(small.X_train)
    ref = LogisticRegression(C=loss_c, class_weight="balanced", tol=1e-10, max_iter=10_000)
    ref.fit(scaler.transform(small.X_train), small.y_train)
    expected = ref.predict_proba(scaler.transform(small.X_test))
    np.testing.assert_allclose(clf.predict_proba(small.X_test), expected, atol=2e-3)


def test_a_path_variant_is_the_fit_at_that_c_bit_for_bit(small):
    """The selection fits the path once (inner_folds=0) and reads C post hoc: the
    variant at C predicts exactly what a fit at that C predicts."""
    path = _fit(small, inner_folds=0)
    head = path.cascade_.fallback.head
    assert isinstance(head, PathHead) and head.path_c.numel() == len(make_base("logreg").cs)
    for c in (0.003, 0.1):
        variant = path.cascade_.with_base(make_base("logreg", {"c": c}))
        alone = _fit(small, c=c).cascade_
        x = torch.as_tensor(small.X_test)
        assert torch.equal(variant.fallback(x, None), alone.fallback(x, None))
        assert float(variant.fallback.head.c) == pytest.approx(c)


def test_c_is_chosen_on_inner_folds_and_recorded(small):
    clf = _fit(small)
    c = float(clf.cascade_.fallback.head.c)
    assert min(make_base("logreg").cs) <= c <= max(make_base("logreg").cs)
    assert any(np.isclose(c, v) for v in make_base("logreg").cs)
    again = _fit(small)
    proba = clf.predict_proba(small.X_test)
    np.testing.assert_array_equal(proba, again.predict_proba(small.X_test))


def test_strong_regularisation_helps_classes_of_five_samples():
    """The reason for the method: with 5-sample classes in 64 dimensions a tuned C
    beats Balanced Softmax's fixed weight decay on a balanced test set."""
    split = make_long_tailed_features(
        n_classes=40, n_features=64, n_max=200, imbalance=40, modes_per_class=1,
        separation=0.45, n_test_per_class=40, seed=0,
    )  # fmt: skip
    tuned = _fit(split)
    bsm = DLSAClassifier(base="balsoftmax", depth=0, selection=None, random_state=0)
    bsm.fit(split.X_train, split.y_train)
    assert tuned.score(split.X_test, split.y_test) > bsm.score(split.X_test, split.y_test) + 0.02


def test_bad_hyper_parameters_fail_in_one_line():
    for bad in ({"c": 0.0}, {"cs": ()}, {"inner_folds": 1}, {"objective": "hinge"}, {"tol": 0.0}):
        with pytest.raises(ValueError, match="logreg"):
            make_base("logreg", bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"c": "x"},
        {"c": True},
        {"c": 1e-320},
        {"cs": 5},
        {"cs": "ab"},
        {"cs": [1.0, None]},
        {"cs": [1e40]},
        {"inner_folds": 2.5},
        {"inner_folds": True},
        {"max_iter": 1.5},
        {"max_iter": 2**40},
        {"tol": float("inf")},
        {"tol": "x"},
    ],  # fmt: skip
)
def test_hyper_parameters_of_another_type_or_beyond_float32_are_refused(bad):
    """As JSON ``--base-params`` give them: one DLSAInputError before any fit, never a
    TypeError or an overflow in training."""
    with pytest.raises(DLSAInputError, match="logreg"):
        make_base("logreg", bad)


def test_a_grid_given_as_a_list_is_kept_as_a_tuple():
    assert make_base("logreg", {"cs": [0.1, 1]}).cs == (0.1, 1)


# ---------------------------------------------------------------------------- prior guard
def test_head_shift_counts_the_flow_between_the_halves():
    counts = np.array([100, 50, 5, 2])  # rarer half: classes 2 and 3
    rarer = rarer_classes(counts)
    assert rarer.tolist() == [False, False, True, True]
    ref = np.array([2, 3, 2, 0, 1, 3])
    pred = np.array([0, 1, 2, 0, 3, 3])  # two rows leave the rarer half, one enters it
    assert head_shift(pred, ref, rarer) == {"to_head": 2, "to_tail": 1, "shift_z": 0.577}


def _shifted_candidates(n_moves: int):
    """A reference and a departure that is right more often out of fold by moving
    rarer-class predictions to the head (the memorised-features trap)."""
    y = np.repeat([0, 1, 2, 3], [400, 300, 40, 30])
    ref = y.copy()
    ref[:60] = 2  # the reference sends 60 head samples to a rare class
    better = ref.copy()
    better[:n_moves] = 0  # the departure takes them back to the head
    return y, [Candidate("ref", {}, ref), Candidate("headward", {}, better)]


def test_the_guard_refuses_a_departure_that_moves_predictions_to_the_head():
    y, cands = _shifted_candidates(60)
    counts = np.bincount(y)
    free = choose(cands, y, 4, margin=2.0, min_gain=0.002, counts=counts)
    guarded = choose(cands, y, 4, margin=2.0, min_gain=0.002, counts=counts, prior_guard=2.0)
    assert free[0] == 1 and guarded[0] == 0
    row = guarded[2][1]
    assert row["to_head"] == 60 and row["to_tail"] == 0 and row["prior_guard"]
    assert not row["eligible"]


def test_the_guard_is_off_on_a_validation_split_and_on_unseen_features():
    cfg = SelectionConfig()
    assert guard(cfg, "out-of-fold") == 2.0
    assert guard(cfg, "validation") is None
    assert guard(SelectionConfig(train_features="unseen"), "out-of-fold") is None
    assert guard(SelectionConfig(train_features="seen", prior_guard=None), "out-of-fold") is None


def test_a_validation_selection_reuses_the_path_fit_for_the_final_model(tmp_path, count_calls):
    """On a validation split the chosen ``logreg (c=...)`` is the path fit's solution:
    the final fit trains nothing more, keeps no path, predicts as a fresh fit at that C
    and round-trips through save / load."""
    from dlsa.stage2.bases.logreg import BalancedLogisticRegression as LR

    d = make_long_tailed_features(
        n_classes=12, n_features=6, n_max=80, imbalance=20, n_test_per_class=10, seed=4
    )
    val = make_long_tailed_features(
        n_classes=12, n_features=6, n_max=80, imbalance=20, n_test_per_class=6, seed=4
    )
    runs = count_calls(LR, "_minimise")
    clf = DLSAClassifier(depth=0, selection=SelectionConfig(bases=("logreg",)), random_state=0)
    clf.fit(d.X_train, d.y_train, X_val=val.X_test, y_val=val.y_test)
    assert clf.fitted_params_["base"] == "logreg" and len(runs) == len(LR().cs)
    assert clf.fallback_.head.path_c.numel() == 0
    fresh = DLSAClassifier(**clf.fitted_params_).fit(d.X_train, d.y_train)
    np.testing.assert_array_equal(clf.predict_proba(d.X_test), fresh.predict_proba(d.X_test))
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(d.X_test), clf.predict_proba(d.X_test))
