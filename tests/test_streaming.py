"""Streaming predict/evaluate: a file read in chunks of 7 rows gives exactly what the
in-memory path gives (CSV and .npz bytes/arrays, metrics, stages, separation)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import encode_labels, evaluate
from dlsa.analysis.streaming import evaluate_file, iter_predictions, predict_file
from dlsa.cli.common import write_csv, write_npz
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.errors import DLSAInputError
from dlsa.io.features import FeatureFileError, save_features
from dlsa.metrics.confusion import confusion_counts

FLT = FilterConfig(mixture=MixtureConfig(8, sigma=0.5), epochs=2, batch_size=128)


def _text(y: np.ndarray) -> np.ndarray:
    return np.array([f'class, "{v}"' for v in y])  # commas and quotes: CSV quoting


@pytest.fixture(scope="module", params=["integer", "text"])
def case(request, lt_data):
    """A depth-2 model fitted on integer or text labels, and its test labels."""
    convert = _text if request.param == "text" else np.asarray
    model = DLSAClassifier(
        depth=2, flow_filter=FLT, head=HeadConfig(epochs=3), selection=None, base="balsoftmax"
    ).fit(lt_data.X_train, convert(lt_data.y_train))
    return model, lt_data.X_test, convert(lt_data.y_test)


def _in_memory(model, X, tmp_path, chunk_rows):
    """What ``dlsa predict`` writes for X scored ``chunk_rows`` rows at a time."""
    parts = [
        model.predict_proba_and_route(X[i : i + chunk_rows]) for i in range(0, len(X), chunk_rows)
    ]
    proba = np.concatenate([p for p, _ in parts])
    stage = np.concatenate([s for _, s in parts])
    pred = model.classes_[proba.argmax(1)]
    write_csv(tmp_path / "memory.csv", pred, proba, stage)
    write_npz(tmp_path / "memory.npz", pred, proba, stage, model.classes_)
    return pred, proba, stage


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize("chunk_rows", [7, 10_000])
def test_predict_file_writes_what_predict_writes(case, tmp_path, suffix, chunk_rows):
    """Byte for byte, against ``dlsa predict``'s writers on the same chunks (10_000: one
    chunk, the whole file as ``dlsa predict`` scores it today)."""
    model, X, y = case
    path = save_features(tmp_path / f"test{suffix}", X, y)
    _in_memory(model, X, tmp_path, chunk_rows)
    assert predict_file(model, path, tmp_path / "out.csv", chunk_rows=chunk_rows) == len(X)
    assert predict_file(model, path, tmp_path / "out.npz", chunk_rows=chunk_rows) == len(X)
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    with np.load(tmp_path / "out.npz") as got, np.load(tmp_path / "memory.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            assert got[key].dtype == want[key].dtype
            np.testing.assert_array_equal(got[key], want[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["memory.csv", "memory.npz", "out.csv", "out.npz", f"test{suffix}"]
    )


def test_chunks_of_7_predict_as_the_whole_file(case, tmp_path):
    """Classes and stages exactly; probabilities to rounding (see the module docstring:
    a product of 1-3 rows takes another BLAS kernel)."""
    model, X, y = case
    path = save_features(tmp_path / "test.h5", X, y)
    pred, proba, stage = _in_memory(model, X, tmp_path, len(X))
    predict_file(model, path, tmp_path / "out.npz", chunk_rows=7)
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_array_equal(got["pred"], pred)
        np.testing.assert_array_equal(got["stage"], stage)
        np.testing.assert_allclose(got["proba"], proba, rtol=0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_evaluate_file_equals_evaluate(case, tmp_path, suffix):
    model, X, y = case
    path = save_features(tmp_path / f"test{suffix}", X, y)
    want = evaluate(model, X, y)
    got = evaluate_file(model, path, chunk_rows=7)
    for key in ("metrics", "stages", "separation"):
        assert got[key] == want[key], key
    target = encode_labels(model, y)
    expected = confusion_counts(want["pred"], target, len(model.classes_))
    np.testing.assert_array_equal(got["confusion"], expected)


def test_iter_predictions_routes_as_route(case, tmp_path):
    model, X, y = case
    path = save_features(tmp_path / "test.h5", X, y)
    parts = list(iter_predictions(model, path, chunk_rows=7))
    assert [p.offset for p in parts] == list(range(0, len(X), 7))
    np.testing.assert_array_equal(np.concatenate([p.stage for p in parts]), model.route(X))


def test_errors_name_the_file_and_write_nothing(case, tmp_path):
    model, X, y = case
    wrong = save_features(tmp_path / "wide.h5", np.ones((5, X.shape[1] + 1)))
    with pytest.raises(DLSAInputError, match=r"wide.h5: 9 features per sample, .* expects 8"):
        predict_file(model, wrong, tmp_path / "out.csv")
    bad = X.copy()
    bad[20, 3] = np.inf
    with pytest.raises(FeatureFileError):
        save_features(tmp_path / "bad.h5", bad)  # the writer refuses it too: write by hand
    with h5py.File(tmp_path / "bad.h5", "w") as fp:
        fp.create_dataset("features", data=bad)
    with pytest.raises(FeatureFileError, match=r"first at row 20, column 3"):
        predict_file(model, tmp_path / "bad.h5", tmp_path / "out.csv", chunk_rows=7)
    unlabelled = save_features(tmp_path / "unlabelled.npz", X)
    with pytest.raises(FeatureFileError, match="no 'labels'"):
        evaluate_file(model, unlabelled)
    with pytest.raises(DLSAInputError, match="use a .npz or .csv"):
        predict_file(model, unlabelled, tmp_path / "out.txt")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bad.h5", "unlabelled.npz", "wide.h5"]
