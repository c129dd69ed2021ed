"""Provenance of features: `dlsa train`'s holdout, and `dlsa extract`'s
``backbone_trained_on`` (seen / unseen / mixed / unknown) and ``--subset``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlsa.backbones import load_checkpoint
from dlsa.backbones.provenance import holdout_mask
from dlsa.cli import main
from dlsa.cli.extract import _subset_and_provenance
from dlsa.io.features import load_features

COUNTS = (10, 6, 4)  # holdout: 2, 1 and none (a class under 5 images)


def make_folders(root: Path, counts: tuple[int, ...] = COUNTS) -> None:
    """Class folders root/c*/ of 16x16 RGB PNGs."""
    rng = np.random.default_rng(1)
    for c, n in enumerate(counts):
        folder = root / f"c{c}"
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = (rng.random((16, 16, 3)) * 90 + 80 * c).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def train_argv(images: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--images", str(images), "--out", str(out), "--epochs", "2",
            "--batch-size", "6", "--size", "16", "--widths", "4,8,8", "--workers", "0",
            "-q", *extra]  # fmt: skip


def extract(run: Path, images: Path, out: Path, *extra: str) -> int:
    return main(["extract", "--backbone", str(run), "--images", str(images),
                 "--out", str(out), "-q", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained with the default holdout on class folders: (images, run)."""
    root = tmp_path_factory.mktemp("prov")
    make_folders(root / "images")
    assert main(train_argv(root / "images", root / "run")) == 0
    return root / "images", root / "run"


def test_holdout_mask_takes_min_cap_or_a_fifth_per_class() -> None:
    labels = np.repeat(np.arange(5), (10, 6, 4, 30, 200))
    held = holdout_mask(labels, 20, seed=3)
    assert np.bincount(labels[held], minlength=5).tolist() == [2, 1, 0, 6, 20]
    assert np.array_equal(held, holdout_mask(labels, 20, seed=3))
    assert not np.array_equal(held, holdout_mask(labels, 20, seed=4))
    assert not holdout_mask(labels, 0, seed=3).any()


def test_train_holds_out_a_validation_split(run: tuple[Path, Path], capsys) -> None:
    images, folder = run
    record = json.loads((folder / "holdout.json").read_text())
    assert record["images"] == str(images.resolve()) and record["per_class_cap"] == 20
    assert sorted(f.split("/")[0] for f in record["files"]) == ["c0", "c0", "c1"]
    _, meta = load_checkpoint(folder)
    assert meta["holdout"] == 3 and meta["train_images"] == sum(COUNTS) - 3
    assert meta["history"]["selection"] == "val_balanced_accuracy"


def test_extract_records_seen_unseen_mixed(run: tuple[Path, Path], tmp_path: Path) -> None:
    images, folder = run
    assert extract(folder, images, tmp_path / "all.h5") == 0
    assert load_features(tmp_path / "all.h5").provenance == "mixed"
    assert extract(folder, images, tmp_path / "held.h5", "--subset", "holdout") == 0
    held = load_features(tmp_path / "held.h5")
    assert held.provenance == "unseen" and held.y.tolist() == [0, 0, 1]
    assert extract(folder, images, tmp_path / "train.npz", "--subset", "train") == 0
    trained = load_features(tmp_path / "train.npz")
    assert trained.provenance == "seen" and len(trained.y) == sum(COUNTS) - 3
    other = tmp_path / "other"
    make_folders(other, (2, 2, 2))
    assert extract(folder, other, tmp_path / "other.h5") == 0
    assert load_features(tmp_path / "other.h5").provenance == "unseen"
    said = ("--backbone-trained-on", "unknown")
    assert extract(folder, images, tmp_path / "said.h5", *said) == 0
    assert load_features(tmp_path / "said.h5").provenance == "unknown"


def test_extract_subset_refusals(run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    images, folder = run
    other = tmp_path / "other"
    make_folders(other, (2, 2, 2))
    assert extract(folder, other, tmp_path / "x.h5", "--subset", "holdout") == 2
    assert "none of the --images" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_holdout_zero_trains_on_everything(tmp_path: Path) -> None:
    make_folders(tmp_path / "images")
    assert main(train_argv(tmp_path / "images", tmp_path / "run", "--holdout", "0")) == 0
    assert not (tmp_path / "run" / "holdout.json").exists()
    assert load_checkpoint(tmp_path / "run")[1]["history"]["selection"] == "last_epoch"
    assert extract(tmp_path / "run", tmp_path / "images", tmp_path / "f.h5") == 0
    assert load_features(tmp_path / "f.h5").provenance == "seen"
    assert extract(tmp_path / "run", tmp_path / "images", tmp_path / "h.h5",
                   "--subset", "holdout") == 2  # fmt: skip


def test_changed_images_give_unknown(tmp_path: Path) -> None:
    make_folders(tmp_path / "images")
    assert main(train_argv(tmp_path / "images", tmp_path / "run")) == 0
    (tmp_path / "images" / "c0" / "0.png").unlink()  # the data changed since
    assert extract(tmp_path / "run", tmp_path / "images", tmp_path / "f.h5") == 0
    assert load_features(tmp_path / "f.h5").provenance == "unknown"


def test_a_pretrained_encoder_is_unknown_unless_told() -> None:
    paths, labels = [Path("/x/a.png")], np.array([0])
    args = argparse.Namespace(backbone="timm:x", subset="all", backbone_trained_on=None)
    assert _subset_and_provenance(args, paths, labels, None)[2] == "unknown"
    args.backbone_trained_on = "unseen"
    assert _subset_and_provenance(args, paths, labels, None)[2] == "unseen"


def test_resume_needs_the_same_holdout(run: tuple[Path, Path], capsys) -> None:
    images, folder = run
    assert main(train_argv(images, folder, "--resume", "--holdout", "0")) == 2
    assert "holdout (saved 20, now None)" in capsys.readouterr().err
