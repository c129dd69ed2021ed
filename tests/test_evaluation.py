"""Evaluation of fitted models: metrics, stages, separation, label mapping."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import compare_on_stages, encode_labels, evaluate
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig

FLT = FilterConfig(mixture=MixtureConfig(8, sigma=0.5), epochs=2, batch_size=128)


@pytest.fixture(scope="module")
def models(lt_data):
    kw = {
        "flow_filter": FLT,
        "head": HeadConfig(epochs=3),
        "selection": None,
        "base": "balsoftmax",
    }
    base = DLSAClassifier(depth=0, **kw).fit(lt_data.X_train, lt_data.y_train)
    dlsa = DLSAClassifier(depth=2, **kw).fit(lt_data.X_train, lt_data.y_train)
    return base, dlsa


def test_evaluate_matches_sklearn_and_stage_counts(models, lt_data):
    _, dlsa = models
    result = evaluate(dlsa, lt_data.X_test, lt_data.y_test)
    pred = dlsa.predict(lt_data.X_test)
    assert result["metrics"]["overall"] == pytest.approx(accuracy_score(lt_data.y_test, pred))
    assert sum(row["n"] for row in result["stages"]) == len(lt_data.y_test)
    assert len(result["separation"]) == 2
    first = result["separation"][0]
    assert first["n_input"] == len(lt_data.y_test)
    assert first["n_selected"] == result["stages"][0]["n"]


def test_compare_on_stages_uses_the_same_samples(models, lt_data):
    base, dlsa = models
    eb, ed = (evaluate(m, lt_data.X_test, lt_data.y_test) for m in (base, dlsa))
    rows = compare_on_stages(ed, eb, encode_labels(dlsa, lt_data.y_test))
    assert sum(r["n"] for r in rows) == len(lt_data.y_test)
    stage0 = ed["stage"] == 0
    expected = float((eb["pred"][stage0] == lt_data.y_test[stage0]).mean())
    assert rows[0]["base_accuracy"] == pytest.approx(expected)


def test_unknown_test_labels_are_named(models, lt_data):
    _, dlsa = models
    y = lt_data.y_test.copy()
    y[0] = 1234
    with pytest.raises(ValueError, match=r"labels not seen in training: \[1234\]"):
        encode_labels(dlsa, y)


def test_separation_is_absent_without_tail_classes(models, lt_data):
    _, dlsa = models
    result = evaluate(dlsa, lt_data.X_test, lt_data.y_test, head_threshold=0)
    assert all(s["accuracy"] is None for s in result["separation"])
    np.testing.assert_array_equal(result["stage"], dlsa.route(lt_data.X_test))


def test_counts_accumulated_by_chunks_equal_one_update_and_the_array_formulas():
    """The one path of evaluation: any split into chunks gives the same numbers, and the
    stage table and separation equal their definitions on the arrays."""
    from dlsa.metrics import classification_report, head_tail_separation
    from dlsa.metrics.evaluation_counts import SEPARATION_KEYS, EvaluationCounts

    rng = np.random.default_rng(0)
    counts = np.array([400, 120, 30, 8, 3])
    target = rng.integers(0, 5, 500)
    pred = np.where(rng.random(500) < 0.7, target, rng.integers(0, 5, 500))
    stage = rng.integers(0, 3, 500)
    whole = EvaluationCounts(counts, n_levels=2)
    whole.update(pred, target, stage)
    chunked = EvaluationCounts(counts, n_levels=2)
    for idx in np.array_split(np.arange(500), [7, 8, 200, 433]):
        chunked.update(pred[idx], target[idx], stage[idx])
    a, b = whole.compute(), chunked.compute()
    for key in ("metrics", "stages", "separation"):
        assert a[key] == b[key]
    np.testing.assert_array_equal(a["confusion"], b["confusion"])
    want = classification_report(pred, target, counts)
    assert a["metrics"] == pytest.approx(want, abs=1e-12)
    for s, row in enumerate(a["stages"]):
        assert row["accuracy"] == pytest.approx((pred == target)[stage == s].mean())
    for level, row in enumerate(a["separation"]):
        reached = stage >= level
        ref = head_tail_separation(stage[reached] == level, target[reached], counts)
        assert row == pytest.approx({written: ref[k] for written, k in SEPARATION_KEYS.items()})
