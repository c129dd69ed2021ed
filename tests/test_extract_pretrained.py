"""`dlsa extract --backbone LIBRARY:MODEL --weights FILE`: a pretrained encoder from a
local weights file, with the model's own preprocessing, float16 output, flip averaging
and images/s.

The real torchvision / timm / open_clip wheels need a CPU torch build that matches them,
which this machine's package index does not carry; the test puts a stand-in
``torchvision`` module (its ``models.get_model`` builds a small randomly initialised
CNN) in ``sys.modules``, so that everything dlsa does around the library is exercised:
reading the weights file, removing the classifier, standardising with ImageNet's
statistics, resizing and cropping, averaging with the mirror image, writing float16.
"""

from __future__ import annotations

import sys
import types

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dlsa.backbones.pretrained import IMAGENET_MEAN, IMAGENET_STD
from dlsa.cli import main
from dlsa.datasets import ImageListDataset, read_class_folders


class TinyNet(nn.Module):
    """A torchvision-style classifier: features, then an ``fc`` head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@pytest.fixture
def fake_torchvision(monkeypatch):
    module = types.ModuleType("torchvision")
    module.models = types.SimpleNamespace(get_model=lambda name, weights=None: TinyNet())
    monkeypatch.setitem(sys.modules, "torchvision", module)
    return module


@pytest.fixture
def photos(tmp_path, write_photos):
    return write_photos(tmp_path / "photos", (("cat", 3), ("ant", 2)), (40, 52))


def test_extract_with_a_pretrained_encoder_from_local_weights(
    fake_torchvision, photos, tmp_path, capsys
):
    torch.manual_seed(0)
    net = TinyNet()
    weights = tmp_path / "tiny.safetensors"
    save_file(net.state_dict(), str(weights))
    out = tmp_path / "feats.h5"
    argv = ["-q", "extract", "--backbone", "torchvision:tiny", "--weights", str(weights),
            "--images", str(photos), "--out", str(out), "--size", "32", "--float16",
            "--flip-average"]  # fmt: skip
    assert main(argv) == 0
    assert "images/s" in capsys.readouterr().out
    with h5py.File(out) as fh:
        X, labels = fh["features"][...], fh["labels"][...]
    assert X.dtype == np.float16 and X.shape == (5, 8)
    paths, want_labels, names = read_class_folders(photos)
    assert names == ("ant", "cat") and labels.tolist() == want_labels.tolist()
    # what the encoder must compute: resize 37 (256/224 of 32), crop 32, ImageNet stats,
    # the classifier removed, the mirror image averaged in
    images = ImageListDataset(paths, want_labels, size=32, resize=37, mode="RGB")
    x = torch.stack([images[i][0] for i in range(len(images))])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = [net.features((v - mean) / std) for v in (x, x.flip(-1))]
    want = (0.5 * (feats[0] + feats[1])).numpy()
    np.testing.assert_allclose(X.astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_a_pretrained_backbone_without_weights_is_one_clear_error(photos, tmp_path, capsys):
    argv = ["-q", "extract", "--backbone", "timm:vit_small_patch14_dinov2", "--images",
            str(photos), "--out", str(tmp_path / "f.h5")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "needs --weights" in err and len(err.splitlines()) == 1
    missing = argv + ["--weights", str(tmp_path / "none.pth")]
    assert main(missing) == 2
    assert "no such weights file" in capsys.readouterr().err
    assert not (tmp_path / "f.h5").exists()


def test_float16_features_that_do_not_fit_are_refused(tmp_path):
    from dlsa.io.features import FeatureFileError, load_features, save_features

    save_features(tmp_path / "ok.npz", np.array([[1.5, -2.0]]), float16=True)
    back = load_features(tmp_path / "ok.npz", require_labels=False)
    assert back.X.dtype == np.float32 and back.X.tolist() == [[1.5, -2.0]]  # float32 again
    with pytest.raises(FeatureFileError, match="float16"):
        save_features(tmp_path / "big.npz", np.array([[1e6, 0.0]]), float16=True)
    assert not (tmp_path / "big.npz").exists()
