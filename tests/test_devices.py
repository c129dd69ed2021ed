"""The estimator, every base method, save/load across devices and a stage-1 epoch on each
available device.

The ``cuda`` cases carry the ``gpu`` marker and are skipped where no GPU is present; on a
GPU machine run them with ``python -m pytest -m gpu``. The ``cpu`` cases keep the same
code path covered on every machine.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlsa import DLSAClassifier
from dlsa.backbones import train_backbone
from dlsa.backbones.paco import train_paco
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig, SelectionConfig
from dlsa.engine.rows import fits_on_device
from dlsa.stage2.bases import BASES

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ],
)
DEVICES = ["cpu", CUDA]

FLT = FilterConfig(
    mixture=MixtureConfig(n_components=10, sigma=0.5), epochs=3, batch_size=128, lr=0.2
)
HEAD = HeadConfig(epochs=3, batch_size=128)


def make(device: str, **kw) -> DLSAClassifier:
    params = {"depth": 2, "flow_filter": FLT, "head": HEAD, "random_state": 0}
    params |= {"base": "balsoftmax", "selection": None, "device": device} | kw
    return DLSAClassifier(**params)


@pytest.mark.parametrize("device", DEVICES)
def test_cascade_fits_and_agrees_with_the_cpu(device, lt_data):
    clf = make(device).fit(lt_data.X_train, lt_data.y_train)
    assert all(p.device.type == device for f in clf.filters_ for p in f.parameters())
    proba = clf.predict_proba(lt_data.X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    if device != "cpu":
        cpu = make("cpu").fit(lt_data.X_train, lt_data.y_train).predict(lt_data.X_test)
        assert np.mean(cpu == clf.predict(lt_data.X_test)) >= 0.95


@pytest.mark.parametrize("device", [CUDA])
def test_training_features_in_host_memory(device, lt_data):
    """Features that stay in host memory (larger than the GPU's) give the model trained
    with them on the GPU, up to the float rounding of where the statistics are summed."""
    assert not fits_on_device(10**15, torch.device(device))
    assert fits_on_device(lt_data.X_train.nbytes, torch.device(device))
    on_gpu = make(device).fit(lt_data.X_train, lt_data.y_train)
    host = make(device, features_on="host").fit(lt_data.X_train, lt_data.y_train)
    assert all(p.device.type == device for f in host.filters_ for p in f.parameters())
    agree = np.mean(on_gpu.predict(lt_data.X_test) == host.predict(lt_data.X_test))
    assert agree >= 0.95


@pytest.mark.parametrize("device", DEVICES)
def test_saved_on_a_device_loads_on_the_cpu(device, lt_data, tmp_path):
    clf = make(device).fit(lt_data.X_train, lt_data.y_train)
    clf.save(tmp_path / "model")
    back = DLSAClassifier.load(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(back.predict(lt_data.X_test), clf.predict(lt_data.X_test))


@pytest.mark.parametrize("depth", [0, 1])
@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("device", [CUDA])
def test_every_base_method_runs_on_the_device(device, base, depth, lt_data):
    clf = make(device, base=base, depth=depth).fit(lt_data.X_train, lt_data.y_train)
    assert clf.predict_proba(lt_data.X_test).shape == (len(lt_data.y_test), 30)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("base", ["balsoftmax", "ride", "m2m"])
@pytest.mark.parametrize("device", DEVICES)
def test_lower_precision_training_steps(device, base, precision, lt_data):
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    flt = dataclasses.replace(FLT, precision=precision)
    head = dataclasses.replace(HEAD, precision=precision)
    clf = make(device, base=base, depth=1, flow_filter=flt, head=head)
    clf.fit(lt_data.X_train, lt_data.y_train)
    ref = make(device, base=base, depth=1).fit(lt_data.X_train, lt_data.y_train)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    agree = np.mean(clf.predict(lt_data.X_test) == ref.predict(lt_data.X_test))
    assert agree >= 0.9, agree


@pytest.mark.parametrize("device", [CUDA])
def test_selection_runs_on_the_device(device, lt_data):
    sel = SelectionConfig(bases=("balsoftmax", "logit-adjust"), proportions=(0.3,))
    clf = make(device, base="auto", depth=1, selection=sel)
    clf.fit(lt_data.X_train, lt_data.y_train)
    assert clf.selection_["chosen"]


@pytest.mark.parametrize("trainer", ["ce", "cbs", "paco"])
@pytest.mark.parametrize("device", [CUDA])
def test_a_stage_one_epoch_runs_on_the_device(device, trainer):
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = (rng.integers(0, 60, size=(48, 12, 12)) + 80 * y[:, None, None]).clip(0, 255)
    kw = dict(epochs=1, batch_size=16, widths=(4, 8, 8), seed=0, device=device, progress=False)
    if trainer == "paco":
        model, _ = train_paco(x.astype(np.uint8), y, paco_queue=32, paco_dim=8, **kw)
    else:
        model, _ = train_backbone(x.astype(np.uint8), y, loss=trainer, **kw)
    assert next(model.parameters()).device.type == device


def test_device_names_are_checked_in_one_line(lt_data):
    from dlsa.engine.devices import resolve_device
    from dlsa.errors import DLSAInputError

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DLSAInputError, match="--device 'gpu0' is not a torch device"):
        resolve_device("gpu0", what="--device")
    with pytest.raises(DLSAInputError, match="device 'gpu0'"):
        make("gpu0").fit(lt_data.X_train, lt_data.y_train)
    if not torch.cuda.is_available():
        with pytest.raises(DLSAInputError, match="'cuda:1': CUDA is not available here"):
            resolve_device("cuda:1")
    else:
        n = torch.cuda.device_count()
        with pytest.raises(DLSAInputError, match=f"only {n} CUDA device"):
            resolve_device(f"cuda:{n}")
