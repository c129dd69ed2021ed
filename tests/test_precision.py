"""Training-step precision (``FilterConfig.precision`` / ``HeadConfig.precision``): what
runs in bfloat16 under autocast, what stays float32, and that "fp32" / "tf32" on the CPU
leave the results bit for bit as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlsa import DLSAClassifier
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine.precision import float32_region, step_precision
from dlsa.stage2.classifiers import LinearHead, StageClassifier
from dlsa.stage2.flows import MAF
from dlsa.stage2.mixture import GaussianMixtureLatent, squared_distances

CPU = torch.device("cpu")


def test_bf16_autocasts_matmuls_but_not_the_mixture_distances():
    g = torch.Generator().manual_seed(0)
    z, means = torch.randn(64, 32, generator=g) * 8, torch.randn(50, 32, generator=g) * 8
    with step_precision("bf16", CPU):
        assert (z @ means.T).dtype == torch.bfloat16  # autocast is on
        inside = squared_distances(z, means)
        with float32_region(CPU):
            assert (z @ means.T).dtype == torch.float32
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, squared_distances(z, means), rtol=0, atol=0)


def test_bf16_flow_and_head_return_float32_close_to_float32():
    torch.manual_seed(0)
    flow = MAF(16, n_blocks=2, zero_init=False).train()
    gen = torch.Generator().manual_seed(1)
    mixture = GaussianMixtureLatent.random(8, 16, sigma=None, generator=gen)
    head = StageClassifier(LinearHead(16, 5), 16, 5, use_prior=True)
    x, prior = torch.randn(256, 16), torch.rand(256, 5)
    z, log_det = flow(x)
    log_p = mixture.log_prob(z) + log_det
    logits = head(x, prior)
    with step_precision("bf16", CPU):
        z16, log_det16 = flow(x)
        log_p16 = mixture.log_prob(z16) + log_det16
        logits16 = head(x, prior)
    for ref, low in ((z, z16), (log_p, log_p16), (logits, logits16)):
        assert low.dtype == torch.float32
        assert not torch.equal(ref, low)  # the matmuls did run in bfloat16
        scale = ref.abs().mean()
        assert (low - ref).abs().max() < 0.05 * scale, (low - ref).abs().max() / scale


def test_tf32_restores_nothing_on_the_cpu_and_rejects_unknown_values():
    with step_precision("tf32", CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="'fp32', 'tf32' or 'bf16'"), step_precision("fp16", CPU):
        pass


def _fit(precision: str, data) -> DLSAClassifier:
    return DLSAClassifier(
        depth=1,
        base="balsoftmax",
        selection=None,
        flow_filter=FilterConfig(
            mixture=MixtureConfig(n_components=20, sigma=0.5),
            epochs=4,
            batch_size=128,
            precision=precision,
        ),
        head=HeadConfig(epochs=6, batch_size=128, precision=precision),
        random_state=0,
    ).fit(data.X_train, data.y_train)


@pytest.fixture(scope="module")
def data():
    return make_long_tailed_features(n_classes=10, n_features=16, n_max=150, imbalance=20, seed=3)


def test_precision_of_training_steps_end_to_end(data, tmp_path):
    fp32, tf32, bf16 = (_fit(p, data) for p in ("fp32", "tf32", "bf16"))
    proba = fp32.predict_proba(data.X_test)
    np.testing.assert_array_equal(tf32.predict_proba(data.X_test), proba)  # no-op on CPU
    assert not np.array_equal(bf16.predict_proba(data.X_test), proba)
    assert abs(bf16.score(data.X_test, data.y_test) - fp32.score(data.X_test, data.y_test)) < 0.05
    bf16.save(tmp_path / "m")
    loaded = DLSAClassifier.load(tmp_path / "m")
    assert loaded.flow_filter.precision == "bf16" and loaded.head.precision == "bf16"
    np.testing.assert_array_equal(
        loaded.predict_proba(data.X_test), bf16.predict_proba(data.X_test)
    )


def test_an_unknown_precision_is_refused_before_training(data):
    clf = DLSAClassifier(depth=0, selection=None, head=HeadConfig(precision="fp16"))
    with pytest.raises(ValueError, match="head.precision must be"):
        clf.fit(data.X_train, data.y_train)
