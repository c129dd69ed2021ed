"""`dlsa train`: streamed stage 1 on tiny image files, resume, extract, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dlsa.backbones import load_checkpoint
from dlsa.backbones.bottleneck import BottleneckResNet
from dlsa.backbones.image_train import train_images
from dlsa.backbones.run_state import ResumeError
from dlsa.backbones.stream import ImageReadError, random_resized_box
from dlsa.backbones.train_config import ImageTrainConfig
from dlsa.cli import main
from dlsa.errors import DLSAInputError
from dlsa.io.features import load_features

COUNTS = (10, 6, 4)  # 20 train images; batch 6 -> 3 steps per epoch
N_VAL = 2


def make_images(root: Path) -> None:
    """Class folders train/c*/ and val/c*/ of 20x24 RGB PNGs, and split lists for them."""
    rng = np.random.default_rng(0)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for c, n in enumerate(COUNTS):
        for i in range(n + N_VAL):
            split = "train" if i < n else "val"
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (rng.random((20, 24, 3)) * 90 + 80 * c).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
            lines[split].append(f"{split}/c{c}/{i}.png {c}\n")
    for split, text in lines.items():
        (root / f"{split}.txt").write_text("".join(text))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    make_images(root)
    return root


def config(data: Path, out: Path, **changes: object) -> ImageTrainConfig:
    base = ImageTrainConfig(
        images=str(data), split_list=str(data / "train.txt"),
        val_split_list=str(data / "val.txt"), out=str(out), epochs=2, batch_size=6, size=16,
        widths=(4, 8, 8), workers=0, progress=False, lr=0.05,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def state_tensors(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "state" / f"epoch-{epoch:04d}" / "state.safetensors"))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Stop(Exception):
    pass


def stop_at(epoch: int, step: int):  # noqa: ANN201
    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            raise Stop

    return hook


def test_cli_train_class_folders_then_extract(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--images", str(data / "train"), "--val-images", str(data / "val"),
            "--out", str(out), "--epochs", "1", "--batch-size", "6", "--size", "16",
            "--widths", "4,8,8", "--workers", "0", "-q"]  # fmt: skip
    assert main(args) == 0
    assert "kept epoch 1 of 1" in capsys.readouterr().out
    model, meta = load_checkpoint(out)
    assert meta["image_size"] == 16 and meta["class_names"] == ["c0", "c1", "c2"]
    feats = tmp_path / "val.h5"
    extract = ["extract", "--backbone", str(out), "--images", str(data),
               "--split-list", str(data / "val.txt"), "--out", str(feats), "-q"]  # fmt: skip
    assert main(extract) == 0
    loaded = load_features(feats)
    assert loaded.X.shape == (len(COUNTS) * N_VAL, model.feature_dim)
    # the same class folders, read as dlsa train reads them: the same features and labels
    folders = tmp_path / "val-folders.h5"
    argv = ["extract", "--backbone", str(out), "--images", str(data / "val"), "-q"]
    assert main([*argv, "--out", str(folders)]) == 0
    by_folder = load_features(folders)
    np.testing.assert_array_equal(by_folder.y, loaded.y)
    np.testing.assert_allclose(by_folder.X, loaded.X, rtol=1e-5, atol=1e-6)
    # a subset of the classes keeps the backbone's class order; an unknown class is refused
    part = tmp_path / "part"
    for name in ("c2", "zz"):
        (part / name).mkdir(parents=True)
        Image.open(data / "val" / "c2" / f"{COUNTS[2]}.png").save(part / name / "a.png")
    assert main([*argv[:4], str(part), "--out", str(tmp_path / "p.h5"), "-q"]) == 2
    assert "zz" in capsys.readouterr().err and not (tmp_path / "p.h5").exists()
    (part / "zz" / "a.png").unlink()
    (part / "zz").rmdir()
    assert main([*argv[:4], str(part), "--out", str(tmp_path / "p.h5"), "-q"]) == 0
    assert load_features(tmp_path / "p.h5").y.tolist() == [2]


@pytest.mark.parametrize(
    ("loss", "augment"),
    [("ce", "crop-flip"), ("cbs", "crop-flip"), ("paco", "crop-flip"), ("paco", "paco")],
)
def test_resume_gives_the_uninterrupted_weights(
    data: Path, tmp_path: Path, loss: str, augment: str
) -> None:
    straight = config(data, tmp_path / "straight", loss=loss, augment=augment)
    train_images(straight)
    broken = config(data, tmp_path / "broken", loss=loss, augment=augment)
    with pytest.raises(Stop):
        train_images(broken, on_step=stop_at(2, 1))
    train_images(dataclasses.replace(broken, resume=True))
    assert_same(state_tensors(tmp_path / "straight", 2), state_tensors(tmp_path / "broken", 2))
    a = load_file(str(tmp_path / "straight" / "best.safetensors"))
    assert_same(a, load_file(str(tmp_path / "broken" / "best.safetensors")))


KILL_SCRIPT = """
import os, signal, sys
from dlsa.backbones.image_train import train_images
from dlsa.backbones.train_config import ImageTrainConfig
cfg = ImageTrainConfig(**{config})
def hook(epoch, step):
    if (epoch, step) == (2, 1):
        os.kill(os.getpid(), signal.SIGKILL)
