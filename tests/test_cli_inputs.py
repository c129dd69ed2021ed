"""Every input of a command is read and checked before the first fit (issue 30).

A bad ``--val``, ``--test``, ``--test-prior``, ``--config``, ``--features`` or
``--base-model`` is one line naming the flag and the file, exit status 2, raised before
anything is trained or scored (the training and scoring entry points fail the test if
reached) and with nothing written (``DLSAClassifier.fit``'s own checks before training:
``tests/test_validation_set.py``; the domains of the config numbers: ``tests/test_config.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import dlsa.analysis.figures  # noqa: F401 - bound to the real evaluate_file before any tripwire
from dlsa.cli import main
from dlsa.config import HeadConfig
from dlsa.estimator import DLSAClassifier
from dlsa.io.features import save_features

COUNTS = (30, 15, 8, 5)
FAST = ["--config", "small", "--base", "balsoftmax", "--flow-filter.mixture.n-components", "4"]
WORK = (
    "dlsa.estimator.final_fit.fit_cascade",
    "dlsa.estimator.classifier.select",
    "dlsa.analysis.streaming.evaluate_file",
    "dlsa.analysis.streaming.predict_file",
    "dlsa.analysis.figures.write_figures_file",
)
"""Where training and scoring start (after every check of the inputs)."""


def _data(seed: int = 0, counts: tuple[int, ...] = COUNTS) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).normal(size=(len(y), 3)) + y[:, None], y


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Good inputs, inputs that are each bad in one way, and two fitted models (the second
    on three classes)."""
    root = tmp_path_factory.mktemp("inputs")
    X, y = _data()
    save_features(root / "train.h5", X, y)
    save_features(root / "val.h5", X[::3], y[::3])
    save_features(root / "test.npz", X[1::3], y[1::3])
    save_features(root / "val9.h5", X[:12], np.where(np.arange(12) == 3, 9, y[:12]))
    save_features(root / "text.h5", X[:12], np.array([f"c{v}" for v in y[:12]]))
    save_features(root / "one.h5", X[:1], y[:1])
    save_features(root / "narrow.npz", X[:12, :2], y[:12])
    save_features(root / "unlabelled.npz", X[:12])
    (root / "prior9.json").write_text(json.dumps({str(c): 1 for c in (0, 1, 2, 3, 9)}))
    (root / "prior_short.csv").write_text("class,frequency\n0,1\n1,1\n")
    (root / "c.yaml").write_text("flow_filter:\n  lrr: 0.3\n")
    (root / "choice.yaml").write_text("selection:\n  multiplicity: nope\n")
    head = HeadConfig(epochs=1)
    DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=head).fit(X, y).save(
        root / "model"
    )
    keep = y < 3
    DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=head).fit(
        X[keep], y[keep]
    ).save(root / "model3")
    return root


@pytest.fixture
def no_work(monkeypatch):
    """Training or scoring before the error fails the test."""

    def tripwire(*args, **kwargs):
        pytest.fail("training or scoring started before the inputs were checked")

    for target in WORK:
        monkeypatch.setattr(target, tripwire)


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _refused(capsys, argv: list[str], *needles: str, folders=()) -> str:
    """Run ``dlsa argv``: exit 2, one stderr line ``dlsa <command>: error: ...`` holding
    every needle, and no file added or removed in ``folders``."""
    before = [_files(f) for f in folders]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dlsa {argv[0]}: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert [_files(f) for f in folders] == before
    return lines[0]


def _fit(root, tmp_path, *flags: str, val: str = "val.h5", test: str = "test.npz") -> list[str]:
    """``dlsa fit`` on the files of ``root`` (no ``--val`` when ``val`` is empty)."""
    val_flag = ["--val", str(root / val)] if val else []
    return ["fit", "--train", str(root / "train.h5"), "--test", str(root / test), *val_flag,
            "--out", str(tmp_path / "o"), *FAST, *flags]  # fmt: skip


@pytest.mark.parametrize(
    ("val", "flags", "needles"),
    [
        ("val9.h5", [], ["--val", "val9.h5: labels not seen in --train: [9]"]),
        ("text.h5", [], ["--val", "text.h5: labels are text but --train has integer labels"]),
        ("narrow.npz", [], ["--val", "narrow.npz has 2 features but --train", "has 3"]),
        ("one.h5", ["--calibrate"], ["--val", "one.h5: --calibrate needs at least 2"]),
    ],
    ids=["unseen-label", "text-labels", "other-dimension", "calibrate-one-row"],
)
def test_fit_blames_a_bad_val_on_val_before_any_fit(
    root, tmp_path, capsys, no_work, val, flags, needles
):
    _refused(capsys, _fit(root, tmp_path, *flags, val=val), *needles, folders=[tmp_path, root])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("test", "needles"),
    [
        ("val9.h5", ["--test", "val9.h5: labels not seen in --train: [9]"]),
        ("text.h5", ["--test", "text.h5: labels are text but --train has integer labels"]),
    ],
)
def test_fit_checks_test_labels_before_any_fit(root, tmp_path, capsys, no_work, test, needles):
    _refused(capsys, _fit(root, tmp_path, test=test), *needles, folders=[tmp_path])


