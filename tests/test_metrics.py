"""Tests of dlsa.metrics against scikit-learn and hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    normalized_mutual_info_score,
)

from dlsa.metrics import (
    classification_report,
    cluster_statistics,
    confusion_matrix_binned,
    frequency_order,
    good_clusters,
    head_tail_separation,
    mcc,
    nmi,
    per_class_accuracy,
    separation_from_counts,
    shot_accuracy,
    shot_groups,
    tail_half_accuracy,
)


@pytest.fixture
def random_run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy predictions over 12 classes whose train counts are not in index order."""
    rng = np.random.default_rng(0)
    n_classes = 12
    train_counts = rng.permutation(np.array([400, 300, 150, 101, 100, 60, 20, 19, 10, 5, 3, 1]))
    target = rng.integers(0, n_classes, size=600)
    noise = rng.integers(0, n_classes, size=600)
    preds = np.where(rng.random(600) < 0.6, target, noise)
    return preds, target, train_counts


# --- shot groups -------------------------------------------------------------------------


def test_shot_groups_boundaries() -> None:
    counts = np.array([101, 100, 20, 19, 0, 5000])
    assert shot_groups(counts).tolist() == ["many", "medium", "medium", "few", "few", "many"]


def test_shot_groups_thresholds_configurable() -> None:
    counts = np.array([80, 50, 30, 5])
    assert shot_groups(counts).tolist() == ["medium", "medium", "medium", "few"]
    assert shot_groups(counts, many=50).tolist() == ["many", "medium", "medium", "few"]
    assert shot_groups(counts, many=50, few=40).tolist() == ["many", "medium", "few", "few"]


@pytest.mark.parametrize(("many", "few"), [(20, 20), (10, 20)])
def test_shot_groups_rejects_many_not_above_few(many: int, few: int) -> None:
    with pytest.raises(ValueError, match="many must be greater than few"):
        shot_groups(np.array([1, 2]), many=many, few=few)


def test_shot_groups_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match=r"train_counts.*\(2, 2\)"):
        shot_groups(np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        shot_groups(np.array([3, -1]))


# --- accuracies --------------------------------------------------------------------------


def test_per_class_accuracy_matches_sklearn_recall(random_run: tuple) -> None:
    preds, target, counts = random_run
    result = per_class_accuracy(preds, target, counts.size)
    cm = confusion_matrix(target, preds, labels=np.arange(counts.size))
    np.testing.assert_allclose(result, np.diag(cm) / cm.sum(axis=1))


def test_per_class_accuracy_nan_for_absent_class() -> None:
    result = per_class_accuracy(np.array([1, 1, 0]), np.array([1, 1, 1]), 3)
    assert result[1] == pytest.approx(2 / 3)
    assert np.isnan(result[0]) and np.isnan(result[2])


def test_shot_accuracy_matches_sklearn_per_group(random_run: tuple) -> None:
    preds, target, counts = random_run
    result = shot_accuracy(preds, target, counts)
    assert result["overall"] == pytest.approx(accuracy_score(target, preds))
    groups = shot_groups(counts)[target]
    for name in ("many", "medium", "few"):
        mask = groups == name
        assert result[name] == pytest.approx(accuracy_score(target[mask], preds[mask]))


def test_shot_accuracy_hand_example() -> None:
    counts = np.array([150, 60, 5])
    target = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 2, 0, 0, 0])
    result = shot_accuracy(preds, target, counts)
    assert result == pytest.approx({"overall": 4 / 9, "many": 0.5, "medium": 2 / 3, "few": 0.25})


def test_shot_accuracy_empty_group_is_none_not_zero() -> None:
    counts = np.array([500, 300, 200])  # every class is many-shot
    result = shot_accuracy(np.array([0, 1, 0]), np.array([0, 1, 2]), counts)
    assert result["medium"] is None and result["few"] is None
    assert result["many"] == pytest.approx(2 / 3)


def test_shot_accuracy_group_without_test_sample_is_none() -> None:
    counts = np.array([500, 50, 5])  # class 2 is few-shot but absent from the test set
    result = shot_accuracy(np.array([0, 1]), np.array([0, 1]), counts)
    assert result["few"] is None and result["medium"] == 1.0


def test_shot_accuracy_thresholds_change_groups() -> None:
    counts = np.array([80, 30])
    preds, target = np.array([0, 0]), np.array([0, 1])
    assert shot_accuracy(preds, target, counts)["many"] is None
    result = shot_accuracy(preds, target, counts, many=50)
    assert result["many"] == 1.0 and result["medium"] == 0.0


