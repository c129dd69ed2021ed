"""Tests of dlsa.backbones: the small ResNet, stage-1 training, checkpoints, extraction."""

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from dlsa.backbones import (
    PaCoObjective,
    ResNet,
    as_image_tensor,
    channel_stats,
    extract_features,
    extract_to_file,
    load_checkpoint,
    paco_loss,
    random_crop_flip,
    save_checkpoint,
    train_backbone,
    train_paco,
)
from dlsa.backbones.pretrained import PretrainedEncoder, load_pretrained
from dlsa.backbones.train import Augment
from dlsa.io.features import load_features


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy_images(n: int = 48, n_classes: int = 3, size: int = 12, channels: int = 1, seed: int = 0):
    """Images whose mean brightness encodes the class, so a tiny net can learn them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    noise = rng.integers(0, 60, size=shape)
    x = (noise + (y * 80).reshape((-1,) + (1,) * (len(shape) - 1))).clip(0, 255)
    return x.astype(np.uint8), y


# ----------------------------------------------------------------------------- ResNet


@pytest.mark.parametrize("in_channels, size, depth", [(1, 28, 8), (3, 32, 8), (3, 32, 14)])
def test_resnet_shapes(in_channels, size, depth):
    net = ResNet(in_channels=in_channels, n_classes=7, depth=depth, widths=(4, 8, 16))
    x = torch.rand(2, in_channels, size, size)
    assert net.embed(x).shape == (2, 16) and net(x).shape == (2, 7)
    assert net.feature_dim == 16
    assert len(net.blocks) == 3 * (depth - 2) // 6


def test_resnet_every_parameter_gets_a_gradient():
    net = ResNet(in_channels=3, n_classes=4, widths=(4, 8, 8), generator=gen())
    net(torch.rand(3, 3, 16, 16)).logsumexp(1).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_resnet_generator_init_is_reproducible_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a = ResNet(in_channels=1, widths=(4, 8, 8), generator=gen(1))
    b = ResNet(in_channels=1, widths=(4, 8, 8), generator=gen(1))
    c = ResNet(in_channels=1, widths=(4, 8, 8), generator=gen(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k
    assert not torch.equal(a.fc.weight, c.fc.weight)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"depth": 10}, "depth"), ({"widths": (4, 8)}, "widths"), ({"n_classes": 0}, "n_classes")],
)
def test_resnet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(**kwargs)


def test_resnet_input_standardization():
    net = ResNet(in_channels=1, widths=(4, 4, 4), generator=gen()).eval()
    x = torch.rand(2, 1, 8, 8)
    net.set_input_stats(torch.tensor([0.5]), torch.tensor([2.0]))
    ref = ResNet(in_channels=1, widths=(4, 4, 4), generator=gen()).eval()
    torch.testing.assert_close(net.embed(x), ref.embed((x - 0.5) / 2.0))


# ----------------------------------------------------------------------- image helpers


def test_as_image_tensor_layouts():
    assert as_image_tensor(np.zeros((2, 5, 6), np.uint8)).shape == (2, 1, 5, 6)
    hwc = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)
    out = as_image_tensor(hwc)
    assert out.shape == (2, 3, 5, 6) and out.dtype == torch.uint8
    assert out[1, 2, 4, 5] == hwc[1, 4, 5, 2]
    assert as_image_tensor(torch.zeros(2, 3, 5, 6)).shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match="shape"):
        as_image_tensor(np.zeros((2, 5, 6, 7)))


def test_channel_stats_matches_numpy():
    x = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    mean, std = channel_stats(as_image_tensor(x), chunk=3)
    ref = x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), ref.std(0), rtol=1e-4)


def test_random_crop_flip():
    x = torch.rand(6, 2, 5, 5)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False, generator=gen()), x)
    a = random_crop_flip(x, padding=2, flip=True, generator=gen(3))
    b = random_crop_flip(x, padding=2, flip=True, generator=gen(3))
    assert torch.equal(a, b) and a.shape == x.shape
    flipped = random_crop_flip(x, padding=0, flip=True, generator=gen(0))
    for orig, out in zip(x, flipped, strict=True):
        assert torch.equal(out, orig) or torch.equal(out, orig.flip(-1))
    one = torch.zeros(64, 1, 5, 5)
    one[:, :, 2, 2] = 1.0  # a shifted crop moves the pixel by at most `padding`
    out = random_crop_flip(one, padding=1, flip=False, generator=gen(0))
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1)
    rows, cols = torch.nonzero(out[:, 0], as_tuple=True)[1:]
    assert set(rows.tolist()) == {1, 2, 3} and set(cols.tolist()) == {1, 2, 3}


# ---------------------------------------------------------------------------- training


def test_train_backbone_end_to_end(tmp_path):
    x, y = toy_images(48)
    vx, vy = toy_images(12, seed=1)
    state = torch.random.get_rng_state()
    model, history = train_backbone(
        x, y, val_images=vx, val_labels=vy, loss="ce", epochs=2, batch_size=16, lr=0.05,
        seed=0, widths=(4, 8, 8), checkpoint_dir=tmp_path / "ckpt", progress=False,
    )  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG must stay untouched"
    assert not model.training and model.n_classes == 3
    assert len(history.epochs) == 2 and history.selection == "val_balanced_accuracy"
    best = max(history.epochs, key=lambda r: r.val_balanced_accuracy)
    assert history.best_epoch == best.epoch
    assert history.epochs[-1].lr == pytest.approx(0.0, abs=1e-12)

    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["best.json", "best.safetensors"]
    info = json.loads((tmp_path / "ckpt" / "best.json").read_text())
    assert info["config"]["widths"] == [4, 8, 8]
    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["history"] == history.to_dict() and meta["settings"]["seed"] == 0
    xt = torch.rand(3, 1, 12, 12)
    torch.testing.assert_close(loaded(xt), model(xt))

    feats = extract_features(model, x, batch_size=10, progress=False)
    assert feats.shape == (48, 8) and feats.dtype == np.float32
    path = extract_to_file(
        model, x, y, tmp_path / "train.h5", "train", "resnet8-toy", progress=False
    )
    fs = load_features(path)
    assert fs.X.shape == (48, 8) and fs.X.dtype == np.float32 and fs.y.dtype == np.int64
    assert fs.split == "train" and fs.backbone == "resnet8-toy"
    np.testing.assert_allclose(fs.X, feats, rtol=1e-5, atol=1e-6)


def test_train_backbone_is_seeded_and_cbs_runs():
    x, y = toy_images(30, channels=3)
    kw = dict(loss="cbs", epochs=1, batch_size=8, widths=(4, 4, 4), progress=False, flip=False)
    a, ha = train_backbone(x, y, seed=5, **kw)
    b, _ = train_backbone(x, y, seed=5, **kw)
    c, _ = train_backbone(x, y, seed=6, **kw)
    assert ha.selection == "last_epoch" and ha.best_epoch == 1
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, c.fc.weight)
    assert a.in_channels == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "focal"}, "loss"),
        ({"loss": "paco"}, "train_paco"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"crop_padding": -1}, "crop_padding"),
        ({"val_labels": np.zeros(3)}, "val_images"),
        ({"arch": "resnet50"}, "small ResNets"),
        ({"warmup_epochs": 1, "epochs": 2}, "warm-up"),
    ],
)
def test_train_backbone_rejects_bad_arguments(kwargs, match):
    x, y = toy_images(6)
    with pytest.raises(ValueError, match=match):
        train_backbone(x, y, progress=False, **kwargs)


def test_checkpoint_round_trip_and_errors(tmp_path):
    net = ResNet(in_channels=3, n_classes=5, widths=(4, 4, 8), generator=gen()).eval()
    net.set_input_stats(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))
    save_checkpoint(net, tmp_path, "m", {"note": "x"})
    loaded, meta = load_checkpoint(tmp_path, "m")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), net(x))
    assert meta == {"note": "x"}
    with pytest.raises(FileNotFoundError, match="other"):
        load_checkpoint(tmp_path, "other")


# -------------------------------------------------------------------------- extraction


def test_extract_features_from_dataset_and_restores_mode():
    net = ResNet(in_channels=3, n_classes=2, widths=(4, 4, 6), generator=gen())
    data = torch.utils.data.TensorDataset(torch.rand(5, 3, 8, 8), torch.zeros(5))
    feats = extract_features(net, data, batch_size=2, progress=False)
    assert feats.shape == (5, 6) and net.training
    ref = extract_features(net, data.tensors[0], batch_size=5, progress=False)
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="embed"):
        extract_features(torch.nn.Linear(2, 2), data, progress=False)


# -------------------------------------------------------------------------- pretrained


def test_pretrained_missing_weights_named(tmp_path):
    missing = tmp_path / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="resnet50.pth"):
        load_pretrained("torchvision", "resnet50", missing)


def test_pretrained_unknown_library(tmp_path):
    with pytest.raises(ValueError, match="library"):
        load_pretrained("keras", "x", tmp_path)


@pytest.mark.parametrize(
    "library, module, extra",
    [
        ("torchvision", "torchvision", "dlsa[vision]"),
        ("timm", "timm", "dlsa[timm]"),
        ("open_clip", "open_clip", "dlsa[clip]"),
    ],
)
def test_pretrained_missing_library_names_extra(tmp_path, library, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(ImportError, match=re.escape(f"pip install {extra}")):
        load_pretrained(library, "name", weights)


def test_pretrained_encoder_standardizes():
    enc = PretrainedEncoder(torch.nn.Flatten(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "toy")
    x = torch.full((1, 3, 2, 2), 0.75)
    torch.testing.assert_close(enc.embed(x), torch.ones(1, 12))


# -------------------------------------------------------------------------------- PaCo


def paco_reference(
    q, labels, contrast, contrast_labels, class_logits, alpha, beta, gamma, t, prior
):
    """Loop-by-loop PaCo loss, written from the paper's formula."""
    losses = []
    for i in range(len(q)):
        centre = class_logits[i] + (prior if prior is not None else 0.0)
        sims = [(j, float(q[i] @ contrast[j]) / t) for j in range(len(contrast)) if j != i]
        denom = sum(np.exp(v) for v in centre.tolist()) + gamma * sum(np.exp(v) for _, v in sims)
        terms = [(beta, float(centre[labels[i]]))]
        terms += [(alpha, v) for j, v in sims if contrast_labels[j] == labels[i]]
        total_w = sum(w for w, _ in terms)
        losses.append(-sum(w * (v - np.log(denom)) for w, v in terms) / total_w)
    return float(np.mean(losses))


