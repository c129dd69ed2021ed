"""`dlsa demo` end to end on a small slice of the real Fashion-MNIST files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsa.cli import main
from dlsa.datasets.fashion_mnist import FASHION_MNIST_ROOT
from dlsa.io.features import load_features

HAVE_FMNIST = (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FMNIST, reason="apt-get install dataset-fashion-mnist")
def test_demo_runs_end_to_end_and_reports_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["-q", "demo", "--out", str(out), "--n-max", "300", "--imbalance", "50",
            "--backbone-epochs", "1", "--flow-filter.mixture.n-components", "10",
            "--flow-filter.epochs", "3", "--head.epochs", "3",
            "--selection.bases", "balsoftmax,ce", "--selection.folds", "2"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    assert record["reference"] == "balsoftmax" and record["chosen"] in text
    assert "stage 1: backbone" in text and "scored on the validation set" in text
    assert "chosen: " in text and (out / "val.h5").is_file()
    assert record["counts"][0] > record["counts"][-1]
    for name in ("base", "dlsa"):
        assert 0.2 < record["metrics"][name]["overall"] <= 1.0  # well above 10% chance
    assert {"data", "stage 1: backbone", "features", "evaluation"} <= set(record["timings"])
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "test.h5").is_file() and (out / "backbone" / "best.safetensors").is_file()
    trained_on = [load_features(out / f"{s}.h5").provenance for s in ("train", "val", "test")]
    assert trained_on == ["seen", "unseen", "unseen"]


def test_demo_without_data_says_how_to_get_it(tmp_path, capsys):
    code = main(["-q", "demo", "--out", str(tmp_path / "d"), "--data-root", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset-fashion-mnist" in err
    assert not (tmp_path / "d").exists()
