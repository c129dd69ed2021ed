"""DLSAClassifier end to end: fit/predict/save/load, routing, seeds, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from dlsa import DLSAClassifier
from dlsa.cascade.safeguard import stage_decisions
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig, SelectionConfig

FLT = FilterConfig(
    mixture=MixtureConfig(n_components=10, sigma=0.5), epochs=4, batch_size=128, lr=0.2
)
HEAD = HeadConfig(epochs=5, batch_size=128)


def make(**kw) -> DLSAClassifier:
    params = {"depth": 2, "flow_filter": FLT, "head": HEAD, "random_state": 0}
    params |= {"base": "balsoftmax", "selection": None, "regular_data": "remaining"}
    params |= {"cover_classes": False, "residual": False, "stage_prior": "routed"} | kw
    return DLSAClassifier(**params)


@pytest.fixture(scope="module")
def fitted(lt_data):
    return make().fit(lt_data.X_train, lt_data.y_train)


def test_predict_shapes_and_probabilities(fitted, lt_data):
    proba = fitted.predict_proba(lt_data.X_test)
    assert proba.shape == (lt_data.X_test.shape[0], 30)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    pred = fitted.predict(lt_data.X_test)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    assert 0.0 <= fitted.score(lt_data.X_test, lt_data.y_test) <= 1.0


def test_train_routing_matches_the_thresholds_fixed_at_fit(fitted, lt_data):
    stage = fitted.route(lt_data.X_train)
    n = len(lt_data.y_train)
    first = round(0.3 * n)
    assert int((stage == 0).sum()) == first
    assert int((stage == 1).sum()) == round(0.3 * (n - first))
    assert set(np.unique(stage)) <= {0, 1, 2}
    for report in fitted.reports_:
        assert report["n_routed"] == round(0.3 * report["n_input"])


def test_save_load_gives_identical_predictions(fitted, lt_data, tmp_path):
    path = fitted.save(tmp_path / "model")
    names = sorted(p.name for p in path.iterdir())
    assert names == [".dlsa-output.json", "model.json", "model.safetensors"]
    loaded = DLSAClassifier.load(path)
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), fitted.predict_proba(lt_data.X_test)
    )
    np.testing.assert_array_equal(loaded.route(lt_data.X_test), fitted.route(lt_data.X_test))
    assert loaded.get_params()["flow_filter"] == FLT


def test_saving_over_an_existing_model_replaces_it(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_save_refuses_to_replace_a_foreign_folder(fitted, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_load_rejects_a_non_model_folder(tmp_path):
    with pytest.raises(ValueError, match="not a dlsa model folder"):
        DLSAClassifier.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a dlsa-model"):
        DLSAClassifier.load(tmp_path)


def test_non_contiguous_labels_are_mapped_back(lt_data):
    y = lt_data.y_train * 10 + 7
    clf = make(depth=1).fit(lt_data.X_train, y)
    pred = clf.predict(lt_data.X_test)
    assert set(pred) <= set(np.unique(y))
    np.testing.assert_array_equal(clf.classes_, np.unique(y))


def test_same_random_state_gives_identical_predictions_and_refit_starts_over(lt_data):
    a = make(depth=1).fit(lt_data.X_train, lt_data.y_train)
    b = make(depth=1).fit(lt_data.X_train, lt_data.y_train)
    p = a.predict_proba(lt_data.X_test)
    np.testing.assert_array_equal(p, b.predict_proba(lt_data.X_test))
    a.fit(lt_data.X_train, lt_data.y_train)
    np.testing.assert_array_equal(p, a.predict_proba(lt_data.X_test))
    c = make(depth=1, random_state=1).fit(lt_data.X_train, lt_data.y_train)
    assert not np.array_equal(p, c.predict_proba(lt_data.X_test))


def test_depth_zero_is_the_base_method_alone(lt_data):
    clf = make(depth=0).fit(lt_data.X_train, lt_data.y_train)
    assert len(clf.filters_) == 0
    assert np.all(clf.route(lt_data.X_test) == 0)


def test_get_set_params_and_clone():
    clf = make()
    assert clf.get_params()["depth"] == 2
    clf.set_params(depth=1)
    assert clone(clf).depth == 1


def test_first_filter_routes_a_tail_richer_set(fitted):
    report = fitted.reports_[0]
    assert report["tail_share_routed"] > report["tail_share_input"]


# ------------------------------------------------------------------ bad input
def test_nan_features_are_rejected(lt_data):
    X = lt_data.X_train.copy()
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf.*row 5, column 2"):
        make().fit(X, lt_data.y_train)


def test_feature_label_count_mismatch(lt_data):
    with pytest.raises(ValueError, match="feature rows but"):
        make().fit(lt_data.X_train, lt_data.y_train[:-1])


def test_predict_with_other_feature_dimension(fitted, lt_data):
    with pytest.raises(ValueError, match="X has 5 features, but DLSAClassifier is expecting 8"):
        fitted.predict(lt_data.X_test[:, :5])


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"validation_folds": 2},
        {
            "base": "auto",
            "selection": SelectionConfig(bases=("balsoftmax", "cbs"), proportions=(0.3,)),
        },
    ],
    ids=["cascade", "safeguard", "selection"],
)
def test_a_class_of_one_sample_is_learned(lt_data, kw):
    X = np.vstack([lt_data.X_train, lt_data.X_train[:1] + 3.0])
    y = np.append(lt_data.y_train, 99)
    clf = make(**kw).fit(X, y)
    assert clf.classes_[-1] == 99 and clf.class_counts_[-1] == 1
    assert clf.predict_proba(lt_data.X_test).shape[1] == len(clf.classes_)
    with pytest.raises(ValueError, match=r"99 \(1 sample\)"):
        make(**kw).fit(X, y, min_class_samples=2)


def test_more_clusters_than_samples_at_a_level(lt_data):
    flt = FilterConfig(mixture=MixtureConfig(n_components=700), epochs=1)
    with pytest.raises(ValueError, match="K=700"):
        make(flow_filter=flt).fit(lt_data.X_train, lt_data.y_train)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"depth": -1}, "depth"),
        ({"base": "nope"}, "base must be one of 'auto', 'balsoftmax'"),
        ({"random_state": "x"}, "random_state"),
    ],
)
def test_bad_hyper_parameters_name_the_parameter(lt_data, params, match):
    with pytest.raises(ValueError, match=match):
        make(**params).fit(lt_data.X_train, lt_data.y_train)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        make().predict(np.zeros((2, 8)))


def test_reusing_filters_gives_the_same_routing_and_trains_only_heads(fitted, lt_data):
    other = make(base="ce").fit(lt_data.X_train, lt_data.y_train, reuse_filters=fitted)
    assert other.filters_[0] is fitted.filters_[0]
    np.testing.assert_array_equal(other.route(lt_data.X_test), fitted.route(lt_data.X_test))
    assert other.reports_[0]["n_routed"] == fitted.reports_[0]["n_routed"]


def test_reusing_filters_from_other_data_is_refused(fitted, lt_data):
    with pytest.raises(ValueError, match="reuse_filters"):
        make().fit(lt_data.X_train[5:], lt_data.y_train[5:], reuse_filters=fitted)


def test_regular_data_all_makes_the_regular_classifier_the_base(lt_data):
    clf = make(depth=1, regular_data="all").fit(lt_data.X_train, lt_data.y_train)
    assert clf.regular_ is clf.fallback_
    base = make(depth=0).fit(lt_data.X_train, lt_data.y_train)
    stage = clf.route(lt_data.X_test)
    rest = stage == 1
    np.testing.assert_array_equal(
        clf.predict_proba(lt_data.X_test)[rest], base.predict_proba(lt_data.X_test)[rest]
    )


def test_safeguard_reports_validation_and_a_disabled_stage_uses_the_base(lt_data, tmp_path):
    clf = make(depth=1, validation_fraction=0.2).fit(lt_data.X_train, lt_data.y_train)
    val = clf.validation_
    assert val["n_val"] > 0 and val["n_fit"] + val["n_val"] == len(lt_data.y_train)
    assert [r["kept"] for r in val["stages"]] == clf.stage_enabled_
    for row in val["stages"]:
        if row["n"]:
            assert row["kept"] == (row["accuracy"] >= row["base_accuracy"])
            assert 0.0 <= row["accuracy"] <= 1.0
    clf.stage_enabled_ = [False, False]  # force the fallback everywhere
    np.testing.assert_allclose(
        clf.predict_proba(lt_data.X_test),
        make(depth=0).fit(lt_data.X_train, lt_data.y_train).predict_proba(lt_data.X_test),
        rtol=1e-5,
        atol=1e-6,
    )
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.stage_enabled_ == [False, False] and loaded.validation_ == clf.validation_
    np.testing.assert_array_equal(loaded.predict(lt_data.X_test), clf.predict(lt_data.X_test))


def test_safeguard_with_folds_validates_on_every_training_sample(lt_data, tmp_path):
    clf = make(depth=1, validation_folds=2).fit(lt_data.X_train, lt_data.y_train)
    val = clf.validation_
    assert val["n_folds"] == 2 and val["n_val"] == len(lt_data.y_train)
    assert sum(r["n"] for r in val["stages"]) == len(lt_data.y_train)
    assert [r["kept"] for r in val["stages"]] == clf.stage_enabled_
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.validation_folds == 2
    np.testing.assert_array_equal(loaded.predict(lt_data.X_test), clf.predict(lt_data.X_test))


@pytest.mark.parametrize("folds", [1, -1, 2.0, True])
def test_bad_validation_folds_are_rejected(lt_data, folds):
    with pytest.raises(ValueError, match="validation_folds"):
        make(validation_folds=folds).fit(lt_data.X_train, lt_data.y_train)


def test_stage_decisions_weigh_classes_equally_and_keep_ties():
    # stage 0: 3 samples of class 0 (base right on all) + 1 of class 1 (only DLSA right)
    target = torch.tensor([0, 0, 0, 1, 1])
    stage = torch.tensor([0, 0, 0, 0, 1])
    right = torch.nn.functional.one_hot(target, 2).float()
    base = right.clone()
    base[3] = torch.tensor([1.0, 0.0])
    dlsa = right.clone()
    dlsa[0] = torch.tensor([0.0, 1.0])
    rows = stage_decisions(dlsa.argmax(1), stage, base.argmax(1), target, n_classes=2, n_stages=3)
    # class weights 1/3 (class 0) and 1/2 (class 1): DLSA 2/3 + 1/2, base 3/3
    assert rows[0]["accuracy"] == pytest.approx((2 / 3 + 1 / 2) / (1 + 1 / 2))
    assert rows[0]["base_accuracy"] == pytest.approx(1 / (1 + 1 / 2))
    assert rows[0]["kept"]  # unweighted, base would win 3/4 to 3/4 - tie; weighted, DLSA
    assert rows[1] == {"stage": 1, "n": 1, "accuracy": 1.0, "base_accuracy": 1.0, "kept": True}
    assert rows[2]["n"] == 0 and rows[2]["kept"]


def test_a_stage_never_predicts_a_class_it_did_not_see(fitted, lt_data):
    for head in fitted.heads_:
        assert not bool(head.seen.all())  # the routed subsets miss some classes
    proba = fitted.predict_proba(lt_data.X_test)
    stage = fitted.route(lt_data.X_test)
    for level, head in enumerate(fitted.heads_):
        rows = proba[stage == level]
        assert np.all(rows[:, ~head.seen.numpy()] == 0)


def test_stack_base_feeds_the_base_logits_to_cluster_aided_classifiers(lt_data, tmp_path):
    clf = make(depth=1, stack_base=True).fit(lt_data.X_train, lt_data.y_train)
    assert clf.heads_[0].n_inputs == 2 * 8 + 30
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), clf.predict_proba(lt_data.X_test)
    )


def test_cover_classes_lets_every_cluster_aided_classifier_see_every_class(lt_data, tmp_path):
    clf = make(depth=1, cover_classes=True).fit(lt_data.X_train, lt_data.y_train)
    assert bool(clf.heads_[0].seen.all())
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.cover_classes
    np.testing.assert_array_equal(loaded.predict(lt_data.X_test), clf.predict(lt_data.X_test))


@pytest.mark.parametrize("stage_prior", ["routed", "global"])
def test_stage_prior_sets_the_counts_the_cluster_aided_loss_corrects_for(
    lt_data, monkeypatch, tmp_path, stage_prior
):
    from dlsa.stage2.bases.balsoftmax import BalancedSoftmax

    seen: list[tuple[int, torch.Tensor]] = []
    original = BalancedSoftmax.loss

    def spy(self, logits, target, counts):
        seen.append((int(target.numel()), counts.clone()))
        return original(self, logits, target, counts)

    monkeypatch.setattr(BalancedSoftmax, "loss", spy)
    clf = make(depth=1, stage_prior=stage_prior, regular_data="all")
    clf.fit(lt_data.X_train, lt_data.y_train)
    all_counts = torch.as_tensor(clf.class_counts_, dtype=torch.float32)
    y_routed = np.searchsorted(clf.classes_, lt_data.y_train)[clf.route(lt_data.X_train) == 0]
    routed = torch.as_tensor(np.bincount(y_routed, minlength=30), dtype=torch.float32)
    distinct = {tuple(c.tolist()) for _, c in seen}
    assert tuple(all_counts.tolist()) in distinct  # the base method, always
    expected = all_counts if stage_prior == "global" else routed
    assert distinct == {tuple(all_counts.tolist()), tuple(expected.tolist())}
    assert DLSAClassifier.load(clf.save(tmp_path / "m")).stage_prior == stage_prior


def test_bad_stage_prior_is_rejected(lt_data):
    with pytest.raises(ValueError, match="stage_prior must be one of 'routed', 'global'"):
        make(stage_prior="test").fit(lt_data.X_train, lt_data.y_train)


def test_predict_proba_and_route_is_one_pass_of_both(fitted, lt_data):
    proba, stage = fitted.predict_proba_and_route(lt_data.X_test)
    np.testing.assert_array_equal(proba, fitted.predict_proba(lt_data.X_test))
    np.testing.assert_array_equal(stage, fitted.route(lt_data.X_test))


# ------------------------------------------------ original-release options
@pytest.mark.parametrize("regular_prior", ["reaching", "global"])
def test_regular_prior_sets_the_counts_of_the_regular_balanced_softmax(
    lt_data, monkeypatch, regular_prior
):
    from dlsa.stage2.bases.balsoftmax import BalancedSoftmax

    seen: list[torch.Tensor] = []
    original = BalancedSoftmax.loss

    def spy(self, logits, target, counts):
        seen.append(counts.clone())
        return original(self, logits, target, counts)

    monkeypatch.setattr(BalancedSoftmax, "loss", spy)
    clf = make(depth=1, regular_prior=regular_prior).fit(lt_data.X_train, lt_data.y_train)
    y_enc = np.searchsorted(clf.classes_, lt_data.y_train)
    remaining = y_enc[clf.route(lt_data.X_train) == 1]
    global_counts = torch.as_tensor(clf.class_counts_, dtype=torch.float32)
    reaching = torch.as_tensor(np.bincount(remaining, minlength=30), dtype=torch.float32)
    expected = global_counts if regular_prior == "global" else reaching
    torch.testing.assert_close(seen[-1], expected)  # the regular classifier is fitted last
    assert not torch.equal(global_counts, reaching)


@pytest.mark.parametrize("stack_base", [False, True])
def test_cluster_aided_regular_classifier_uses_the_last_filter_and_round_trips(
    lt_data, tmp_path, stack_base
):
    clf = make(regular_cluster_aided=True, stack_base=stack_base)
    clf.fit(lt_data.X_train, lt_data.y_train)
    assert clf.regular_.use_prior and clf.regular_ is not clf.fallback_
    assert clf.regular_.n_inputs == 2 * 8 + 30 * stack_base
    stage = clf.route(lt_data.X_test)
    rest = torch.as_tensor(lt_data.X_test[stage == 2])
    out = clf.filters_[-1].transform(rest)
    inputs = clf.cascade_.cluster_inputs(rest, out.z)
    prior = clf.filters_[-1].cluster_prior(out.cluster)
    expected = clf.cascade_.stage_logits(clf.regular_, inputs, prior)
    torch.testing.assert_close(
        torch.as_tensor(clf.decision_function(lt_data.X_test)[stage == 2]), expected
    )
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.regular_cluster_aided and loaded.regular_.use_prior
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), clf.predict_proba(lt_data.X_test)
    )


def test_cluster_aided_regular_needs_the_remaining_samples(lt_data):
    clf = make(depth=1, regular_cluster_aided=True, regular_data="all")
    clf.fit(lt_data.X_train, lt_data.y_train)
    assert clf.regular_ is clf.fallback_ and not clf.regular_.use_prior


def test_cluster_prior_of_all_samples_counts_every_training_sample(lt_data, fitted, tmp_path):
    clf = make(cluster_prior_data="all").fit(
        lt_data.X_train, lt_data.y_train, reuse_filters=fitted
    )
    x = torch.as_tensor(lt_data.X_train)
    y = torch.as_tensor(np.searchsorted(clf.classes_, lt_data.y_train))
    for flt in clf.filters_:
        torch.testing.assert_close(flt.cluster_counts, flt.class_histogram(x, y))
        assert int(flt.cluster_counts.sum()) == len(y)
    # the donor, fitted with the level's samples, is left as it was
    assert [int(f.cluster_counts.sum()) for f in fitted.filters_] == [
        r["n_input"] for r in fitted.reports_
    ]
    assert int(fitted.filters_[1].cluster_counts.sum()) < len(y)
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), clf.predict_proba(lt_data.X_test)
    )


def test_paper_preset_fits_and_round_trips_on_tiny_data(lt_data, tmp_path):
    from dlsa.config import get_preset

    cfg = get_preset("imagenet-lt")
    tiny = {"mixture": MixtureConfig(n_components=10, sigma=0.5), "epochs": 2}
    flt = dataclasses.replace(cfg.flow_filter, batch_size=128, **tiny)
    head = dataclasses.replace(cfg.head, epochs=3)
    params = cfg.estimator_params() | {"flow_filter": flt, "head": head}
    clf = DLSAClassifier(**params).fit(lt_data.X_train, lt_data.y_train)
    d = lt_data.X_train.shape[1]
    assert len(clf.filters_) == 3 and not clf.regular_.use_prior
    for model in (*clf.heads_, clf.regular_):  # raw inputs: no standardisation
        assert torch.equal(model.input_std, torch.ones_like(model.input_std))
        assert model.n_inputs == d and model.twin is not None  # FC(x) + FC([x, P]) / FC(x)
        assert bool(model.seen.all())  # the raw argmax over all classes
    assert [h.twin.in_features for h in clf.heads_] == [d + len(clf.classes_)] * 3
    assert clf.regular_.twin.in_features == d and clf.fallback_.twin is None
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.get_params()["flow_filter"] == flt
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), clf.predict_proba(lt_data.X_test)
    )
    np.testing.assert_array_equal(loaded.route(lt_data.X_test), clf.route(lt_data.X_test))


def test_models_saved_before_the_release_options_load_with_their_defaults(
    fitted, lt_data, tmp_path
):
    path = fitted.save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    new = ("regular_prior", "regular_cluster_aided", "cluster_prior_data")
    for key in new:
        del meta["params"][key]
    for key in ("hidden_layers", "zero_init", "bn_unbiased"):
        del meta["params"]["flow_filter"]["flow"][key]
    for key in ("batch_sampler", "mle_per_dimension", "epoch_ties", "mle_normalization"):
        del meta["params"]["flow_filter"][key]
    for key in ("purity_anchors", "flow_passes", "max_cluster_size"):
        del meta["params"]["flow_filter"][key]
    for key in ("classifier_layout", "mask_unseen"):
        del meta["params"][key]
    del meta["params"]["head"]["schedule"]
    (path / "model.json").write_text(json.dumps(meta))
    loaded = DLSAClassifier.load(path)
    assert loaded.get_params()["flow_filter"] == FLT and loaded.get_params()["head"] == HEAD
    assert [loaded.get_params()[k] for k in new] == ["reaching", False, "level"]
    assert (loaded.classifier_layout, loaded.mask_unseen) == ("paper", True)
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), fitted.predict_proba(lt_data.X_test)
    )


def test_bad_release_choices_are_rejected(lt_data):
    with pytest.raises(ValueError, match="regular_prior must be one of 'reaching', 'global'"):
        make(regular_prior="all").fit(lt_data.X_train, lt_data.y_train)
    with pytest.raises(ValueError, match="cluster_prior_data must be one of 'level', 'all'"):
        make(cluster_prior_data="global").fit(lt_data.X_train, lt_data.y_train)
    with pytest.raises(ValueError, match="classifier_layout must be one of 'paper', 'release'"):
        make(classifier_layout="twin").fit(lt_data.X_train, lt_data.y_train)


# ------------------------------------------------------------------ property tests
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ_FLT = FilterConfig(mixture=MixtureConfig(n_components=2, sigma=0.5), epochs=1, batch_size=32)
FUZZ_HEAD = HeadConfig(epochs=2, batch_size=32)


def _fuzz_features(counts: list[int], d: int, mode: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(sum(counts), d))
    if mode == "constant":
        X[:] = 3.0
    elif mode == "constant-column":
        X[:, 0] = -7.0
    elif mode == "duplicated":
        X = np.repeat(X[:1], len(X), axis=0) if seed % 2 else np.tile(X[:2], (len(X), 1))[: len(X)]
    elif mode == "huge":
        X *= 1e30
    elif mode == "tiny":
        X *= 1e-30
    return X


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    d=st.integers(1, 3),
    mode=st.sampled_from(["normal", "constant", "constant-column", "duplicated", "huge", "tiny"]),
    depth=st.sampled_from([0, 1]),
    text=st.booleans(),
    seed=st.integers(0, 3),
)
def test_fuzzed_inputs_fit_and_predict_or_raise_the_documented_error(
    counts, d, mode, depth, text, seed
):
    """Tiny classes, constant features, duplicated rows, huge or tiny values: fit either
    works (finite probabilities, labels from classes_) or raises a documented error
    (ValueError, or FloatingPointError for a diverged run) from dlsa's own checks, never an
    exception from inside torch."""
    import traceback

    X = _fuzz_features(counts, d, mode, seed)
    y = np.repeat(np.arange(len(counts)), counts)
    if text:
        y = np.array([f"class {v}" for v in y])
    clf = make(depth=depth, flow_filter=FUZZ_FLT, head=FUZZ_HEAD, random_state=seed)
    try:
        clf.fit(X, y)
    except (ValueError, FloatingPointError) as err:  # the errors fit documents
        origin = traceback.extract_tb(err.__traceback__)[-1].filename
        assert "/dlsa/" in origin.replace("\\", "/"), (origin, err)
        return
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(counts)) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-4)
    assert set(clf.predict(X).tolist()) <= set(clf.classes_.tolist())


def test_scoring_in_chunks_gives_the_same_result(fitted, lt_data, monkeypatch):
    import dlsa.cascade.model

    proba, stage = fitted.predict_proba_and_route(lt_data.X_test)
    monkeypatch.setattr(dlsa.cascade.model, "SCORE_CHUNK", 7)
    chunked, chunked_stage = fitted.predict_proba_and_route(lt_data.X_test)
    np.testing.assert_allclose(chunked, proba, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(chunked_stage, stage)
    np.testing.assert_array_equal(fitted.route(lt_data.X_test), stage)


def test_safeguard_folds_in_worker_processes_decide_the_same(lt_data, monkeypatch):
    import dlsa.engine.parallel

    monkeypatch.setattr(dlsa.engine.parallel.os, "cpu_count", lambda: 2)  # 1 torch thread each
    here = make(validation_folds=2).fit(lt_data.X_train, lt_data.y_train)
    pool = make(validation_folds=2, n_jobs=2).fit(lt_data.X_train, lt_data.y_train)
    assert pool.validation_ == here.validation_
    np.testing.assert_array_equal(
        pool.decision_function(lt_data.X_test), here.decision_function(lt_data.X_test)
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.integers(0, 2**31 - 1))
def test_coverage_samples_are_the_lowest_scored_non_routed_of_each_class(labels, seed):
    from dlsa.cascade.levels import _coverage_samples
    from dlsa.engine import rng

    y = torch.tensor(labels)
    mask = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < 0.4
    got = _coverage_samples(y, mask, torch.Generator().manual_seed(seed))
    scores = rng.rand(len(labels), torch.Generator().manual_seed(seed), y.device)
    r = max(1, int(mask.sum()) // (int(y.max()) + 1))
    want = torch.zeros_like(mask)
    for c in torch.unique(y[~mask]):  # the definition, one class at a time
        idx = torch.nonzero((y == c) & ~mask).flatten()
        want[idx[torch.argsort(scores[idx])[:r]]] = True
    assert torch.equal(got, want) and not bool((got & mask).any())


@pytest.mark.parametrize("depth", [0, 1])
def test_the_pair_trains_the_reference_once_and_equals_fresh_fits(lt_data, count_calls, depth):
    """``fit_pair`` hands the reference to the configured model as its base: the base
    method is trained once less, and both models predict exactly as fitted apart."""
    from dlsa.analysis.pair import fit_pair
    from dlsa.config import DLSAConfig
    from dlsa.stage2.bases import BalancedSoftmax

    config = DLSAConfig(**(make(depth=depth).get_params() | {"base_params": {}}))
    fresh = {
        "base": make(depth=0).fit(lt_data.X_train, lt_data.y_train),
        "dlsa": make(depth=depth).fit(lt_data.X_train, lt_data.y_train),
    }
    calls = count_calls(BalancedSoftmax, "fit")
    models = fit_pair(config, lt_data.X_train, lt_data.y_train)
    assert len(calls) == 1 + 2 * depth  # the reference, then the heads of the levels only
    for name, model in models.items():
        np.testing.assert_array_equal(
            model.predict_proba(lt_data.X_test), fresh[name].predict_proba(lt_data.X_test)
        )
