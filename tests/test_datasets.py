"""Tests of dlsa.datasets: idx files, Fashion-MNIST(-LT), CIFAR-LT, split lists, images."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dlsa.datasets import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_ROOT,
    DataFileError,
    ImageListDataset,
    cifar_lt,
    fashion_mnist_lt,
    load_cifar,
    load_cifar_batch,
    load_fashion_mnist,
    load_image,
    make_long_tailed,
    read_class_folders,
    read_idx,
    read_split_list,
    resize_center_crop,
    split_long_tailed,
)
from dlsa.engine.splits import long_tailed_counts

Image = pytest.importorskip("PIL.Image")

REAL_FASHION = all((Path(FASHION_MNIST_ROOT) / f).is_file() for f in FASHION_MNIST_FILES.values())


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write an idx file (uint8 payload) the way the MNIST files are laid out."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def fake_fashion_dir(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 10 * per_class), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28))
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


# ------------------------------------------------------------------ long-tailed subsets


def test_make_long_tailed_exact_profile():
    labels = np.repeat(np.arange(5), 50)
    idx = make_long_tailed(labels, imbalance=10, n_max=40, seed=0)
    expected = long_tailed_counts(40, 5, 10)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=5), expected)
    assert np.all(np.diff(idx) > 0), "indices must be sorted and unique"


def test_make_long_tailed_default_n_max_is_smallest_class():
    labels = np.concatenate([np.zeros(30, int), np.ones(20, int), np.full(25, 2)])
    idx = make_long_tailed(labels, imbalance=4, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[idx]), long_tailed_counts(20, 3, 4))


def test_make_long_tailed_seeds():
    labels = np.repeat(np.arange(4), 100)
    a = make_long_tailed(labels, imbalance=10, n_max=50, seed=3)
    b = make_long_tailed(labels, imbalance=10, n_max=50, seed=3)
    c = make_long_tailed(labels, imbalance=10, n_max=50, seed=4)
    np.testing.assert_array_equal(a, b)
    for k in range(4):  # every class has more samples than it needs
        assert not np.array_equal(a[labels[a] == k], c[labels[c] == k])


def test_make_long_tailed_rejects_short_class():
    labels = np.array([0] * 10 + [1] * 2)
    with pytest.raises(ValueError, match="class 1 has 2 samples"):
        make_long_tailed(labels, imbalance=2, n_max=10)


def test_split_long_tailed_validation_from_train_subset():
    labels = np.repeat(np.arange(4), 100)
    images = np.arange(400)[:, None, None].repeat(2, 1).repeat(2, 2)
    s = split_long_tailed(
        images, labels, images[:8], labels[:8], name="toy", class_names="abcd",
        imbalance=20, n_max=60, val_fraction=0.2, seed=0,
    )  # fmt: skip
    counts = long_tailed_counts(60, 4, 20)
    train_c, val_c = (
        np.bincount(s.train_labels, minlength=4),
        np.bincount(s.val_labels, minlength=4),
    )
    np.testing.assert_array_equal(train_c + val_c, counts)
    np.testing.assert_array_equal(val_c, np.minimum(np.round(0.2 * counts), counts - 1))
    assert train_c.min() >= 1
    assert not set(s.train_images[:, 0, 0]) & set(s.val_images[:, 0, 0])
    np.testing.assert_array_equal(labels[s.train_images[:, 0, 0]], s.train_labels)
    assert s.class_names == ("a", "b", "c", "d") and len(s.test_labels) == 8


# ------------------------------------------------------------------ idx, Fashion-MNIST


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", a, compress=compress)), a)


def test_read_idx_big_endian_int(tmp_path):
    a = np.array([1, -2, 70000], dtype=">i4")
    p = tmp_path / "ints.idx"
    p.write_bytes(bytes([0, 0, 0x0C, 1]) + np.array([3], ">u4").tobytes() + a.tobytes())
    out = read_idx(p)
    np.testing.assert_array_equal(out, [1, -2, 70000])
    assert out.dtype.isnative


@pytest.mark.parametrize(
    "header, match",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (b"\x00\x00\x42\x01", "type code"),
        (b"\x00\x00\x08\x09", "dimensions"),
    ],
)
def test_read_idx_rejects_corrupt_header(tmp_path, header, match):
    p = tmp_path / "broken-idx1-ubyte"
    p.write_bytes(header + np.array([3], ">u4").tobytes() + b"abc")
    with pytest.raises(DataFileError, match=match) as err:
        read_idx(p)
    assert str(p) in str(err.value)


def test_read_idx_rejects_wrong_payload_size(tmp_path):
    p = write_idx(tmp_path / "short.gz", np.zeros((2, 3), np.uint8))
    raw = gzip.decompress(p.read_bytes())[:-1]
    p.write_bytes(gzip.compress(raw))
    with pytest.raises(DataFileError, match="short.gz.*shape"):
        read_idx(p)


def test_read_idx_rejects_broken_gzip(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(b"\x1f\x8b" + b"junk")
    with pytest.raises(DataFileError, match="bad.gz"):
        read_idx(p)


def test_load_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path) in msg
    for name in FASHION_MNIST_FILES.values():
        assert name in msg


def test_fake_fashion_mnist_lt(tmp_path):
    root = fake_fashion_dir(tmp_path, per_class=12)
    train_x, train_y, test_x, test_y = load_fashion_mnist(root)
    assert train_x.shape == (120, 28, 28) and train_x.dtype == np.uint8
    assert train_y.dtype == np.int64 and test_x.shape == (20, 28, 28)
    s = fashion_mnist_lt(root, imbalance=10, val_fraction=0.0, seed=0, n_max=10)
    np.testing.assert_array_equal(np.bincount(s.train_labels), long_tailed_counts(10, 10, 10))
    assert len(s.val_labels) == 0 and s.name == "fashion-mnist-lt-r10"
    np.testing.assert_array_equal(s.test_images, test_x)


def test_fashion_mnist_mismatched_files(tmp_path):
    root = fake_fashion_dir(tmp_path)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(7))
    with pytest.raises(DataFileError, match="t10k-images"):
        load_fashion_mnist(root)


@pytest.mark.skipif(not REAL_FASHION, reason="Fashion-MNIST idx files not installed")
def test_real_fashion_mnist_lt():
    s = fashion_mnist_lt(imbalance=100, val_fraction=0.1, seed=0)
    counts = long_tailed_counts(6000, 10, 100)
    total = np.bincount(s.train_labels, minlength=10) + np.bincount(s.val_labels, minlength=10)
    np.testing.assert_array_equal(total, counts)
    assert s.train_images.shape[1:] == (28, 28) and s.train_images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(s.test_labels), np.full(10, 1000))
    assert s.test_images.shape == (10000, 28, 28)


# ------------------------------------------------------------------------------ CIFAR


def cifar_data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def fake_cifar10(root: Path, per_class_per_batch: int = 2) -> Path:
    """CIFAR-10 python batches as the original (Python 2) files have them: bytes keys."""
    n = 10 * per_class_per_batch
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {b"data": cifar_data(n, i), b"labels": list(np.arange(n) % 10)}
        batch[b"labels"] = [int(v) for v in batch[b"labels"]]
        (root / name).write_bytes(pickle.dumps(batch, protocol=3))
    meta = {b"label_names": [f"class{c}".encode() for c in range(10)]}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=3))
    return root


def fake_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir()
    for i, (name, per_class) in enumerate((("train", 6), ("test", 1))):
        n = 100 * per_class
        batch = {"data": cifar_data(n, i), "fine_labels": [c % 100 for c in range(n)]}
        batch["coarse_labels"] = [c % 20 for c in range(n)]
        (folder / name).write_bytes(pickle.dumps(batch, protocol=5))
    return root


def test_cifar_batch_round_trip(tmp_path):
    data = cifar_data(4, 0)
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2, 3, 4]}, protocol=2 + 1))
    batch = load_cifar_batch(p)
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == [1, 2, 3, 4]


def test_cifar10_lt_from_fake_batches(tmp_path):
    root = fake_cifar10(tmp_path)
    train_x, train_y, test_x, test_y, names = load_cifar(root, 10)
    assert train_x.shape == (100, 32, 32, 3) and train_x.dtype == np.uint8
    assert test_x.shape == (20, 32, 32, 3) and names[3] == "class3"
    raw = load_cifar_batch(root / "data_batch_1")["data"]
    np.testing.assert_array_equal(train_x[0, 1, 2], raw[0, [34, 1024 + 34, 2048 + 34]])
    s = cifar_lt(root, 10, imbalance=5, val_fraction=0.0, seed=0, n_max=10)
    np.testing.assert_array_equal(np.bincount(s.train_labels), long_tailed_counts(10, 10, 5))
    assert s.name == "cifar10-lt-r5"


def test_cifar100_lt_from_fake_batches(tmp_path):
    root = fake_cifar100(tmp_path)
    s = cifar_lt(root, 100, imbalance=6, val_fraction=0.0, seed=0, n_max=6)
    np.testing.assert_array_equal(np.bincount(s.train_labels), long_tailed_counts(6, 100, 6))
    assert s.class_names[99] == "99" and s.test_images.shape == (100, 32, 32, 3)


def test_cifar_missing_batches_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar(tmp_path, 10)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", [_Exploit(), _Eval()])
def test_cifar_loader_refuses_malicious_pickle(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({"data": payload, "labels": [0]}))
    with pytest.raises(DataFileError, match="refusing global"):
        load_cifar_batch(p)
    assert not (tmp_path / "pwned.txt").exists()


def test_cifar_loader_refuses_non_dict(tmp_path):
    p = tmp_path / "test_batch"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFileError, match="must be a dict"):
        load_cifar_batch(p)


def test_cifar_rejects_bad_data_shape(tmp_path):
    root = fake_cifar10(tmp_path)
    bad = {"data": np.zeros((3, 100), np.uint8), "labels": [0, 1, 2]}
    (root / "data_batch_2").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataFileError, match="data_batch_2"):
        load_cifar(root, 10)


# ------------------------------------------------------------ split lists, class folders


def make_png(path: Path, size: tuple[int, int] = (12, 10), color: tuple = (255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_read_split_list(tmp_path):
    make_png(tmp_path / "img" / "a.png")
    make_png(tmp_path / "img" / "with space.jpg")
    lst = tmp_path / "train.txt"
    lst.write_text("img/a.png 3\n\nimg/with space.jpg 0\n")
    paths, labels = read_split_list(lst, tmp_path)
    assert paths == [tmp_path / "img" / "a.png", tmp_path / "img" / "with space.jpg"]
    np.testing.assert_array_equal(labels, [3, 0])
    assert labels.dtype == np.int64


def test_read_split_list_missing_image_names_line(tmp_path):
    make_png(tmp_path / "a.png")
    lst = tmp_path / "val.txt"
    lst.write_text("a.png 0\na.png 1\nmissing.png 2\n")
    with pytest.raises(FileNotFoundError, match=r"val\.txt:3: image .*missing\.png"):
        read_split_list(lst, tmp_path)


@pytest.mark.parametrize(
    "line, match",
    [("justapath.png", "expected"), ("a.png x", "not an integer"), ("a.png -1", "negative")],
)
def test_read_split_list_bad_line_names_line(tmp_path, line, match):
    make_png(tmp_path / "a.png")
    lst = tmp_path / "list.txt"
    lst.write_text(f"a.png 0\n{line}\n")
    with pytest.raises(DataFileError, match=rf"list\.txt:2: {match}|list\.txt:2: .*{match}"):
        read_split_list(lst, tmp_path)


def test_read_split_list_empty_and_missing(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataFileError, match="no entries"):
        read_split_list(tmp_path / "empty.txt", tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_split_list(tmp_path / "nope.txt", tmp_path)


def test_read_class_folders_sorted_labels(tmp_path):
    for name in ("zebra", "ant", "cat"):
        make_png(tmp_path / name / "1.png")
    make_png(tmp_path / "cat" / "sub" / "2.PNG")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    paths, labels, names = read_class_folders(tmp_path)
    assert names == ("ant", "cat", "zebra")
    np.testing.assert_array_equal(labels, [0, 1, 1, 2])
    assert [p.parent.name for p in paths] == ["ant", "cat", "sub", "zebra"]


def test_read_class_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_class_folders(tmp_path / "missing")
    with pytest.raises(DataFileError, match="no class folders"):
        read_class_folders(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="empty"):
        read_class_folders(tmp_path)


# ------------------------------------------------------------------ lazy image reading


def test_load_image_modes(tmp_path):
    p = make_png(tmp_path / "r.png", size=(5, 4), color=(255, 0, 0))
    rgb = load_image(p, "RGB")
    assert rgb.shape == (3, 4, 5) and rgb.dtype == torch.float32
    torch.testing.assert_close(rgb[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert load_image(p, "L").shape == (1, 4, 5)


def test_load_image_corrupt(tmp_path):
    p = tmp_path / "bad.png"
    p.write_bytes(b"not a png")
    with pytest.raises(DataFileError, match="bad.png"):
        load_image(p)


def test_resize_center_crop():
    x = torch.zeros(1, 20, 40)
    x[:, :, 10:30] = 1.0  # the central 20x20 square
    out = resize_center_crop(x, 20)
    assert out.shape == (1, 20, 20)
    torch.testing.assert_close(out, torch.ones(1, 20, 20))
    assert resize_center_crop(torch.rand(3, 50, 30), 16, resize=20).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="resize"):
        resize_center_crop(x, 20, resize=10)


def test_image_list_dataset(tmp_path):
    for i, name in enumerate(("b", "a")):
        make_png(tmp_path / "root" / name / f"{i}.png", size=(30 + 10 * i, 20), color=(0, 255, 0))
    ds = ImageListDataset.from_class_folders(
        tmp_path / "root", size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    )
    assert len(ds) == 2 and ds.class_names == ("a", "b")
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x[:, 8, 8], torch.tensor([-1.0, 1.0, -1.0]))
    xb, yb = next(iter(DataLoader(ds, batch_size=2)))
    assert xb.shape == (2, 3, 16, 16) and yb.tolist() == [0, 1]

    (tmp_path / "list.txt").write_text("root/a/1.png 7\n")
    gray = ImageListDataset.from_split_list(tmp_path / "list.txt", tmp_path, size=8, mode="L")
    assert gray[0][0].shape == (1, 8, 8) and int(gray[0][1]) == 7


def test_image_list_dataset_checks_arguments(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        ImageListDataset([tmp_path / "a.png"], np.zeros(2), size=8)
    with pytest.raises(ValueError, match="mode"):
        ImageListDataset([], np.zeros(0), size=8, mode="CMYK")
