"""`dlsa extract`'s refusals (issue 30): an unknown library, a weights file holding
pickled objects, a truncated or garbage weights file, a damaged backbone folder. Each is
one line ``dlsa extract: error: ...`` naming the file or flag, exit status 2, and no
code of the file runs. And a file name holding a line break keeps one entry of the
rows-to-files map, so no feature row is attributed to the wrong file.

timm, open_clip and torchvision are not installed here: stand-in modules take their
place. The timm and open_clip stand-ins behave as those libraries may when handed a
file's *path*: they unpickle it with ``torch.load(weights_only=False)``, so the tests
fail unless dlsa reads the file itself, safely, and hands the library only tensors.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from dlsa.backbones import ResNet, save_checkpoint
from dlsa.backbones.pretrained import load_pretrained
from dlsa.cli import main
from dlsa.errors import ModelFileError
from dlsa.io.weights import read_weights

LIBRARIES = ("torchvision", "timm", "open_clip")


class Trunk(nn.Module):
    """A tiny CNN with a classifier ``head``/``fc``, as the libraries' models have."""

    def __init__(self, head: str = "fc", n_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head_name = head
        setattr(self, head, nn.Linear(4, n_classes) if n_classes else nn.Identity())
        self.image_size = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.head_name)(self.features(x))


def _unsafe_load(model: nn.Module, file: str) -> None:
    """What a library may do with a checkpoint's path: unpickle it, running its code."""
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=False))


def _fake_timm() -> types.ModuleType:
    def create_model(name, pretrained=False, pretrained_cfg_overlay=None, num_classes=5):
        model = Trunk("head", num_classes)
        model.pretrained_cfg = {"classifier": "head", "input_size": (3, 16, 16), "crop_pct": 1.0}
        if pretrained and pretrained_cfg_overlay and "file" in pretrained_cfg_overlay:
            _unsafe_load(model, pretrained_cfg_overlay["file"])
        return model

    return types.SimpleNamespace(create_model=create_model)  # type: ignore[return-value]


def _fake_open_clip() -> types.ModuleType:
    class Clip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual, self.text = Trunk("head", 0), nn.Linear(3, 2)

    def create_model(name, pretrained=None, pretrained_text=True):
        assert pretrained_text is False, "the text tower's weights would be downloaded"
        model = Clip()
        if pretrained is not None:
            _unsafe_load(model, pretrained)
        return model

    return types.SimpleNamespace(create_model=create_model)  # type: ignore[return-value]


def _fake_torchvision() -> types.ModuleType:
    models = types.SimpleNamespace(get_model=lambda name, weights=None: Trunk("fc"))
    return types.SimpleNamespace(models=models)  # type: ignore[return-value]


@pytest.fixture
def libraries(monkeypatch):
    """The three stand-ins in ``sys.modules``."""
    fakes = {"torchvision": _fake_torchvision, "timm": _fake_timm, "open_clip": _fake_open_clip}
    for name, make in fakes.items():
        monkeypatch.setitem(sys.modules, name, make())


def _weights(library: str) -> dict[str, torch.Tensor]:
    """A state dict in the layout each library's checkpoints have (the same each call)."""
    torch.manual_seed(0)
    if library == "open_clip":
        clip = {f"visual.{k}": v for k, v in Trunk("head", 0).state_dict().items()}
        return clip | {f"text.{k}": v for k, v in nn.Linear(3, 2).state_dict().items()}
    return Trunk("fc" if library == "torchvision" else "head").state_dict()


