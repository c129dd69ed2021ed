"""The selection's evidence follows the provenance of --train (`dlsa fit` / `diagnose` /
`compare`), and report.md says which evidence it used and why."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from dlsa.analysis.selection_report import evidence_line, selection_table
from dlsa.cli import main
from dlsa.cli.evidence import with_provenance
from dlsa.config import DLSAConfig, SelectionConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.io.features import FeatureSet, save_features

CONFIG = DLSAConfig(selection=SelectionConfig())


def args(quiet: bool = False, val: str | None = None, **cfg: str) -> argparse.Namespace:
    ns = argparse.Namespace(quiet=quiet, val=val)
    for key, value in cfg.items():
        setattr(ns, f"cfg:selection.{key}", value)
    return ns


def train(provenance: str) -> FeatureSet:
    return FeatureSet(X=None, y=None, provenance=provenance)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provenance", "expected"),
    [("seen", "seen"), ("mixed", "seen"), ("unseen", "unseen"), ("unknown", "unknown")],
)
def test_train_features_follow_the_file(provenance, expected, capsys) -> None:
    config = with_provenance(CONFIG, args(), train(provenance))
    assert config.selection.train_features == expected
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("selection: out of fold on --train")
    assert ("prior guard is off" in err) == (expected == "unseen")
    assert ("pass --val" in err) == (expected != "unseen")


def test_the_user_setting_wins_and_quiet_is_silent(capsys) -> None:
    config = with_provenance(CONFIG, args(train_features="unknown"), train("unseen"))
    assert config.selection.train_features == "unknown"
    assert "--selection.train-features" in capsys.readouterr().err
    from_yaml = dataclasses.replace(CONFIG, selection=SelectionConfig(train_features="seen"))
    assert with_provenance(from_yaml, args(quiet=True), train("unseen")) == from_yaml
    assert capsys.readouterr().err == ""
    off = dataclasses.replace(CONFIG, selection=None)
    assert with_provenance(off, args(), train("seen")) == off
    with_provenance(CONFIG, args(val="v.h5"), train("seen"))
    assert capsys.readouterr().err.startswith("selection: on --val")


def test_report_names_the_evidence() -> None:
    assert evidence_line("validation", "seen").startswith("selection: on --val")
    sel = {"folds": 3, "margin": 2.0, "min_gain": 0.002, "seconds": 1.0, "chosen": "b",
           "rounds": [], "source": "out-of-fold", "train_features": "seen",
           "prior_guard": 2.0}  # fmt: skip
    text = selection_table(sel)
    assert "Evidence: out of fold on --train (the backbone trained on these images" in text


def test_fit_reads_the_provenance_of_train(tmp_path, capsys) -> None:
    d = make_long_tailed_features(n_classes=4, n_features=4, n_max=40, imbalance=5, seed=0)
    save_features(tmp_path / "train.h5", d.X_train, d.y_train, backbone_trained_on="unseen")
    save_features(tmp_path / "test.h5", d.X_test, d.y_test)
    argv = ["fit", "--train", str(tmp_path / "train.h5"), "--test", str(tmp_path / "test.h5"),
            "--out", str(tmp_path / "o"), "--config", "small", "--selection.folds", "2",
            "--selection.bases", "balsoftmax", "--selection.proportions", "0.5",
            "--depth", "1", "--flow-filter.mixture.n-components", "4",
            "--flow-filter.epochs", "1", "--head.epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "backbone_trained_on=unseen" in capsys.readouterr().err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["selection"]["train_features"] == "unseen"
    assert results["selection"]["prior_guard"] is None
    assert "Evidence: out of fold on --train" in (tmp_path / "o" / "report.md").read_text()