@pytest.mark.parametrize("balanced", [False, True])
def test_paco_loss_matches_reference(balanced):
    g = gen(0)
    q = torch.nn.functional.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    keys = torch.nn.functional.normalize(
        torch.randn(7, 4, generator=g, dtype=torch.float64), dim=1
    )
    labels = torch.tensor([0, 1, 1, 2, 0])
    contrast_labels = torch.cat([labels, torch.tensor([1, 0, 2, -1, -1, 2, 0])])
    contrast = torch.cat([q, keys])
    logits = torch.randn(5, 3, generator=g, dtype=torch.float64)
    prior = torch.log(torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)) if balanced else None
    kw = dict(alpha=0.3, beta=1.0, gamma=0.7, temperature=0.5, log_prior=prior)
    out = paco_loss(q, labels, contrast, contrast_labels, logits, **kw)
    ref = paco_reference(q, labels, contrast, contrast_labels, logits, 0.3, 1.0, 0.7, 0.5, prior)
    assert float(out) == pytest.approx(ref, rel=1e-9)


def test_paco_loss_without_contrast_is_cross_entropy():
    q = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    logits = torch.randn(6, 3)
    prior = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    out = paco_loss(q, y, q, y, logits, alpha=0.0, gamma=0.0, log_prior=prior)
    torch.testing.assert_close(out, torch.nn.functional.cross_entropy(logits + prior, y))