@pytest.mark.parametrize(
    ("prior", "needles"),
    [
        ("prior9.json", ["--test-prior", "prior9.json", "'9'", "--train"]),
        ("prior_short.csv", ["--test-prior", "prior_short.csv", "lacks classes", "2, 3"]),
    ],
)
def test_fit_checks_the_test_prior_against_train_before_any_fit(
    root, tmp_path, capsys, no_work, prior, needles
):
    argv = _fit(root, tmp_path, "--test-prior", str(root / prior))
    _refused(capsys, argv, *needles, folders=[tmp_path])


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--config", "{root}/c.yaml"], ["--config", "c.yaml", "lrr"]),
        (["--flow-filter.mixture.n-components", "900"], ["--train", "K=900", "58 training"]),
        (["--validation-folds", "40"], ["--train", "validation_folds=40", "largest class has 30"]),
        (["--head.lr", "0"], ["head.lr must be > 0"]),
        (["--selection.folds", "1"], ["selection.folds must be in [2, "]),
        (["--random-state", "-1"], ["random_state", "-1"]),
        (["--base", "tau-norm", "--base-params", '{"tau": -1}'], ["base_params", "tau"]),
        (["--selection.prior-guard", "0"], ["selection.prior_guard must be > 0, got 0.0"]),
        (["--config", "{root}/choice.yaml"], ["--config", "selection.multiplicity must be one"]),
        (["--selection.bases", "ce,nope"], ["selection.bases[1] must be one of", "'nope'"]),
    ],
    ids=str.split(
        "yaml-unknown-key K-above-N folds-above-class lr-0 folds-1 seed bp prior-guard "
        "yaml-choice bases-item"
    ),
)
def test_config_and_data_size_are_checked_before_any_fit(
    root, tmp_path, capsys, no_work, flags, needles
):
    flags = [f.replace("{root}", str(root)) for f in flags]
    _refused(capsys, _fit(root, tmp_path, *flags, val=""), *needles, folders=[tmp_path])


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ('{"c": 0}', ["base_params of 'logreg'", "c must be in [1e-30, 1e+30], got 0"]),
        ('{"cs": [1, null]}', ["base_params of 'logreg'", "cs must be a non-empty list"]),
        ('{"inner_folds": 2.5}', ["inner_folds must be 0 or an int >= 2, got 2.5"]),
        ('{"max_iter": true}', ["max_iter must be an int in [1, 2147483647], got True"]),
        ('{"inner_folds": 31}', ["--train", "base_params.inner_folds=31", "largest class has 30"]),
    ],
    ids=["c-0", "cs-null", "folds-float", "iter-bool", "folds-above-class"],
)
def test_logreg_base_params_are_checked_before_any_fit(
    root, tmp_path, capsys, no_work, params, needles
):
    """``--base-params`` of ``logreg`` (main's base) get the checks of every base: a
    value of another type, out of range, or too many folds for the data is one line."""
    argv = _fit(root, tmp_path, "--base", "logreg", "--base-params", params, val="")
    _refused(capsys, argv, *needles, folders=[tmp_path])


def test_diagnose_blames_a_bad_val_on_val(root, tmp_path, capsys, no_work):
    argv = ["diagnose", "--train", str(root / "train.h5"), "--val", str(root / "val9.h5"),
            "--out", str(tmp_path / "d.json"), *FAST]  # fmt: skip
    _refused(capsys, argv, "--val", "labels not seen in --train: [9]", folders=[tmp_path])


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--test", "{root}/text.h5"], ["--test", "labels are text"]),
        (["--seeds", "0,a"], ["--seeds", "'0,a'"]),
        (["--seeds", "-1"], ["--seeds"]),
        (["--bases", "balsoftmax,nope"], ["--bases", "nope"]),
        (["--depth", "0"], ["--depth 0", "compare needs flow filters"]),
    ],
)
def test_compare_checks_its_inputs_and_lists_first(
    root, tmp_path, capsys, no_work, flags, needles
):
    flags = [f.format(root=root) for f in flags]
    argv = ["compare", "--train", str(root / "train.h5"), "--test", str(root / "test.npz"),
            "--out", str(tmp_path / "c"), *FAST, *flags]  # fmt: skip
    _refused(capsys, argv, *needles, folders=[tmp_path])
    assert not (tmp_path / "c").exists()


FEATURE_CASES = [
    ("narrow.npz", ["--features", "narrow.npz has 2 features but --model", "has 3"]),
    ("text.h5", ["--features", "text.h5: labels are text but --model", "integer labels"]),
    ("val9.h5", ["--features", "val9.h5: labels not seen in --model", "[9]"]),
    ("unlabelled.npz", ["--features", "no 'labels'"]),
]


@pytest.mark.parametrize(
    ("command", "features", "needles"),
    [(c, *case) for c in ("evaluate", "figures") for case in FEATURE_CASES]
    + [("predict", *FEATURE_CASES[0])],  # predict reads no labels
)
def test_commands_on_a_model_check_the_features_against_it(
    root, tmp_path, capsys, no_work, command, features, needles
):
    out = {"evaluate": "m.json", "predict": "p.csv", "figures": "fig"}[command]
    argv = [command, "--model", str(root / "model"), "--features", str(root / features),
            "--out", str(tmp_path / out)]  # fmt: skip
    _refused(capsys, argv, *needles, folders=[tmp_path])


def test_figures_refuses_a_base_model_of_other_classes(root, tmp_path, capsys, no_work):
    argv = ["figures", "--model", str(root / "model"), "--base-model", str(root / "model3"),
            "--features", str(root / "test.npz"), "--out", str(tmp_path / "fig")]  # fmt: skip
    _refused(capsys, argv, "--base-model", "model3", "3 classes", "--model", folders=[tmp_path])


def test_predict_checks_the_test_prior_before_scoring(root, tmp_path, capsys, no_work):
    prior = ["--test-prior", str(root / "prior9.json")]
    argv = ["predict", "--model", str(root / "model"), "--features", str(root / "test.npz"),
            "--out", str(tmp_path / "p.csv"), *prior]  # fmt: skip
    _refused(capsys, argv, "--test-prior", "prior9.json", "'9'", folders=[tmp_path])
