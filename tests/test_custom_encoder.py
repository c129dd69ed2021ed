"""`dlsa extract --backbone MODULE:CALLABLE` (issue 32): any torch encoder of the user's
own code, its preprocessing from flags or from its ``dlsa_preprocess`` attribute,
feature maps pooled, ``--weights`` read safely, and one-line refusals."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dlsa.backbones import extract_features
from dlsa.backbones.custom import load_encoder, parse_factory
from dlsa.cli import main
from dlsa.datasets import ImageListDataset, read_class_folders
from dlsa.errors import DLSAInputError
from dlsa.io.features import load_features

MODULE = '''
import torch
from torch import nn


class MapNet(nn.Module):
    """Images to feature maps (N, 6, h, w)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def make_map():
    return MapNet()


def make_flat():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.dlsa_preprocess = {"size": 12, "resize": 14, "mean": (0.5, 0.5, 0.5),
                           "std": (0.25, 0.25, 0.25)}
    return net


def not_a_module():
    return 42


def broken():
    raise RuntimeError("the factory broke")
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """``userpkg{n}.encoders`` (dotted) and ``userenc{n}`` (top level) in tmp_path,
    named per test so that no module cached by an earlier test is reused."""
    name = tmp_path.name.replace("-", "_").replace(".", "_")
    pkg = tmp_path / "code" / f"userpkg_{name}"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "encoders.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "code" / f"userenc_{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    return f"userpkg_{name}.encoders", f"userenc_{name}"


@pytest.fixture
def photos(tmp_path, write_photos):
    return write_photos(tmp_path / "photos", (("ant", 2), ("cat", 3)), (24, 30))


def _run(argv, capsys) -> tuple[int, str]:
    code = main(["-q", "extract", *[str(a) for a in argv]])
    return code, capsys.readouterr().err.strip()


def _manual(net, photos, size, resize, mean, std) -> np.ndarray:
    """What the encoder should give: resize, crop, standardize, net, average pooling."""
    paths, _, _ = read_class_folders(photos)
    data = ImageListDataset(paths, np.zeros(len(paths), np.int64), size=size, resize=resize)
    x = torch.stack([data[i][0] for i in range(len(data))])
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = net.eval()(x)
    return (out.mean(dim=(2, 3)) if out.dim() == 4 else out).numpy()


def test_a_feature_map_factory_with_preprocessing_flags(user_package, photos, tmp_path, capsys):
    dotted, _ = user_package
    out = tmp_path / "f.h5"
    argv = ["--backbone", f"{dotted}:make_map", "--images", photos, "--out", out, "--size",
            16, "--resize", 20, "--mean", "0.4,0.5,0.6", "--std", "0.2,0.3,0.4"]  # fmt: skip
    assert _run(argv, capsys) == (0, "")
    features = load_features(out)
    X = features.X
    assert X.shape == (5, 6) and list(features.y) == [0, 0, 1, 1, 1]
    assert features.backbone == f"{dotted}:make_map" and features.provenance == "unknown"
    module = __import__(dotted, fromlist=["make_map"])
    expected = _manual(module.make_map(), photos, 16, 20, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)


def test_the_module_attribute_gives_the_preprocessing_and_weights_load(
    user_package, photos, tmp_path, capsys
):
    _, top = user_package
    module = __import__(top)
    trained = module.make_flat()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # differs from what the factory builds
    save_file(trained.state_dict(), tmp_path / "w.safetensors")
    out = tmp_path / "f.npz"
    argv = ["--backbone", f"{top}:make_flat", "--images", photos, "--out", out,
            "--weights", tmp_path / "w.safetensors"]  # fmt: skip
    assert _run(argv, capsys) == (0, "")
    X = load_features(out).X
    expected = _manual(trained, photos, 12, 14, (0.5,) * 3, (0.25,) * 3)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)


def test_a_pickled_weights_file_is_refused_without_running_it(
    user_package, photos, tmp_path, capsys
):
    dotted, _ = user_package
    torch.save({"conv.weight": torch.ones(1), "x": nn.Identity()}, tmp_path / "bad.pth")
    argv = ["--backbone", f"{dotted}:make_map", "--images", photos, "--out", tmp_path / "f.h5",
            "--weights", tmp_path / "bad.pth"]  # fmt: skip
    code, err = _run(argv, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "--weights" in err and "refused" in err and not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize(
    ("callable_", "message"),
    [
        ("nosuch_pkg_xyz.models:make", "cannot import module 'nosuch_pkg_xyz.models'"),
        ("{dotted}:missing", "has no 'missing'"),
        ("{dotted}:not_a_module", "returned int, not a torch.nn.Module"),
        ("{dotted}:broken", "RuntimeError: the factory broke"),
        ("{dotted}:", "MODULE:CALLABLE"),
    ],
)
def test_a_bad_factory_is_one_line_naming_it(
    user_package, photos, tmp_path, capsys, callable_, message
):
    spec = callable_.format(dotted=user_package[0])
    code, err = _run(["--backbone", spec, "--images", photos, "--out", tmp_path / "f.h5"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"dlsa extract: error: --backbone {spec}")
    assert message in err


def test_bad_preprocessing_flags_are_refused(user_package, photos, tmp_path, capsys):
    dotted, _ = user_package
    base = ["--backbone", f"{dotted}:make_map", "--images", photos, "--out", tmp_path / "f.h5"]
    code, err = _run([*base, "--mean", "0.5,0.5"], capsys)
    assert code == 2 and "--mean 0.5,0.5: expected 3" in err
    code, err = _run([*base, "--size", 32, "--resize", 16], capsys)
    assert code == 2 and "resize (16) must be at least size (32)" in err


def test_factories_are_told_from_libraries_and_folders(user_package, tmp_path, monkeypatch):
    dotted, top = user_package
    assert parse_factory(f"{dotted}:make_map") == (dotted, "make_map")
    assert parse_factory(f"{top}:make_flat") == (top, "make_flat")
    assert parse_factory("timm:resnet50") is None and parse_factory("runs/a") is None
    assert parse_factory("nosuchlib:MODEL") is None  # parse_backbone names it
    (tmp_path / "runs.a:1").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_factory("runs.a:1") is None  # an existing folder stays a folder


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_encoder_mod.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    encoder = load_encoder("cwd_encoder_mod:make_flat")
    assert encoder.input_size == 12 and encoder.resize == 14


def test_the_python_api_takes_a_callable():
    encoder = load_encoder(lambda: nn.Conv2d(3, 5, 3), size=20, name="conv")
    X = extract_features(encoder, np.zeros((4, 20, 20, 3), np.uint8), progress=False)
    assert X.shape == (4, 5) and encoder.name == "conv" and encoder.resize == 23
    with pytest.raises(DLSAInputError, match="not a torch.nn.Module"):
        load_encoder(lambda: "no")