def test_paco_objective_queue_keys_and_gradients():
    net = ResNet(in_channels=1, n_classes=3, widths=(4, 4, 8), generator=gen(0))
    obj = PaCoObjective(net, np.array([5, 3, 1]), queue_size=5, proj_dim=4, generator=gen(1))
    assert not any(p.requires_grad for p in obj.key_model.parameters())
    augment = Augment(1, True, gen(2))
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    loss, logits = obj(net, x, y, augment)
    assert logits.shape == (3, 3) and torch.isfinite(loss)
    loss.backward()
    for name, p in [*net.named_parameters(), *obj.proj.named_parameters()]:
        assert p.grad is not None, name
    assert obj.queue_labels.tolist() == [0, 1, 2, -1, -1] and int(obj.queue_ptr) == 3
    obj(net, x, y, augment)  # wraps around the ring buffer
    assert obj.queue_labels.tolist() == [2, 1, 2, 0, 1] and int(obj.queue_ptr) == 1
    torch.testing.assert_close(obj.queue.norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="queue_size"):
        PaCoObjective(net, np.ones(3), queue_size=0)


def test_train_paco_runs_and_records_objective(tmp_path):
    x, y = toy_images(24, channels=3)
    model, history = train_paco(
        x, y, val_images=x[:6], val_labels=y[:6], epochs=1, batch_size=8, widths=(4, 4, 4),
        paco_queue=16, paco_dim=4, checkpoint_dir=tmp_path, progress=False,
    )  # fmt: skip
    assert history.best_epoch == 1 and not model.training
    _, meta = load_checkpoint(tmp_path)
    assert meta["objective"]["name"] == "paco" and meta["objective"]["queue_size"] == 16
    assert extract_features(model, x, progress=False).shape == (24, 4)


def test_one_stage1_configuration_for_both_trainers():
    """The in-memory trainer takes the hyper-parameters of ``dlsa train`` under the same
    names: every field of Stage1Config is an ImageTrainConfig field (a flag), declared
    once."""
    import dataclasses

    from dlsa.backbones import ImageTrainConfig, Stage1Config

    shared = {f.name for f in dataclasses.fields(Stage1Config)}
    image = {f.name: f for f in dataclasses.fields(ImageTrainConfig)}
    assert shared <= set(image)
    assert [f.name for f in dataclasses.fields(ImageTrainConfig)][0] == "images"
    x, y = toy_images(12)
    model, history = train_backbone(
        x, y, loss="cbs", arch="resnet14", widths=(2, 2, 4), epochs=1, batch_size=6,
        paco_queue=7, device="auto", progress=False,
    )  # fmt: skip
    assert model.depth == 14 and model.widths == (2, 2, 4) and history.best_epoch == 1
