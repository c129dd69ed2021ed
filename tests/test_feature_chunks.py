"""Chunked reading of feature files: the same rows and checks as load_features."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dlsa.errors import DLSAInputError
from dlsa.io.feature_chunks import feature_file_info, iter_feature_chunks
from dlsa.io.features import FeatureFileError, load_features, save_features

LABELS = {
    "integer": np.arange(23) % 4,
    "text": np.array(["a", "bé", "c, d"] * 7 + ["a", "a"]),
}


def _joined(path, chunk_rows, **kw):
    chunks = list(iter_feature_chunks(path, chunk_rows, **kw))
    assert [c.offset for c in chunks] == list(range(0, 23, chunk_rows))
    y = None if chunks[0].y is None else np.concatenate([c.y for c in chunks])
    return np.concatenate([c.X for c in chunks]), y


@pytest.mark.parametrize("kind", sorted(LABELS))
@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_chunks_join_to_load_features(tmp_path, rng, suffix, kind):
    path = save_features(tmp_path / f"f{suffix}", rng.normal(size=(23, 3)), LABELS[kind])
    whole = load_features(path)
    X, y = _joined(path, 7)
    np.testing.assert_array_equal(X, whole.X)
    np.testing.assert_array_equal(y, whole.y)
    assert X.dtype == np.float32 and y.dtype.kind == whole.y.dtype.kind
    assert _joined(path, 7, read_labels=False)[1] is None


def test_chunked_compressed_and_original_layouts(tmp_path, rng):
    X = rng.normal(size=(23, 3))
    with h5py.File(tmp_path / "chunked.h5", "w") as fp:  # HDF5 chunks of 5 rows, gzip
        fp.create_dataset("features", data=X, chunks=(5, 3), compression="gzip")
        fp.create_dataset("label", data=LABELS["integer"].astype(float)[:, None])
    np.savez_compressed(tmp_path / "packed.npz", features=X, labels=LABELS["text"])
    for name in ("chunked.h5", "packed.npz"):
        whole = load_features(tmp_path / name)
        got_X, got_y = _joined(tmp_path / name, 7)
        np.testing.assert_array_equal(got_X, whole.X)
        np.testing.assert_array_equal(got_y, whole.y)
    assert not feature_file_info(tmp_path / "packed.npz").streamed


def test_info_reads_metadata(tmp_path, rng):
    path = save_features(tmp_path / "f.npz", rng.normal(size=(23, 3)), split="test")
    info = feature_file_info(path)
    assert (info.n_rows, info.dim, info.has_labels, info.split) == (23, 3, False, "test")
    assert info.dtype == "float32" and info.streamed


def _h5(path, features, labels=None):
    with h5py.File(path, "w") as fp:
        fp.create_dataset("features", data=features)
        if labels is not None:
            fp.create_dataset("labels", data=labels)
    return path


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.ones(4), None, r"must have shape \(N, D\), got \(4,\)"),
        (np.ones((4, 2)), np.ones(3), "4 feature rows but 3 labels"),
        (np.ones((4, 2)), np.array([0.5, 1, 2, 3]), "non-integral"),
        (np.array([[b"x"]]), None, "must be numeric"),
    ],
)
def test_errors_match_load_features(tmp_path, features, labels, message):
    path = _h5(tmp_path / "bad.h5", features, labels)
    with pytest.raises(FeatureFileError, match=message):
        load_features(path, require_labels=False)
    with pytest.raises(FeatureFileError, match=message):
        list(iter_feature_chunks(path, 2))


def test_non_finite_value_is_named_by_its_row_in_the_file(tmp_path):
    X = np.ones((23, 3))
    X[16, 2] = np.nan
    path = _h5(tmp_path / "nan.h5", X)
    chunks = iter_feature_chunks(path, 7)
    assert next(chunks).offset == 0 and next(chunks).offset == 7
    with pytest.raises(FeatureFileError, match=r"nan.h5: .*\(first at row 16, column 2"):
        next(chunks)


def test_missing_labels_bad_chunk_size_and_damaged_files(tmp_path):
    path = save_features(tmp_path / "f.npz", np.ones((3, 2)))
    with pytest.raises(FeatureFileError, match="no 'labels'"):
        next(iter_feature_chunks(path, require_labels=True))
    with pytest.raises(DLSAInputError, match="chunk_rows must be >= 1"):
        next(iter_feature_chunks(path, 0))
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:100])
    (tmp_path / "cut.h5").write_bytes(b"not hdf5")
    for name in ("cut.npz", "cut.h5", "missing.h5"):
        with pytest.raises(FeatureFileError, match=name):
            feature_file_info(tmp_path / name)
