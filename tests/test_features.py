"""Feature files: HDF5/npz round trips, the original layout, and schema errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dlsa.errors import DLSAInputError
from dlsa.io.features import (
    FeatureFileError,
    check_features,
    check_labels,
    load_features,
    save_features,
)


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".npz"])
def test_round_trip(tmp_path, suffix, rng):
    X = rng.normal(size=(10, 4))
    y = rng.integers(0, 3, 10)
    path = save_features(tmp_path / f"f{suffix}", X, y, split="train", backbone="resnet")
    data = load_features(path)
    assert data.X.dtype == np.float32 and data.y.dtype == np.int64
    np.testing.assert_allclose(data.X, X.astype(np.float32))
    np.testing.assert_array_equal(data.y, y)
    assert (data.split, data.backbone) == ("train", "resnet")
    assert data.provenance == "unknown"  # not recorded: unknown
    assert [p.name for p in tmp_path.iterdir()] == [f"f{suffix}"]  # no temp file left


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize("provenance", ["seen", "unseen", "mixed", "unknown"])
def test_provenance_round_trip(tmp_path, suffix, provenance):
    path = save_features(
        tmp_path / f"f{suffix}", np.ones((3, 2)), [0, 1, 1], backbone_trained_on=provenance
    )
    assert load_features(path).provenance == provenance


def test_provenance_is_checked(tmp_path):
    with pytest.raises(FeatureFileError, match="backbone_trained_on"):
        save_features(tmp_path / "f.h5", np.ones((3, 2)), backbone_trained_on="maybe")
    assert not (tmp_path / "f.h5").exists()
    with h5py.File(tmp_path / "g.h5", "w") as fp:
        fp.create_dataset("features", data=np.ones((3, 2)))
        fp.attrs["backbone_trained_on"] = "often"
    with pytest.raises(FeatureFileError, match="backbone_trained_on"):
        load_features(tmp_path / "g.h5", require_labels=False)


def test_reads_the_original_release_layout_with_label_key(tmp_path):
    with h5py.File(tmp_path / "orig.h5", "w") as fp:
        fp.create_dataset("features", data=np.ones((3, 2), dtype=np.float64))
        fp.create_dataset("label", data=np.array([0.0, 1.0, 1.0]))
    data = load_features(tmp_path / "orig.h5")
    assert data.y.tolist() == [0, 1, 1]


def test_unlabelled_file(tmp_path):
    save_features(tmp_path / "u.npz", np.ones((2, 3)))
    assert load_features(tmp_path / "u.npz", require_labels=False).y is None
    with pytest.raises(FeatureFileError, match="no 'labels'"):
        load_features(tmp_path / "u.npz")


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.ones(3), None, r"shape \(N, D\).*Reshape your data"),
        (np.ones((0, 3)), None, r"0 sample\(s\) \(shape=\(0, 3\)\)"),
        (np.ones((3, 0)), None, r"0 feature\(s\) \(shape=\(3, 0\)\)"),
        (np.array([[1.0, np.inf]]), None, r"1 NaN or inf value\(s\).*column 1: inf"),
        (np.array([[1.0, 1e39]]), None, r"beyond-float32.*column 1: 1e\+39"),
        (np.ones((2, 2)) * 1j, None, "Complex data not supported"),
        (np.array([["a", "b"]]), None, "must be numeric, got dtype <U1"),
        (np.array([[1.0, "x"]], dtype=object), None, "must be numeric: could not convert"),
        (np.ones((3, 2)), np.ones(4), "3 feature rows but 4 labels"),
        (np.ones((2, 2)), np.array([0.5, 1.0]), "integers.*Unknown label type: continuous"),
        (np.ones((2, 2)), np.array(["a", 1], dtype=object), "all be text or all integers"),
        (np.ones((2, 2)), np.array([1j, 2j]), "integers, text or booleans"),
        (np.ones((2, 2)), np.array([b"\xff", b"a"]), "not UTF-8"),
    ],
)
def test_schema_errors(X, y, match):
    with pytest.raises(FeatureFileError, match=match):
        check_features(X, y, source="file.h5")


def test_object_and_sparse_inputs():
    X, y = check_features(np.ones((2, 2), dtype=object), np.array([3, 7], dtype=object))
    assert X.dtype == np.float32 and y.dtype == np.int64 and y.tolist() == [3, 7]
    bad = np.ones((2, 2), dtype=object)
    bad[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="file.h5: features must be numeric: float"):
        check_features(bad, source="file.h5")
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(FeatureFileError, match="sparse input is not supported"):
        check_features(sparse.csr_array(np.eye(3)), source="file.h5")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FeatureFileError, match="missing.h5: no such feature file"):
        load_features(tmp_path / "missing.h5")
    (tmp_path / "x.txt").write_text("1 2")
    with pytest.raises(FeatureFileError, match="unknown feature file suffix"):
        load_features(tmp_path / "x.txt")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(FeatureFileError, match="bad.npz: cannot read"):
        load_features(tmp_path / "bad.npz")
    with h5py.File(tmp_path / "nofeat.h5", "w") as fp:
        fp.create_dataset("x", data=np.ones(2))
    with pytest.raises(FeatureFileError, match="no 'features' dataset"):
        load_features(tmp_path / "nofeat.h5")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(FeatureFileError):
        save_features(tmp_path / "f.h5", np.array([[np.nan]]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize("labels", [["cat", "dog", "é"], [b"cat", b"dog", b"\xc3\xa9"]])
def test_text_and_bytes_labels_are_read_as_text(tmp_path, suffix, labels):
    path = tmp_path / f"f{suffix}"
    if suffix == ".h5":
        with h5py.File(path, "w") as fp:
            fp.create_dataset("features", data=np.ones((3, 2)))
            fp.create_dataset("labels", data=labels, dtype=h5py.string_dtype())
    else:
        np.savez(path, features=np.ones((3, 2)), labels=np.array(labels))
    data = load_features(path)
    assert data.y.dtype.kind == "U" and data.y.tolist() == ["cat", "dog", "é"]
    again = load_features(save_features(tmp_path / f"g{suffix}", data.X, data.y))
    assert again.y.tolist() == ["cat", "dog", "é"]


def test_label_kinds():
    assert check_labels(np.array([[3], [4]]), 2).dtype == np.int64
    assert check_labels(np.array([2.0, 5.0]), 2).tolist() == [2, 5]
    assert check_labels(np.array([True, False]), 2).dtype == bool
    assert check_labels(np.array(["a", b"b"], dtype=object), 2).tolist() == ["a", "b"]
    with pytest.raises(FeatureFileError, match="int64"):
        check_labels(np.array([2**64 - 1], dtype=np.uint64), 1)
    assert issubclass(FeatureFileError, DLSAInputError)


# ------------------------------------------------------------------ property tests
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LABEL_KINDS = ["none", "int", "float", "fraction", "text", "bytes", "bad-bytes", "bool", "nan"]


def _labels(kind: str, n: int, n_classes: int) -> np.ndarray | None:
    idx = np.arange(n) % n_classes
    return {
        "none": None,
        "int": idx.astype(np.int32),
        "float": idx.astype(np.float64),
        "fraction": idx + 0.5,
        "text": np.array([f"class {i}" for i in idx], dtype=str),
        "bytes": np.array([f"c{i}".encode() for i in idx], dtype=bytes),
        "bad-bytes": np.array([b"\xff%d" % i for i in idx], dtype=bytes),
        "bool": idx % 2 == 0,
        "nan": np.full(n, np.nan),
    }[kind]


def _write_raw(path, X, y) -> None:
    """Write a feature file without any of save_features' checks."""
    if path.suffix == ".npz":
        arrays = {"features": X} | ({} if y is None else {"labels": y})
        np.savez(path, **arrays)
        return
    with h5py.File(path, "w") as fp:
        fp.create_dataset("features", data=X)
        if y is not None and y.dtype.kind == "U":
            fp.create_dataset("labels", data=y.astype(object), dtype=h5py.string_dtype())
        elif y is not None:
            fp.create_dataset("labels", data=y)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 5),
    d=st.integers(0, 3),
    dtype=st.sampled_from(["float16", "float32", "float64", "int8", "int64", "bool"]),
    kind=st.sampled_from(LABEL_KINDS),
    n_classes=st.integers(1, 3),
    bad_value=st.sampled_from([None, np.nan, np.inf, 1e300]),
    suffix=st.sampled_from([".h5", ".npz"]),
)
def test_reader_returns_a_valid_set_or_the_documented_error(
    tmp_path, n, d, dtype, kind, n_classes, bad_value, suffix
):
    X = np.arange(n * d, dtype=np.float64).reshape(n, d).astype(dtype)
    if bad_value is not None and X.size and X.dtype.kind == "f":
        X[0, 0] = bad_value
    y = _labels(kind, n, n_classes)
    path = tmp_path / f"f{suffix}"
    _write_raw(path, X, y)
    valid = (
        n > 0
        and d > 0
        and dtype != "bool"
        and np.isfinite(X.astype(np.float32)).all()
        and kind not in ("fraction", "bad-bytes", "nan")
    )
    try:
        data = load_features(path, require_labels=False)
    except FeatureFileError as err:
        assert not valid, err
        assert str(path) in str(err)
        return
    assert valid
    assert data.X.dtype == np.float32 and data.X.shape == (n, d)
    if y is None:
        assert data.y is None
    else:
        assert data.y.shape == (n,) and data.y.dtype.kind in "iUb"
        assert len(np.unique(data.y)) == min(n_classes, n, 2 if kind == "bool" else n_classes)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_files_give_the_documented_error(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("garbage")
    for suffix in (".h5", ".npz"):
        (root / f"g{suffix}").write_bytes(content)
        with pytest.raises(FeatureFileError, match=f"g{suffix}"):
            load_features(root / f"g{suffix}")


def test_a_single_npy_array_is_not_a_feature_file(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(FeatureFileError, match="not an .npz archive"):
        load_features(tmp_path / "a.npz")