@pytest.mark.parametrize(
    ("preds", "target", "message"),
    [
        (np.zeros(3, int), np.zeros(4, int), r"preds and target.*\(3,\) and \(4,\)"),
        (np.zeros((3, 1), int), np.zeros(3, int), r"preds must be .*1-D.*\(3, 1\)"),
        (np.zeros(3, int), np.zeros((3, 2), int), r"target must be .*1-D.*\(3, 2\)"),
        (np.zeros(0, int), np.zeros(0, int), r"preds must be a non-empty.*\(0,\)"),
        (np.zeros(3), np.zeros(3, int), "preds must hold integer labels"),
        (np.array([0, 5]), np.array([0, 1]), r"preds must lie in \[0, 2\]"),
        (np.array([0, 1]), np.array([-1, 1]), r"target must lie in \[0, 2\]"),
    ],
)
def test_accuracy_inputs_validated(preds: np.ndarray, target: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shot_accuracy(preds, target, np.array([10, 50, 500]))
    with pytest.raises(ValueError, match=message):
        per_class_accuracy(preds, target, 3)


# --- MCC, NMI, report --------------------------------------------------------------------


def test_mcc_and_nmi_match_sklearn(random_run: tuple) -> None:
    preds, target, _ = random_run
    assert mcc(preds, target) == pytest.approx(matthews_corrcoef(target, preds))
    assert nmi(preds, target) == pytest.approx(normalized_mutual_info_score(target, preds))
    assert isinstance(mcc(preds, target), float) and isinstance(nmi(preds, target), float)


def test_mcc_nmi_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        mcc(np.zeros(2, int), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        nmi(np.zeros(2, int), np.zeros(3, int))


def test_classification_report_collects_metrics(random_run: tuple) -> None:
    preds, target, counts = random_run
    report = classification_report(preds, target, counts, many=50, few=10)
    assert set(report) == {"overall", "many", "medium", "few", "mcc", "nmi", "tail_half"}
    expected = shot_accuracy(preds, target, counts, many=50, few=10)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value)
    assert report["mcc"] == pytest.approx(matthews_corrcoef(target, preds))
    assert report["nmi"] == pytest.approx(normalized_mutual_info_score(target, preds))
    assert all(0.0 <= report[k] <= 1.0 for k in ("overall", "many", "medium", "few"))


# --- head-tail separation ----------------------------------------------------------------


def test_head_tail_separation_hand_example() -> None:
    counts = np.array([200, 51, 50, 3])  # head: 0, 1; tail: 2, 3
    target = np.array([0, 1, 2, 3, 3, 0, 2, 1])
    routed = np.array([True, False, True, True, False, False, True, True])
    result = head_tail_separation(routed, target, counts)
    assert result == {
        "accuracy": 0.6,
        "tail_share_routed": 0.6,
        "tail_share_input": 0.5,
        "n_routed": 5,
        "n_input": 8,
    }
    assert separation_from_counts(5, 3, 8, 4) == result


def test_head_tail_separation_threshold_and_nothing_routed() -> None:
    counts, target = np.array([200, 51]), np.array([0, 1])
    result = head_tail_separation(np.array([False, True]), target, counts, head_threshold=60)
    assert result["accuracy"] == 1.0
    empty = head_tail_separation(np.zeros(2, bool), target, counts)
    assert empty["accuracy"] is None and empty["tail_share_routed"] is None
    assert empty["n_routed"] == 0 and empty["tail_share_input"] == 0.0
    assert separation_from_counts(0, 0, 0, 0)["tail_share_input"] is None


def test_head_tail_separation_validates() -> None:
    counts = np.array([200, 5])
    with pytest.raises(ValueError, match="routed must be a boolean mask"):
        head_tail_separation(np.array([1, 0]), np.array([0, 1]), counts)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        head_tail_separation(np.ones(3, bool), np.array([0, 1]), counts)


# --- clusters ----------------------------------------------------------------------------


def test_cluster_statistics_hand_example_with_empty_cluster() -> None:
    clusters = np.array([0, 0, 0, 0, 2, 2, 3])
    target = np.array([5, 5, 5, 1, 0, 1, 7])
    stats = cluster_statistics(clusters, target, n_clusters=4)
    assert stats["sizes"].tolist() == [4, 0, 2, 1]
    np.testing.assert_allclose(stats["purity"], [0.75, np.nan, 0.5, 1.0])
    assert stats["n_nonempty"] == 3
    assert stats["largest_share"] == pytest.approx(4 / 7)
    assert stats["n_good"] == 0
    assert cluster_statistics(clusters, target, 4, min_purity=0.7, min_size=3)["n_good"] == 1


def test_cluster_statistics_validates() -> None:
    with pytest.raises(ValueError, match=r"clusters must lie in \[0, 1\]"):
        cluster_statistics(np.array([0, 2]), np.array([0, 0]), n_clusters=2)
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        cluster_statistics(np.array([0, 1]), np.array([0, 0, 1]), n_clusters=2)


def test_good_clusters_strict_bars_and_nan() -> None:
    sizes = np.array([11, 10, 50, 50, 0])
    purity = np.array([0.8, 0.9, 0.7, 0.71, np.nan])
    assert good_clusters(sizes, purity) == 2
    assert good_clusters(sizes, purity, min_purity=0.5, min_size=5) == 4
    with pytest.raises(ValueError, match=r"\(5,\) and \(4,\)"):
        good_clusters(sizes, purity[:4])


# --- binned confusion matrix -------------------------------------------------------------


def test_frequency_order_descending_ties_by_index() -> None:
    assert frequency_order(np.array([5, 50, 5, 500, 50])).tolist() == [3, 1, 4, 0, 2]


def test_confusion_binned_rows_sum_to_one(random_run: tuple) -> None:
    preds, target, counts = random_run
    matrix = confusion_matrix_binned(preds, target, counts, n_bins=5)
    assert matrix.shape == (5, 5)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_confusion_binned_identity_for_perfect_preds(random_run: tuple) -> None:
    _, target, counts = random_run
    np.testing.assert_allclose(confusion_matrix_binned(target, target, counts, 4), np.eye(4))


def test_confusion_binned_equals_sklearn_when_one_class_per_bin(random_run: tuple) -> None:
    preds, target, counts = random_run
    order = frequency_order(counts)
    reference = confusion_matrix(target, preds, labels=order, normalize="true")
    np.testing.assert_allclose(confusion_matrix_binned(preds, target, counts, 12), reference)


def test_confusion_binned_sorts_by_frequency_not_index() -> None:
    counts = np.array([1, 1000, 10, 100])  # frequency order: 1, 3, 2, 0
    target = np.array([1, 1, 3, 2, 0])
    preds = np.array([0, 1, 3, 2, 0])  # one sample of class 1 (head) predicted as 0 (tail)
    matrix = confusion_matrix_binned(preds, target, counts, n_bins=2)
    # bin 0 = classes {1, 3}, bin 1 = classes {2, 0}
    np.testing.assert_allclose(matrix, [[2 / 3, 1 / 3], [0.0, 1.0]])
    full = confusion_matrix_binned(preds, target, counts, n_bins=4)
    assert full[0, 3] == 0.5 and full[0, 0] == 0.5  # head row, rarest column


def test_confusion_binned_fewer_classes_than_bins() -> None:
    counts = np.array([3, 30, 300])
    target = np.array([0, 1, 2, 2])
    matrix = confusion_matrix_binned(np.array([0, 1, 2, 0]), target, counts, n_bins=20)
    np.testing.assert_allclose(matrix, [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_confusion_binned_uneven_bins_follow_array_split() -> None:
    counts = np.arange(7, 0, -1)  # already in frequency order
    target = np.arange(7)
    preds = np.array([6, 1, 2, 3, 4, 5, 6])
    # array_split(7, 3) -> sizes 3, 2, 2: classes {0,1,2}, {3,4}, {5,6}
    matrix = confusion_matrix_binned(preds, target, counts, n_bins=3)
    np.testing.assert_allclose(matrix, [[2 / 3, 0, 1 / 3], [0, 1, 0], [0, 0, 1]])


def test_confusion_binned_empty_row_nan_and_exclude_correct() -> None:
    counts = np.array([100, 10, 1])
    target, preds = np.array([0, 0, 1]), np.array([0, 2, 1])
    matrix = confusion_matrix_binned(preds, target, counts, n_bins=3)
    assert np.isnan(matrix[2]).all()
    errors = confusion_matrix_binned(preds, target, counts, n_bins=3, exclude_correct=True)
    np.testing.assert_allclose(errors[:2], [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])


def test_confusion_binned_validates() -> None:
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        confusion_matrix_binned(np.zeros(2, int), np.zeros(2, int), np.array([1, 2]), n_bins=0)
    with pytest.raises(ValueError, match=r"\(2,\) and \(1,\)"):
        confusion_matrix_binned(np.zeros(2, int), np.zeros(1, int), np.array([1, 2]))


def test_tail_half_is_the_accuracy_of_the_rarer_half_of_the_classes() -> None:
    counts = np.array([10, 500, 30, 200, 5])  # C = 5: the 2 rarest are classes 4 and 0
    target = np.array([0, 0, 1, 2, 3, 4, 4, 4])
    preds = np.array([0, 1, 1, 2, 3, 4, 0, 4])
    assert tail_half_accuracy(preds, target, counts) == pytest.approx(3 / 5)
    assert tail_half_accuracy(preds[2:5], target[2:5], counts) is None


def test_per_class_rows_from_counts_match_a_direct_count():
    from dlsa.metrics.confusion import confusion_counts
    from dlsa.metrics.per_class import class_stage_counts, per_class_rows

    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, 200)
    target[target == 3] = 2  # class 3 has no test sample
    pred = np.where(rng.random(200) < 0.6, target, rng.integers(0, 4, 200))
    stage = rng.integers(0, 3, 200)
    rows = per_class_rows(
        confusion_counts(pred, target, 4),
        class_stage_counts(target, stage, 4, 3),
        np.array([50, 20, 5, 1]),
        ["a", "b", "c", "d"],
    )
    for c, row in enumerate(rows[:3]):
        mine = target == c
        assert row["test_count"] == mine.sum()
        assert row["recall"] == pytest.approx((pred[mine] == c).mean())
        assert row["precision"] == pytest.approx((target[pred == c] == c).mean())
        shares = [row[f"routed_{s}"] for s in ("cluster_aided_1", "cluster_aided_2", "regular")]
        assert shares == pytest.approx([(stage[mine] == s).mean() for s in range(3)])
    assert rows[3]["recall"] is None and rows[3]["train_count"] == 1
