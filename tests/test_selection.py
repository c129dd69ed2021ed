"""Out-of-fold model selection: the paired statistic, the rule, and the reuse shortcuts
(post-hoc tau, one filter for every routed share) against fits made from scratch."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlsa import DLSAClassifier
from dlsa.cascade import resolve, selection_of
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, MixtureConfig, SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine.splits import stratified_folds
from dlsa.errors import DLSAInputError
from dlsa.selection import (
    Candidate,
    balanced_accuracy,
    choose,
    out_of_fold,
    paired_gain,
    tau_variants,
)

FLT = FilterConfig(
    mixture=MixtureConfig(n_components=10, sigma=0.5), epochs=3, batch_size=128, lr=0.2
)
HEAD = HeadConfig(epochs=4, batch_size=128)


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(
        n_classes=8, n_features=6, n_max=120, imbalance=20, n_test_per_class=10, seed=3
    )


def fixed(**kw):
    cfg = DLSAConfig(flow_filter=FLT, head=HEAD, selection=None, base="balsoftmax")
    return cfg.estimator_params() | kw


labels = st.lists(st.integers(0, 3), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels, st.randoms(use_true_random=False))
def test_paired_gain_is_the_difference_of_balanced_accuracies(y, rnd):
    y = np.array(y)
    a = np.array([rnd.randrange(4) for _ in y])
    b = np.array([rnd.randrange(4) for _ in y])
    gain, se = paired_gain(a, b, y, 4)
    assert gain == pytest.approx(balanced_accuracy(a, y, 4) - balanced_accuracy(b, y, 4))
    assert se >= 0
    assert paired_gain(a, a, y, 4, floor=False) == (0.0, 0.0)
    # identical predictions: no gain, and the floor's pseudo-pair per class
    n = np.bincount(y, minlength=4)[np.bincount(y, minlength=4) > 0]
    floor = np.sqrt(np.sum(2.0 / ((n + 1.0) * (n + 2.0)))) / len(n)
    assert paired_gain(a, a, y, 4) == (0.0, pytest.approx(floor))


def test_standard_error_matches_the_per_class_variance_formula():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [40, 10, 3])
    a, b = rng.integers(0, 3, y.size), rng.integers(0, 3, y.size)
    d = (a == y).astype(float) - (b == y).astype(float)
    var = sum(d[y == c].var(ddof=1) / (y == c).sum() for c in range(3))
    assert paired_gain(a, b, y, 3, floor=False)[1] == pytest.approx(np.sqrt(var) / 3)

    def floored(c: int) -> float:
        dc = np.concatenate([d[y == c], [1.0, -1.0]])  # one pseudo-pair each way
        return max(d[y == c].var(ddof=1) / (y == c).sum(), dc.var(ddof=1) / dc.size)

    assert paired_gain(a, b, y, 3)[1] == pytest.approx(np.sqrt(sum(map(floored, range(3)))) / 3)


def test_on_a_validation_split_the_floor_keeps_a_head_only_gain_from_departing():
    """choose(floor=True), as the selection calls it on a validation split: a departure
    that gains only in the head class and agrees on two classes of 6 is clear without
    the floor and not eligible with it."""
    y = np.repeat([0, 1, 2], [400, 6, 6])
    ref = y.copy()
    ref[:20] = 1
    cands = [Candidate("ref", {}, ref), Candidate("head-only", {}, y.copy())]
    assert choose(cands, y, 3, margin=2.0, min_gain=0.002)[0] == 1
    assert choose(cands, y, 3, margin=2.0, min_gain=0.002, floor=True)[0] == 0


def test_a_rare_class_without_discordant_samples_does_not_read_as_a_known_gain():
    """The demo's miss: a departure that differs from the reference only in head classes
    had s.e. 0 on the rare classes; with the floor their share of the s.e. stays."""
    y = np.repeat([0, 1, 2], [400, 6, 6])
    ref = y.copy()
    ref[:40] = 1  # the reference misses 40 head samples
    cand = y.copy()  # the candidate gets them, and agrees on the rare classes
    gain, se_plain = paired_gain(cand, ref, y, 3, floor=False)
    _, se = paired_gain(cand, ref, y, 3)
    assert gain == pytest.approx(0.1 / 3)
    assert se > 3 * se_plain  # two classes of 6 keep a visible uncertainty


def _cands(y, *hit_rates, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, rate in enumerate(hit_rates):
        pred = np.where(rng.random(y.size) < rate, y, (y + 1) % 2)
        out.append(Candidate(f"c{i}", {"i": i}, pred))
    return out


def test_rule_keeps_the_simpler_candidate_on_a_tie_and_on_a_small_gain():
    y = np.repeat([0, 1], 200)
    same = _cands(y, 0.8)
    twin = Candidate("twin", {}, same[0].pred.copy())
    idx, reason, rows = choose([same[0], twin], y, 2, margin=2.0, min_gain=0.0)
    assert idx == 0 and rows[0]["chosen"] and not rows[1]["chosen"]
    # one extra hit in 400 is a real gain of 0.25 points but far below 2 standard errors
    better = same[0].pred.copy()
    wrong = np.flatnonzero(better != y)[0]
    better[wrong] = y[wrong]
    mixed = better.copy()
    mixed[np.flatnonzero(better == y)[:40]] = 1 - y[np.flatnonzero(better == y)[:40]]
    mixed[np.flatnonzero(better != y)[:41]] = y[np.flatnonzero(better != y)[:41]]
    idx, reason, _ = choose([same[0], Candidate("b", {}, mixed)], y, 2, margin=2.0, min_gain=0)
    assert idx == 0 and "reference is kept" in reason


def test_rule_departs_for_a_clear_gain_and_picks_the_simplest_near_the_best():
    y = np.repeat([0, 1], 300)
    ref, good, better = _cands(y, 0.6, 0.9, 0.9)
    better.pred = good.pred.copy()
    better.pred[np.flatnonzero(good.pred != y)[:2]] = y[np.flatnonzero(good.pred != y)[:2]]
    idx, reason, rows = choose([ref, good, better], y, 2, margin=2.0, min_gain=0.002)
    assert idx == 1  # 'better' is best, but not clearly better than the simpler 'good'
    assert rows[1]["gain"] > 2 * rows[1]["se"]
    idx, _, _ = choose([ref, good], y, 2, margin=2.0, min_gain=0.002)
    assert idx == 1


def _flip_hits(pred, y, idx, hit):
    out = pred.copy()
    out[idx] = y[idx] if hit else 1 - y[idx]
    return out


def test_a_departure_must_itself_beat_the_reference():
    # 'twin' is as accurate as the reference but disagrees with everything; 'best' beats
    # the reference clearly but not the noisy 'twin'. The simplest candidate that 'best'
    # does not clearly beat is 'twin', a departure never shown to beat the reference:
    # it must not be chosen.
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 400)
    ref = Candidate("ref", {}, np.where(rng.random(800) < 0.7, y, 1 - y))
    twin = Candidate("twin", {}, np.where(rng.random(800) < 0.7, y, 1 - y))
    fixes = np.flatnonzero(ref.pred != y)[::10]
    best = Candidate("best", {}, _flip_hits(ref.pred, y, fixes, True))
    g_twin, se_twin = paired_gain(best.pred, twin.pred, y, 2)
    assert g_twin <= 2 * se_twin  # the premise: best does not clearly beat twin
    idx, _, rows = choose([ref, twin, best], y, 2, margin=2.0, min_gain=0.002)
    assert rows[2]["gain"] > 2 * rows[2]["se"] and not rows[1]["eligible"]
    assert idx == 2


def test_a_departure_that_loses_on_the_rarer_half_is_not_eligible():
    y = np.repeat([0, 1], [600, 60])  # class 1 is the rarer half
    ref = Candidate("ref", {}, _flip_hits(y, y, np.arange(0, 300), False))  # head 50%
    trade = _flip_hits(y, y, np.arange(600, 610), False)  # head 100%, tail 60 -> 50 hits
    cand = Candidate("trade", {}, trade)
    idx, reason, rows = choose([ref, cand], y, 2, margin=2.0, min_gain=0.002)
    assert rows[1]["gain"] > 2 * rows[1]["se"] and rows[1]["tail_gain"] < 0
    assert idx == 0 and not rows[1]["eligible"] and "rarer half" in reason


def test_post_hoc_tau_variants_equal_models_fitted_with_that_tau(data):
    y = np.unique(data.y_train, return_inverse=True)[1]
    folds = stratified_folds(y, 2, seed=0)
    params = fixed(depth=0, base="tau-norm", base_params={})
    cands, _ = out_of_fold(
        resolve(params), data.X_train, y, folds, variants=tau_variants("tau-norm", (0.5, 1.5))
    )
    direct, _ = out_of_fold(
        resolve(params | {"base_params": {"tau": 1.5}}), data.X_train, y, folds
    )
    assert [c.params["base_params"]["tau"] for c in cands] == [0.5, 1.5]
    np.testing.assert_array_equal(cands[1].pred, direct[0].pred)
    assert not np.array_equal(cands[0].pred, cands[1].pred)


def test_filters_and_base_reused_across_routed_shares_equal_fits_from_scratch(data):
    X, y = data.X_train, data.y_train
    donor = DLSAClassifier(**fixed(depth=1, residual=True)).fit(X, y)
    reused = DLSAClassifier(**fixed(depth=1, residual=True, routed_share=0.5))
    reused.fit(X, y, reuse_filters=donor)
    fresh = DLSAClassifier(**fixed(depth=1, residual=True, routed_share=0.5)).fit(X, y)
    np.testing.assert_array_equal(
        reused.predict_proba(data.X_test), fresh.predict_proba(data.X_test)
    )
    assert fresh.reports_[0]["n_routed"] == reused.reports_[0]["n_routed"]
    assert reused.filters_[0] is not donor.filters_[0]  # the donor keeps its threshold
    assert donor.fitted_params_["routed_share"] == 0.3
    assert reused.filters_[0].config == donor.filters_[0].config  # the share is the level's
    assert float(reused.filters_[0].threshold) != float(donor.filters_[0].threshold)


def test_auto_selects_a_better_base_than_a_poor_reference_and_records_why(data, tmp_path):
    sel = SelectionConfig(folds=2, bases=("ce", "balsoftmax"), proportions=(0.3,))
    clf = DLSAClassifier(**(fixed(base="auto", depth=1) | {"selection": sel}))
    clf.fit(data.X_train, data.y_train)
    ev = clf.selection_
    assert [r["what"] for r in ev["rounds"]] == ["base method", "DLSA on the chosen base"]
    base_round = ev["rounds"][0]
    assert [c["name"] for c in base_round["candidates"]] == ["ce", "balsoftmax"]
    assert sum(c["chosen"] for c in base_round["candidates"]) == 1
    chosen = clf.fitted_params_
    assert chosen["selection"] is None and chosen["base"] in ("ce", "balsoftmax")
    assert ev["chosen"].startswith(chosen["base"])
    # the evidence and the concrete model survive save / load
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.selection_ == ev and loaded.base == chosen["base"]
    np.testing.assert_array_equal(loaded.predict(data.X_test), clf.predict(data.X_test))


def test_estimator_defaults_are_the_default_config():
    sig = inspect.signature(DLSAClassifier.__init__).parameters
    cfg = DLSAConfig()
    for name, value in cfg.estimator_params().items():
        default = sig[name].default
        if name in ("flow_filter", "head", "base_params") and default is None:
            continue
        if name == "selection":
            assert default == "default"
            continue
        assert default == value, name
    params = DLSAClassifier().get_params()
    assert selection_of(params) == cfg.selection
    assert resolve(params).flow_filter == cfg.flow_filter
    assert resolve(params).head == cfg.head


def test_auto_base_without_selection_is_refused(data):
    with pytest.raises(ValueError, match="auto"):
        DLSAClassifier(base="auto", selection=None).fit(data.X_train, data.y_train)


def test_dlsa_round_on_a_post_hoc_base_reuses_its_fold_models(data):
    sel = SelectionConfig(folds=2, proportions=(0.3, 0.99))
    params = fixed(base="logit-adjust", base_params={"tau": 1.25}, depth=1)
    clf = DLSAClassifier(**(params | {"selection": sel})).fit(data.X_train, data.y_train)
    (rnd,) = clf.selection_["rounds"]
    assert [c["name"] for c in rnd["candidates"]] == [
        "logit-adjust (tau=1.25)",
        "logit-adjust (tau=1.25) + DLSA (depth 1, 30% routed)",
        "logit-adjust (tau=1.25) + DLSA (depth 1, 99% routed)",
    ]
    assert clf.base_.tau == 1.25


def test_classes_of_two_samples_survive_three_folds():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), [40, 30, 20, 3, 2, 2])
    X = (rng.normal(size=(y.size, 4)) + y[:, None]).astype(np.float32)
    sel = SelectionConfig(folds=3, bases=("balsoftmax", "ce"), proportions=(0.5,))
    flt = dataclasses.replace(FLT, mixture=MixtureConfig(n_components=4, sigma=0.5))
    clf = DLSAClassifier(**(fixed(base="auto", flow_filter=flt) | {"selection": sel}))
    assert clf.fit(X, y).predict(X).shape == y.shape
    assert len(clf.selection_["rounds"]) == 2


def test_base_names_are_the_registered_methods():
    import typing

    from dlsa.config import BASE_NAMES, BaseName
    from dlsa.stage2.bases import BASES

    assert set(BASE_NAMES) == set(BASES)
    assert set(typing.get_args(BaseName)) == {"auto", *BASES}


def test_a_dlsa_candidate_that_diverges_is_skipped_and_the_standardized_one_trains(data):
    X = data.X_train * 1e4 + 1e4  # features of a large scale and offset
    flt = dataclasses.replace(FLT, lr=0.05)
    sel = SelectionConfig(bases=("balsoftmax",), proportions=(0.3,), folds=2)
    params = {"base": "auto", "depth": 1, "selection": sel, "head": HEAD, "random_state": 0}
    raw = DLSAClassifier(**params, flow_filter=flt).fit(X, data.y_train)
    dlsa_round = raw.selection_["rounds"][-1]
    assert [row["name"] for row in dlsa_round["skipped"]] == [
        "balsoftmax + DLSA (depth 1, 30% routed)"
    ]
    assert "non-finite" in dlsa_round["skipped"][0]["error"]
    assert raw.selection_["chosen"] == "balsoftmax" and not raw.filters_
    std = dataclasses.replace(flt, standardize=True)
    fixed = DLSAClassifier(**params, flow_filter=std).fit(X, data.y_train)
    assert fixed.selection_["rounds"][-1]["skipped"] == []
    assert len(fixed.selection_["rounds"][-1]["candidates"]) == 2


def test_a_chosen_dlsa_that_diverges_on_all_the_data_falls_back_to_its_base(data, monkeypatch):
    from dlsa.errors import TrainingDivergedError
    from dlsa.stage2.filter import FlowFilter

    n_all, fit = len(data.y_train), FlowFilter.fit

    def diverges_on_all(self, x, y, **kw):
        if x.shape[0] == n_all:  # fold fits train, the final fit on all the data does not
            raise TrainingDivergedError("diverged (test)")
        return fit(self, x, y, **kw)

    monkeypatch.setattr(FlowFilter, "fit", diverges_on_all)
    sel = SelectionConfig(bases=("balsoftmax",), proportions=(0.99,), folds=2, margin=-1e9,
                          min_gain=-1.0, prior_guard=None)  # fmt: skip
    params = {"base": "auto", "depth": 1, "selection": sel, "head": HEAD, "random_state": 0}
    clf = DLSAClassifier(**params, flow_filter=FLT).fit(data.X_train, data.y_train)
    assert clf.selection_["final_fit_diverged"] == "diverged (test)"
    assert clf.selection_["chosen"] == "balsoftmax" and not clf.filters_
    chosen = clf.selection_["rounds"][-1]["chosen"]
    assert "DLSA" in chosen  # what the selection chose before the final fit


def test_one_feature_selects_the_base_alone(data):
    sel = SelectionConfig(bases=("balsoftmax", "cbs"), proportions=(0.3,), folds=2)
    params = {"base": "auto", "depth": 1, "selection": sel, "head": HEAD, "random_state": 0}
    clf = DLSAClassifier(**params, flow_filter=FLT).fit(data.X_train[:, :1], data.y_train)
    assert not clf.filters_ and "DLSA" not in clf.selection_["chosen"]
    with pytest.raises(ValueError, match="1 feature"):
        DLSAClassifier(**fixed(depth=1)).fit(data.X_train[:, :1], data.y_train)


def test_fold_fits_in_worker_processes_choose_the_same(data, monkeypatch):
    """n_jobs=2 runs the fold fits in two loky workers (one torch thread each, as here):
    the evidence, the choice and the final model are those of fitting them here."""
    import dlsa.engine.parallel

    monkeypatch.setattr(
        dlsa.engine.parallel.os, "cpu_count", lambda: 2
    )  # 1 torch thread per worker
    sel = SelectionConfig(bases=("balsoftmax", "tau-norm", "cbs"), tau_grid=(0.5, 1.0))
    params = fixed(depth=1, base="auto", selection=sel, random_state=5)
    here = DLSAClassifier(**params).fit(data.X_train, data.y_train)
    pool = DLSAClassifier(**(params | {"n_jobs": 2})).fit(data.X_train, data.y_train)

    def evidence(clf):
        return [
            [(r["name"], r["balanced_accuracy"], r["gain"]) for r in rd["candidates"]]
            for rd in clf.selection_["rounds"]
        ]

    assert len(evidence(here)[0]) == 4 and evidence(pool) == evidence(here)
    assert pool.selection_["chosen"] == here.selection_["chosen"]
    np.testing.assert_array_equal(
        pool.decision_function(data.X_test), here.decision_function(data.X_test)
    )


# ------------------------------------------------------------------ multiplicity (issue 21)
def noisy_predictions(n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (n,), a reference's predictions (n,) and three candidates' (3, n), each
    right 70% of the time."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, n)
    ref = np.where(rng.random(n) < 0.7, y, (y + 1) % n_classes)
    preds = np.stack([np.where(rng.random(n) < 0.7, y, (y + 2) % n_classes) for _ in range(3)])
    return y, ref, preds


def test_gain_covariance_matches_paired_gain_and_an_explicit_sum():
    from dlsa.selection.multiplicity import gain_covariance
    from dlsa.selection.paired import paired_gain

    y, ref, preds = noisy_predictions(300, 5)
    gains, cov = gain_covariance(preds, ref, y, 5)
    for j in range(3):
        g, se = paired_gain(preds[j], ref, y, 5, floor=False)
        assert gains[j] == pytest.approx(g) and np.sqrt(cov[j, j]) == pytest.approx(se)
    d = (preds == y).astype(float) - (ref == y)
    explicit = sum(np.cov(d[:, y == c]) / (y == c).sum() for c in range(5)) / 25
    np.testing.assert_allclose(cov, explicit)


def test_max_t_threshold_is_the_quantile_of_the_largest_of_m_normals():
    from scipy.stats import norm

    from dlsa.selection.multiplicity import max_t_threshold

    for m in (1, 4, 17):  # independent: Phi(t)^m = 0.95
        expected = norm.ppf(0.95 ** (1 / m))
        assert max_t_threshold(np.eye(m), n_draws=200_000) == pytest.approx(expected, abs=0.02)
    same = np.ones((6, 6))  # six copies of one candidate cost nothing extra
    assert max_t_threshold(same, n_draws=200_000) == pytest.approx(norm.ppf(0.95), abs=0.02)
    assert max_t_threshold(np.zeros((2, 2))) == float("inf")


def test_max_t_rule_departs_less_often_by_luck_than_the_per_candidate_rule():
    """17 candidates equal in truth, 100 simulated sets: the per-candidate rule departs
    in about a fifth of them, max-t near its nominal 5% (benchmarks/studies/selection_nulls.py)."""
    from dlsa.selection.rule import Candidate, choose

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), np.round(500 * 0.1 ** (np.arange(10) / 9)).astype(int))
    p = np.linspace(0.95, 0.5, 10)[y]
    moved = {"per-candidate": 0, "max-t": 0}
    for _ in range(100):
        ref = rng.random(y.size) < p
        hits = [ref] + [np.where(rng.random(y.size) < 0.3, ref, rng.random(y.size) < p)
                        for _ in range(16)]  # fmt: skip
        cands = [Candidate(str(j), {}, np.where(h, y, (y + 1) % 10)) for j, h in enumerate(hits)]
        for rule in moved:
            moved[rule] += (
                choose(cands, y, 10, margin=2.0, min_gain=0.002, multiplicity=rule)[0] != 0
            )
    assert moved["per-candidate"] >= 12  # 19 of 100 here
    assert moved["max-t"] <= 10  # 6 of 100 here


# ------------------------------------------------------------ dropping between folds (issue 22)
@pytest.mark.parametrize("rule", ["futile", "behind"])
def test_dropping_behind_candidates_keeps_the_choice_and_the_model(data, rule):
    """Three folds, every base and DLSA candidate: with ``drop_behind`` the candidates
    that the drop rule rules out after a fold are not fitted on the next; the rounds'
    other evidence, the choice and the final model are those of fitting every candidate
    on every fold."""
    from dlsa.selection.search import drop_rule

    seen = []
    cfg = SelectionConfig(drop_behind=2.0, drop_rule=rule)
    kept = DLSAClassifier(**fixed(base="auto", depth=2, random_state=2,
                                  selection=SelectionConfig(drop_behind=None)))  # fmt: skip
    raced = DLSAClassifier(**fixed(base="auto", depth=2, random_state=2, selection=cfg))
    for clf in (kept, raced):
        clf.fit(data.X_train, data.y_train)
        seen.append([row for rnd in clf.selection_["rounds"] for row in rnd["candidates"]])
    full, part = seen
    dropped = [b for b in part if b["dropped"]]
    assert dropped and not any(a["dropped"] for a in full)
    n = len(data.y_train)
    for a, b in zip(full, part, strict=True):
        assert a["name"] == b["name"]
        if b["dropped"]:  # evidence of its first folds: ruled out, never eligible
            assert b["n_scored"] < n and not b["eligible"]
            unseen = 1 - b["n_scored"] / n
            rule_ = drop_rule(cfg)
            assert rule_.drops(b["gain"], b["se_plain"], unseen, tail=False) or rule_.drops(
                b["tail_gain"], b["tail_se_plain"], unseen, tail=True
            )
            if rule == "behind":
                tail_z = b["tail_gain"] / max(b["tail_se_plain"], 1e-12)
                assert min(b["gain"] / b["se_plain"], tail_z) < -2
        else:
            assert (a["gain"], a["se"], a["tail_gain"]) == (b["gain"], b["se"], b["tail_gain"])
    assert raced.selection_["chosen"] == kept.selection_["chosen"]
    np.testing.assert_array_equal(
        raced.decision_function(data.X_test), kept.decision_function(data.X_test)
    )


def test_a_dlsa_share_whose_parent_was_dropped_reuses_the_base_and_equals_its_own_fit(data):
    """The 50% share reuses the 30% share's fold filters; dropping the 30% share after
    fold 1 makes the 50% share train its own filter from fold 2 on: the same model."""
    from dlsa.selection.folds import FoldSpec, fold_candidates

    X, y = data.X_train, data.y_train
    folds = stratified_folds(y, 3, seed=0)
    base = out_of_fold(resolve(fixed(depth=0)), X, y, folds)[1]
    specs = [
        FoldSpec(resolve(fixed(depth=1, routed_share=0.3)), donors=base),
        FoldSpec(resolve(fixed(depth=1, routed_share=0.5)), donors=base, parent=0),
    ]
    dropped = fold_candidates(specs, X, y, folds, drop_check=lambda pooled: [0])
    together = fold_candidates(specs, X, y, folds)
    assert dropped[0][0][0].seen.sum() == len(folds[0])  # the 30% share saw fold 1
    assert together[0][0][0].seen is None
    np.testing.assert_array_equal(dropped[1][0][0].pred, together[1][0][0].pred)
    assert dropped[1][0][0].seen is None


def test_nested_correlation_is_the_full_correlation_when_every_candidate_saw_everything():
    from dlsa.selection.multiplicity import gain_covariance, nested_gain_correlation

    y, ref, preds = noisy_predictions(400, 4)
    _, cov = gain_covariance(preds, ref, y, 4)
    sd = np.sqrt(np.diag(cov))
    everything = np.ones((3, 400), dtype=bool)
    np.testing.assert_allclose(
        nested_gain_correlation(preds, everything, ref, y, 4), cov / np.outer(sd, sd)
    )
    # the third candidate saw the first half only: its pairs come from that half
    seen = everything.copy()
    seen[2, 200:] = False
    half = nested_gain_correlation(preds, seen, ref, y, 4)
    _, cov_half = gain_covariance(preds[:, :200], ref[:200], y[:200], 4)
    sd_half = np.sqrt(np.diag(cov_half))
    assert half[0, 2] == pytest.approx(cov_half[0, 2] / (sd_half[0] * sd_half[2]))
    assert half[0, 1] == pytest.approx(cov[0, 1] / (sd[0] * sd[1]))
    np.testing.assert_allclose(np.diag(half), 1.0)
    seen[1, :100] = False  # not nested with the third
    with pytest.raises(ValueError, match="nested"):
        nested_gain_correlation(preds, seen, ref, y, 4)


@pytest.mark.parametrize("unseen", [2 / 3, 1 / 3])
def test_futile_drop_thresholds_match_the_predictive_bound(unseen):
    """The futile rule drops a gain below ``(margin sqrt(1 - r) - z sqrt(r))`` standard
    errors and a rarer-half gain below ``-z sqrt(r)`` (r: the unseen share); it drops
    everything the older rule ("behind": below -z) drops."""
    from dlsa.selection.rule import DropRule

    futile = DropRule(z=2.0, rule="futile", margin=2.0, min_gain=0.0)
    behind = DropRule(z=2.0, rule="behind")
    zs = np.linspace(-4, 4, 8001)

    def threshold(rule: DropRule, tail: bool) -> float:
        dropped = [z for z in zs if rule.drops(z * 0.01, 0.01, unseen, tail=tail)]
        return max(dropped)

    gain_bar = 2.0 * np.sqrt(1 - unseen) - 2.0 * np.sqrt(unseen)
    assert threshold(futile, False) == pytest.approx(gain_bar, abs=2e-3)
    assert threshold(futile, True) == pytest.approx(-2.0 * np.sqrt(unseen), abs=2e-3)
    for tail in (False, True):
        assert all(futile.drops(z * 0.01, 0.01, unseen, tail=tail)
                   for z in zs if behind.drops(z * 0.01, 0.01, unseen, tail=tail))  # fmt: skip
    # a min_gain above the standard-error bar raises it
    strict = DropRule(z=2.0, rule="futile", margin=2.0, min_gain=0.05)
    assert strict.drops(0.03, 0.01, unseen, tail=False)
    with pytest.raises(AssertionError, match="drop rule"):  # checked up front; internal here
        DropRule(rule="sometimes")


def test_an_unknown_drop_rule_fails_before_any_fit(monkeypatch):
    import dlsa.selection.search as search

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before the configuration was checked")

    monkeypatch.setattr(search, "fold_candidates", no_fit)
    X = np.random.default_rng(0).normal(size=(60, 3)).astype("float32")
    y = np.repeat(np.arange(3), 20)
    with pytest.raises(DLSAInputError, match="selection.drop_rule must be one of"):
        DLSAClassifier(selection=SelectionConfig(drop_rule="sometimes")).fit(X, y)


@pytest.mark.parametrize("margin", [2.0, -1e9])  # keeps the base / takes DLSA 30%
def test_on_a_validation_split_the_final_fit_reuses_the_chosen_candidate(count_calls, margin):
    """With ``X_val`` every candidate is fitted once on all the training data, with the
    final fit's seed: the final fit takes the chosen one's filters and base instead of
    training them again, and predicts exactly as a fresh fit of the chosen parameters."""
    from dlsa.stage2.filter import FlowFilter

    d = make_long_tailed_features(
        n_classes=30, n_features=8, n_max=120, imbalance=40, n_test_per_class=10, seed=3
    )
    val = make_long_tailed_features(
        n_classes=30, n_features=8, n_max=120, imbalance=40, n_test_per_class=5, seed=3
    )
    fits = count_calls(FlowFilter, "fit")
    sel = SelectionConfig(
        bases=("balsoftmax", "tau-norm"), proportions=(0.3, 0.99), margin=margin,
        min_gain=-1.0 if margin < 0 else 0.002, multiplicity="per-candidate",
    )  # fmt: skip
    flt = FilterConfig(mixture=MixtureConfig(n_components=30), epochs=3, batch_size=128)
    clf = DLSAClassifier(
        depth=1, flow_filter=flt, head=HeadConfig(epochs=5, batch_size=128), selection=sel,
        random_state=0,
    )  # fmt: skip
    clf.fit(d.X_train, d.y_train, X_val=val.X_test, y_val=val.y_test)
    assert ("DLSA" in clf.selection_["chosen"]) == (margin < 0)
    assert len(fits) == 1  # the selection's one filter; none in the final fit
    fresh = DLSAClassifier(**clf.fitted_params_).fit(d.X_train, d.y_train)
    np.testing.assert_array_equal(clf.predict_proba(d.X_test), fresh.predict_proba(d.X_test))