train_images(cfg, on_step=hook)
"""


def test_sigkill_mid_epoch_then_resume(data: Path, tmp_path: Path) -> None:
    """A run killed (SIGKILL, loader workers running) in the middle of epoch 2 resumes to
    the weights of an uninterrupted run."""
    straight = config(data, tmp_path / "straight")
    train_images(straight)
    killed = config(data, tmp_path / "killed", workers=2)
    fields = dataclasses.asdict(killed)
    script = KILL_SCRIPT.format(config=repr(fields))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in (tmp_path / "killed" / "state").iterdir()] == ["epoch-0001"]
    train_images(dataclasses.replace(killed, resume=True, workers=0))
    assert_same(state_tensors(tmp_path / "straight", 2), state_tensors(tmp_path / "killed", 2))


def test_python_m_dlsa_train(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dlsa", "train", "--images", str(data / "train"),
           "--out", str(out), "--epochs", "1", "--batch-size", "10", "--size", "12",
           "--widths", "4,4,4", "--workers", "1", "--loss", "cbs", "--holdout", "0",
           "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no validation list: last epoch" in proc.stdout
    assert (out / "best.safetensors").is_file()


def test_missing_image_names_file_and_line_or_is_skipped(data: Path, tmp_path: Path) -> None:
    listed = tmp_path / "train.txt"
    lines = (data / "train.txt").read_text().splitlines(keepends=True)
    listed.write_text("".join(lines[:3]) + "train/c0/nope.png 0\n" + "".join(lines[3:]))
    cfg = config(data, tmp_path / "run", split_list=str(listed), epochs=1)
    with pytest.raises(ImageReadError, match=rf"{listed}:4: image .*nope.png not found"):
        train_images(cfg)
    train_images(dataclasses.replace(cfg, skip_bad_images=True))
    _, meta = load_checkpoint(tmp_path / "run")
    assert meta["skipped_missing"] == 1 and meta["train_images"] == sum(COUNTS)


def test_unreadable_image_names_file_and_line_or_is_skipped(
    data: Path, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "train").symlink_to(data / "train")
    (root / "broken.png").write_bytes(b"not a png")
    listed = root / "train.txt"
    listed.write_text((data / "train.txt").read_text() + "broken.png 1\n")
    args = ["train", "--images", str(root), "--split-list", str(listed), "--out",
            str(tmp_path / "run"), "--epochs", "1", "--batch-size", "7", "--size", "16",
            "--widths", "4,8,8", "--workers", "0", "--holdout", "0", "-q"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("dlsa train: error: ")
        and f"{listed}:21: cannot read image {root}/broken.png" in err
    )
    assert "\n" not in err
    assert main([*args, "--skip-bad-images"]) == 0
    _, meta = load_checkpoint(tmp_path / "run")
    assert meta["skipped_unreadable_per_epoch"] == [1]


def test_class_without_training_image(data: Path, tmp_path: Path) -> None:
    listed = tmp_path / "train.txt"
    listed.write_text((data / "train.txt").read_text().replace(" 1\n", " 2\n"))
    with pytest.raises(DLSAInputError, match=r"1 class\(es\) have no training image \(labels 1\)"):
        train_images(config(data, tmp_path / "run", split_list=str(listed)))


def test_resume_refuses_another_configuration(data: Path, tmp_path: Path) -> None:
    cfg = config(data, tmp_path / "run", epochs=1)
    with pytest.raises(ResumeError, match="holds no saved epoch"):
        train_images(dataclasses.replace(cfg, resume=True))
    train_images(cfg)
    with pytest.raises(DLSAInputError, match="pass --resume to continue it or --overwrite"):
        train_images(cfg)
    with pytest.raises(ResumeError, match=r"another configuration: lr \(saved 0.05, now 0.1\)"):
        train_images(dataclasses.replace(cfg, resume=True, lr=0.1))
    listed = tmp_path / "train.txt"
    listed.write_text("".join((data / "train.txt").read_text().splitlines(True)[1:]))
    with pytest.raises(ResumeError, match="train_data"):
        train_images(dataclasses.replace(cfg, resume=True, split_list=str(listed)))


def test_bad_flags_are_one_line(data: Path, capsys) -> None:
    assert main(["train", "--images", str(data), "--arch", "resnet9", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arch must be resnet<6n+2>" in err


@pytest.mark.parametrize(
    ("arch", "n_params"), [("resnet50", 25_557_032), ("resnext50_32x4d", 25_028_904)]
)
def test_bottleneck_resnets_match_the_published_sizes(arch: str, n_params: int) -> None:
    net = BottleneckResNet(arch, n_classes=1000, generator=torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in net.parameters()) == n_params
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 1000)


def test_random_resized_box_stays_inside_and_falls_back_to_the_centre() -> None:
    u = np.random.default_rng(0).random((50, 10, 4))
    for draws in u:
        top, left, h, w = random_resized_box(30, 50, draws, (0.08, 1.0))
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50
    assert random_resized_box(10, 100, np.ones((10, 4)), (1.0, 1.0)) == (0, 43, 10, 13)


def test_run_state_json_records_the_fingerprint(data: Path, tmp_path: Path) -> None:
    train_images(config(data, tmp_path / "run", epochs=1, loss="paco"))
    info = json.loads((tmp_path / "run" / "state" / "epoch-0001" / "state.json").read_text())
    assert info["fingerprint"]["loss"] == "paco" and info["fingerprint"]["world_size"] == 1
    assert len(info["fingerprint"]["train_data"]) == 64


def test_train_overwrite_replaces_only_a_run_folder(data: Path, tmp_path: Path, capsys) -> None:
    """--overwrite starts again only in a run folder dlsa wrote: a user's folder (even
    with a best.json) or a run the user added files to is refused and left as it was."""
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    (mine / "best.json").write_text('{"my": "best"}')
    args = ["train", "--images", str(data / "train"), "--epochs", "1", "--batch-size", "6",
            "--size", "16", "--widths", "4,8,8", "--workers", "0", "-q"]  # fmt: skip
    assert main([*args, "--out", str(mine), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"dlsa train: error: --out {mine}")
    assert "not a folder written by dlsa" in err
    assert sorted(p.name for p in mine.iterdir()) == ["best.json", "thesis.tex"]
    assert (mine / "best.json").read_text() == '{"my": "best"}'
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 0
    marker = json.loads((out / ".dlsa-output.json").read_text(encoding="utf-8"))
    assert marker["command"] == "train" and "state" in marker["folders"]
    assert main([*args, "--out", str(out)]) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--out", str(out), "--overwrite"]) == 2
    assert (out / "notes.txt").read_text() == "mine" and (out / "best.safetensors").is_file()


def test_a_second_train_on_the_same_out_is_refused(
    data: Path, tmp_path: Path, monkeypatch
) -> None:
    """Two runs that both found --out free: the exclusive creation of dlsa's marker lets
    one claim it; a run that fails before its first epoch gives the folder back."""
    from dlsa.io import outputs

    out = tmp_path / "run"
    with pytest.raises(Stop):
        train_images(config(data, out, epochs=1), on_step=stop_at(1, 1))
    assert list(out.iterdir()) == []  # given back: the next run needs no --overwrite
    outputs.claim_folder(out, overwrite=False, command="train", whole=["state"])
    monkeypatch.setattr(outputs, "check_folder", lambda dest, **kw: Path(dest))
    with pytest.raises(outputs.OutputExistsError, match="another process"):
        train_images(config(data, out, epochs=1))