class Trap:
    """Unpickling it creates the file ``path``: proof that the pickle's code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(3):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / f"{i}.png")
    return tmp_path / "photos"


def _extract(backbone, photos, out, capsys, weights=None) -> tuple[int, str]:
    argv = ["-q", "extract", "--backbone", str(backbone), "--images", str(photos),
            "--out", str(out)]  # fmt: skip
    argv += [] if weights is None else ["--weights", str(weights)]
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def _one_line(err: str) -> str:
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("library", LIBRARIES)
def test_good_weights_load_through_dlsa_for_every_library(
    libraries, library, tmp_path, photos, capsys
):
    weights = tmp_path / "w.pth"
    torch.save(_weights(library), weights)
    code, err = _extract(f"{library}:tiny", photos, tmp_path / "f.h5", capsys, weights)
    assert code == 0, err
    encoder = load_pretrained(library, "tiny", weights)  # type: ignore[arg-type]
    trunk = encoder.trunk
    assert isinstance(getattr(trunk, trunk.head_name), nn.Identity)  # classifier removed
    want = _weights(library)[
        "features.0.weight" if library != "open_clip" else "visual.features.0.weight"
    ]
    assert torch.equal(trunk.features[0].weight, want)


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_pickle_that_runs_code_is_refused_for_every_library(
    libraries, library, tmp_path, photos, capsys
):
    trap = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save(_weights(library) | {"extra": Trap(trap)}, evil)  # type: ignore[dict-item]
    code, err = _extract(f"{library}:tiny", photos, tmp_path / "f.h5", capsys, evil)
    assert not trap.exists(), "the weights file's code ran"
    assert code == 2
    err = _one_line(err)
    assert err.startswith("dlsa extract: error: --weights ") and str(evil) in err
    assert "pickled objects" in err and "refused" in err and "weights_only=False" not in err
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("cut.safetensors", "half"),
        ("junk.safetensors", b"garbage"),
        ("cut.pth", "half"),
        ("junk.pth", b"not a zip, not a pickle"),
        ("empty.pth", b""),
    ],
)
def test_a_damaged_weights_file_is_one_line_naming_it(
    libraries, name, content, tmp_path, photos, capsys
):
    path = tmp_path / name
    if content == "half":
        whole = tmp_path / ("whole" + path.suffix)
        state = _weights("torchvision")
        save_file(state, str(whole)) if path.suffix == ".safetensors" else torch.save(state, whole)
        content = whole.read_bytes()[: whole.stat().st_size // 2]
    path.write_bytes(content)
    code, err = _extract("torchvision:tiny", photos, tmp_path / "f.h5", capsys, path)
    assert code == 2 and str(path) in _one_line(err) and "--weights" in err


@pytest.mark.parametrize(
    "state, match",
    [
        ([torch.ones(2)], "not a state dict"),
        ({"w": torch.ones(2), "epoch": 3}, "not tensors: epoch"),
        ({"conv.weight": torch.ones(2)}, "do not match the model"),
    ],
)
def test_weights_that_are_not_the_models_state_dict_are_named(libraries, state, match, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(ModelFileError, match=match) as caught:
        load_pretrained("timm", "tiny", path)
    assert str(path) in str(caught.value)


def test_a_training_checkpoint_is_unwrapped(tmp_path):
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, tmp_path / "ckpt.pth")
    assert list(read_weights(tmp_path / "ckpt.pth")) == ["w"]


@pytest.mark.parametrize("weights", [None, "w.pth"])
def test_an_unknown_library_is_named_with_the_known_ones(weights, tmp_path, photos, capsys):
    if weights:
        torch.save(_weights("timm"), tmp_path / weights)
        weights = tmp_path / weights
    code, err = _extract("nosuchlib:MODEL", photos, tmp_path / "f.h5", capsys, weights)
    assert code == 2
    err = _one_line(err)
    assert "unknown library 'nosuchlib'" in err and "torchvision, timm, open_clip" in err
    assert "a folder has its own" not in err


def test_a_folder_whose_name_holds_a_colon_is_still_a_folder(tmp_path, photos, capsys):
    net = ResNet(in_channels=3, n_classes=2, widths=(4, 4, 4))
    save_checkpoint(net, tmp_path / "run:1", metadata={"image_size": 16})
    code, err = _extract(tmp_path / "run:1", photos, tmp_path / "f.h5", capsys)
    assert code == 0, err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "json", "config"])
def test_a_damaged_backbone_folder_is_one_line_naming_the_file(damage, tmp_path, photos, capsys):
    net = ResNet(in_channels=3, n_classes=2, widths=(4, 4, 4))
    run = tmp_path / "run"
    save_checkpoint(net, run, metadata={"image_size": 16})
    weights, info = run / "best.safetensors", run / "best.json"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 7)
    elif damage == "json":
        info.write_text("{not json")
    else:
        info.write_text('{"architecture": "resnet", "config": {"no_such_arg": 1}}')
    code, err = _extract(run, photos, tmp_path / "f.h5", capsys)
    named = weights if damage in ("truncated", "garbage") else info
    assert code == 2 and str(named) in _one_line(err)
    assert not (tmp_path / "f.h5").exists()


def test_a_damaged_run_state_is_a_resume_error_naming_the_file(tmp_path):
    from dlsa.backbones.run_state import ResumeError, load_state, save_state

    folder = save_state(tmp_path, 1, {"w": torch.ones(3)}, {"history": {}})
    state = folder / "state.safetensors"
    state.write_bytes(state.read_bytes()[:20])
    with pytest.raises(ResumeError, match="state.safetensors: not a readable safetensors"):
        load_state(tmp_path)


def test_a_file_name_with_a_line_break_keeps_one_map_entry_per_row(tmp_path, capsys):
    from dlsa.io.features import load_features
    from dlsa.io.file_map import read_file_map

    images = tmp_path / "images"
    images.mkdir()
    names = ["a.png", "b\nc.png", 'd,"e".png', "f\u2028g.png", "z.png"]
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / name)
    net = ResNet(in_channels=3, n_classes=2, widths=(4, 4, 4))
    save_checkpoint(net, tmp_path / "run", metadata={"image_size": 16})
    out = tmp_path / "f.h5"
    code, err = _extract(tmp_path / "run", images, out, capsys)
    assert code == 0, err
    rows = load_features(out, require_labels=False).X.shape[0]
    files = read_file_map(tmp_path / "f.h5.files.csv")
    assert rows == len(files) == len(names)
    assert [Path(f).name for f in files] == sorted(names)
    for row, file in enumerate(files):  # each row's features are its own file's
        alone = tmp_path / f"alone{row}"
        alone.mkdir()
        (alone / "x.png").write_bytes(Path(file).read_bytes())
        assert _extract(tmp_path / "run", alone, alone / "f.h5", capsys)[0] == 0
        want = load_features(alone / "f.h5", require_labels=False).X[0]
        np.testing.assert_allclose(
            load_features(out, require_labels=False).X[row], want, rtol=1e-5
        )
