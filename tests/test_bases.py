"""Base methods: one behavioural test over all of them, then each against its definition."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from dlsa import DLSAClassifier
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.stage2.bases import BASES, StageData, class_balanced_order, make_base
from dlsa.stage2.bases.balsoftmax import BalancedSoftmax
from dlsa.stage2.bases.cbs import ClassBalancedSampling
from dlsa.stage2.bases.logit_adjust import PriorLinearHead
from dlsa.stage2.bases.lws import ScaledLinearHead
from dlsa.stage2.bases.m2m import MajorToMinor, acceptance_probability, translate
from dlsa.stage2.bases.ride import Ride, RideHead, diversity_temperature
from dlsa.stage2.bases.taunorm import TAU_GRID, TauNormHead, mean_class_accuracy
from dlsa.stage2.classifiers import CosineHead

FLT = FilterConfig(
    mixture=MixtureConfig(n_components=10, sigma=0.5), epochs=4, batch_size=128, lr=0.2
)
HEAD = HeadConfig(epochs=10, batch_size=128)

VARIANTS = [(name, None) for name in sorted(BASES)] + [("tau-norm", {"tau": None})]


def make(depth: int, base: str, params=None, **kw) -> DLSAClassifier:
    return DLSAClassifier(
        depth=depth,
        base=base,
        base_params=params,
        flow_filter=FLT,
        head=HEAD,
        selection=None,
        random_state=0,
        **kw,
    )


@pytest.fixture(scope="module")
def donor(lt_data):
    """A depth-1 model whose flow filter every depth-1 test reuses (trained once)."""
    return make(1, "ce").fit(lt_data.X_train, lt_data.y_train)


def fit(lt_data, donor, depth: int, base: str, params=None) -> DLSAClassifier:
    reuse = donor if depth else None
    return make(depth, base, params).fit(lt_data.X_train, lt_data.y_train, reuse_filters=reuse)


def stage_data(lt_data, *, with_prior: bool, dtype=torch.float64) -> StageData:
    x = torch.as_tensor(lt_data.X_train, dtype=dtype)
    y = torch.as_tensor(lt_data.y_train)
    counts = torch.bincount(y, minlength=30).to(dtype)
    prior = None
    if with_prior:
        prior = torch.softmax(
            torch.randn(len(y), 30, generator=torch.Generator().manual_seed(0)), 1
        )
        prior = prior.to(dtype)
    return StageData(x, y, counts, prior)


# ------------------------------------------------------------ all methods
@pytest.mark.parametrize("depth", [0, 1])
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_every_method_fits_beats_chance_and_round_trips(
    lt_data, donor, tmp_path, name, params, depth
):
    clf = fit(lt_data, donor, depth, name, params)
    assert len(clf.filters_) == depth
    accuracy = clf.score(lt_data.X_test, lt_data.y_test)
    assert accuracy > 5 / 30, f"{name}: {accuracy:.3f} is too close to chance (1/30)"
    proba = clf.predict_proba(lt_data.X_test)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    loaded = DLSAClassifier.load(clf.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba(lt_data.X_test), proba)
    np.testing.assert_array_equal(loaded.predict(lt_data.X_test), clf.predict(lt_data.X_test))


@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("name", sorted(BASES))
def test_every_trainable_parameter_gets_a_gradient(lt_data, name, with_prior):
    base = make_base(name)
    data = stage_data(lt_data, with_prior=with_prior)
    model = base.build(8, 30, use_prior=with_prior, generator=torch.Generator().manual_seed(0))
    model = model.to(torch.float64)
    model.fit_standardization(data.inputs)
    batch = data.subset(torch.arange(0, len(data.target), 7))
    loss = base.batch_loss(model, batch)
    if isinstance(base, Ride):
        loss = loss + base.router_loss(model, batch)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_make_base_rejects_bad_names_and_values():
    with pytest.raises(ValueError, match="unknown base method"):
        make_base("focal")
    with pytest.raises(ValueError, match="no hyper-parameter"):
        make_base("ride", {"experts": 2})
    for name, params in [
        ("ride", {"n_experts": 0}),
        ("tau-norm", {"tau": -1.0}),
        ("tau-norm", {"val_fraction": 1.0}),
        ("m2m", {"beta": 1.0}),
        ("logit-adjust", {"tau": -0.5}),
        ("cosine", {"scale": 0.0}),
    ]:
        with pytest.raises(ValueError, match=name):
            make_base(name, params)


# ------------------------------------------------------ balanced softmax
def test_balanced_softmax_is_cross_entropy_on_shifted_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g, dtype=torch.float64)
    target = torch.randint(5, (16,), generator=g)
    counts = torch.tensor([500.0, 120.0, 30.0, 4.0, 1.0], dtype=torch.float64)
    expected = F.cross_entropy(logits + counts.log(), target)
    torch.testing.assert_close(BalancedSoftmax().loss(logits, target, counts), expected)


# ---------------------------------------------------- class-balanced sampler
def test_class_balanced_sampler_draws_classes_and_samples_uniformly():
    y = torch.repeat_interleave(torch.arange(4), torch.tensor([1000, 100, 10, 1]))
    idx = class_balanced_order(y, 40_000, torch.Generator().manual_seed(0))
    per_class = torch.bincount(y[idx], minlength=4).numpy()
    assert chisquare(per_class).pvalue > 1e-3
    assert np.all(np.abs(per_class / 40_000 - 0.25) < 0.01)
    within = torch.bincount(idx[y[idx] == 2] - 1100, minlength=10).numpy()
    assert chisquare(within).pvalue > 1e-3


def test_class_balanced_sampler_lives_below_the_bases_and_is_re_exported():
    from dlsa.engine import sampling
    from dlsa.stage2.bases import _base

    assert class_balanced_order is sampling.class_balanced_order
    assert _base.class_balanced_order is sampling.class_balanced_order


def test_cbs_epoch_has_n_draws_and_skips_absent_classes():
    y = torch.tensor([0] * 50 + [2] * 5)
    order = ClassBalancedSampling().epoch_order(y, torch.bincount(y), torch.Generator())
    assert order.shape == (55,)
    assert set(y[order].tolist()) == {0, 2}


def test_crt_is_cbs_on_frozen_features(lt_data, donor):
    a = fit(lt_data, donor, 0, "crt")
    b = fit(lt_data, donor, 0, "cbs")
    np.testing.assert_array_equal(a.predict_proba(lt_data.X_test), b.predict_proba(lt_data.X_test))


# --------------------------------------------------------------- cosine
def test_cosine_learns_its_scale_only_when_asked(lt_data, donor):
    learned = fit(lt_data, donor, 0, "cosine").regular_.head
    fixed = fit(lt_data, donor, 0, "cosine", {"learn_scale": False}).regular_.head
    assert isinstance(learned, CosineHead)
    assert isinstance(learned.scale, torch.nn.Parameter) and learned.scale.item() != 16.0
    assert "scale" in dict(fixed.named_buffers()) and float(fixed.scale) == 16.0


# -------------------------------------------------------------- tau-norm
def test_tau_norm_with_tau_zero_is_the_raw_classifier():
    head = TauNormHead(6, 4).to(torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    torch.testing.assert_close(head(x), x @ head.weight.T)
    head.tau.fill_(1.0)
    unit = head.weight / head.weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(head(x), x @ unit.T)


def test_tau_norm_keeps_its_tau_and_is_bias_free(lt_data, donor):
    clf = fit(lt_data, donor, 0, "tau-norm", {"tau": 0.5})
    head = clf.regular_.head
    assert float(head.tau) == 0.5
    assert head.linear.bias is None


def test_tau_norm_selects_tau_on_a_split_of_the_training_data(lt_data, donor, tmp_path):
    clf = fit(lt_data, donor, 1, "tau-norm", {"tau": None})
    taus = [float(h.head.tau) for h in (*clf.heads_, clf.regular_)]
    assert all(min(abs(t - grid) for grid in TAU_GRID) < 1e-6 for t in taus)
    loaded = DLSAClassifier.load(clf.save(tmp_path / "m"))
    assert [float(h.head.tau) for h in (*loaded.heads_, loaded.regular_)] == taus


def test_mean_class_accuracy_weights_classes_equally():
    logits = torch.tensor([[1.0, 0.0]] * 9 + [[1.0, 0.0]])
    target = torch.tensor([0] * 9 + [1])
    assert mean_class_accuracy(logits, target) == pytest.approx(0.5)


# ------------------------------------------------------------------- LWS
def test_lws_with_unit_scales_is_the_raw_classifier():
    head = ScaledLinearHead(6, 4)
    x = torch.randn(10, 6)
    torch.testing.assert_close(head(x), head.linear(x))


def test_lws_learns_scales_on_a_frozen_ce_classifier(lt_data, donor):
    lws = fit(lt_data, donor, 0, "lws").regular_.head
    ce = fit(lt_data, donor, 0, "ce").regular_.head
    # phase 1 is exactly ce, and phase 2 leaves the weights alone
    torch.testing.assert_close(lws.linear.weight, ce.weight, rtol=0, atol=0)
    torch.testing.assert_close(lws.linear.bias, ce.bias, rtol=0, atol=0)
    assert not torch.allclose(lws.scales, torch.ones(30))


# -------------------------------------------------------- logit adjustment
def test_logit_adjust_with_tau_zero_is_ce(lt_data, donor):
    la = fit(lt_data, donor, 0, "logit-adjust", {"tau": 0.0})
    ce = fit(lt_data, donor, 0, "ce")
    np.testing.assert_array_equal(
        la.predict_proba(lt_data.X_test), ce.predict_proba(lt_data.X_test)
    )


def test_logit_adjust_subtracts_tau_log_prior(lt_data, donor):
    la = fit(lt_data, donor, 0, "logit-adjust", {"tau": 1.5})
    ce = fit(lt_data, donor, 0, "ce")
    log_prior = np.log(la.class_counts_ / la.class_counts_.sum())
    diff = la.decision_function(lt_data.X_test) - ce.decision_function(lt_data.X_test)
    np.testing.assert_allclose(diff, np.broadcast_to(-1.5 * log_prior, diff.shape), atol=1e-4)


def test_logit_adjust_gives_absent_classes_the_smallest_boost():
    head = PriorLinearHead(3, 3)
    head.fit_prior(torch.tensor([90.0, 10.0, 0.0]))
    torch.testing.assert_close(head.log_prior, torch.tensor([math.log(0.9), math.log(0.1), 0.0]))


# ------------------------------------------------------------------ RIDE
@pytest.mark.parametrize("depth", [0, 1])
def test_ride_with_one_expert_is_its_base(lt_data, donor, depth):
    ride = fit(lt_data, donor, depth, "ride", {"n_experts": 1, "norm_scale": None})
    base = fit(lt_data, donor, depth, "balsoftmax")
    np.testing.assert_array_equal(
        ride.predict_proba(lt_data.X_test), base.predict_proba(lt_data.X_test)
    )
    assert ride.regular_.head.router is None


def test_ride_router_decides_which_experts_are_averaged(lt_data):
    base = Ride(n_experts=3)
    model = base.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
    head = model.head
    assert isinstance(head, RideHead) and head.router is not None
    x = torch.as_tensor(lt_data.X_test)
    experts = head.expert_logits(model.standardize(x))
    with torch.no_grad():
        head.router.fc.weight.zero_()
        head.router.fc.bias.fill_(-1.0)
        torch.testing.assert_close(base.logits(model, x, None), experts[0])
        head.router.fc.bias.fill_(1.0)
        torch.testing.assert_close(base.logits(model, x, None), experts.mean(0))
    no_router = Ride(n_experts=3, use_router=False)
    model = no_router.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
    assert model.head.router is None
    torch.testing.assert_close(no_router.logits(model, x, None), model(x))


def test_ride_diversity_rewards_disagreeing_experts(lt_data):
    base = Ride(n_experts=2, diversity_weight=1.0)
    data = stage_data(lt_data, with_prior=False)
    model = base.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
    model = model.to(torch.float64)
    same = copy.deepcopy(model)
    with torch.no_grad():
        same.head.experts[1].load_state_dict(same.head.experts[0].state_dict())
    _, logits = base.expert_logits(same, data.inputs, None)
    assert base.diversity(logits, data.counts).item() == pytest.approx(0.0, abs=1e-12)
    _, logits = base.expert_logits(model, data.inputs, None)
    assert base.diversity(logits, data.counts).item() > 0


def test_ride_temperature_is_higher_for_frequent_classes():
    temp = diversity_temperature(torch.tensor([500.0, 50.0, 5.0]), 1.0, 0.05)
    assert float(temp.max()) == pytest.approx(1.0)
    assert torch.all(temp[:-1] > temp[1:])


# ------------------------------------------------------------------- M2M
@pytest.fixture(scope="module")
def easy():
    """6 well-separated single-mode classes in D=16, counts 200 .. 10: a set where g can
    be confident, so that translations can succeed."""
    return make_long_tailed_features(
        n_classes=6, n_features=16, n_max=200, imbalance=20, modes_per_class=1,
        separation=1.0, seed=1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def m2m_models(easy):
    """g: a CE classifier of the imbalanced set; f: a copy of it (as at phase 2's start)."""
    clf = DLSAClassifier(depth=0, base="ce", head=HEAD, selection=None, random_state=0)
    g = clf.fit(easy.X_train, easy.y_train).regular_.double().requires_grad_(False)
    return g, copy.deepcopy(g).requires_grad_(True)


def test_m2m_acceptance_prefers_larger_source_classes():
    counts = torch.tensor([1000.0, 100.0, 10.0])
    p = acceptance_probability(counts, torch.tensor([0, 1, 2]), torch.tensor([2, 1]), 0.999)
    assert p[0, 0] > p[0, 1] > p[0, 2] == 0
    assert torch.all(p[1, 1:] == 0)


def test_m2m_translation_moves_seeds_towards_the_target_class(easy, m2m_models):
    g, f = m2m_models
    x = torch.as_tensor(easy.X_train, dtype=torch.float64)
    y = torch.as_tensor(easy.y_train)
    seeds = g.standardize(x[y == 0][:40])
    target = torch.full((40,), 3)
    moved = translate(
        g, f, seeds, None, torch.zeros(40, dtype=torch.long), target,
        lam=0.5, step=0.1 * math.sqrt(16), n_steps=10, radius=0.5 * math.sqrt(16),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    before = torch.softmax(g.head(seeds), 1)[:, 3]
    after = torch.softmax(g.head(moved), 1)[:, 3]
    assert torch.all(after > before)
    assert float(after.mean()) > 5 * float(before.mean())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_m2m_closed_form_gradient_is_autograds_bit_for_bit(easy, m2m_models, dtype):
    """The translation's gradient without autograd (linear heads) equals the autograd
    gradient of ``CE(g(x), k) + lam * mean f_k0(x)`` exactly, on random points and
    batch sizes."""
    from dlsa.stage2.bases.m2m import _LinearGradient, _stage_logits

    g, f = (m.to(dtype) for m in m2m_models)
    gen = torch.Generator().manual_seed(0)
    for n in (1, 7, 97, 256):
        x = 3 * torch.randn(n, 16, generator=gen, dtype=dtype)
        k = torch.randint(0, 6, (n,), generator=gen)
        k0 = torch.randint(0, 6, (n,), generator=gen)
        lam = float(torch.rand((), generator=gen))
        xa = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(_stage_logits(g, xa, None), k)
        loss = loss + lam * _stage_logits(f, xa, None).gather(1, k0[:, None]).mean()
        (expected,) = torch.autograd.grad(loss, [xa])
        closed = _LinearGradient.of(g, f, x, k0, k, lam)
        assert closed is not None
        assert torch.equal(closed(x, None), expected)
    assert _LinearGradient.of(g, f, x.half(), k0, k, lam) is None  # autograd path


@pytest.mark.parametrize(("gamma", "beta"), [(0.0, 0.0), (0.5, 0.999)])
def test_m2m_rejected_slots_keep_their_real_minority_samples(easy, m2m_models, gamma, beta):
    g, f = m2m_models
    method = MajorToMinor(gamma=gamma, beta=beta)
    y = torch.as_tensor(easy.y_train)
    x = torch.as_tensor(easy.X_train, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    idx = class_balanced_order(y, 600, gen)
    s, target = g.standardize(x[idx]), y[idx]
    counts = torch.bincount(y).double()
    out, accepted = method.generate(g, f, s, None, target, counts, gen)
    torch.testing.assert_close(out[~accepted], s[~accepted], rtol=0, atol=0)
    assert not torch.any(accepted & (target == 0))  # the largest class is never replaced
    assert accepted.any() and (~accepted & (target != 0)).any()
    assert torch.all((out[accepted] - s[accepted]).norm(dim=1) > 0)
    confidence = torch.softmax(g.head(out[accepted]), 1).gather(1, target[accepted, None])
    assert torch.all(confidence >= gamma)


# ------------------------------------------------------------ residual stages
@pytest.mark.parametrize("name", sorted(BASES))
def test_residual_stage_starts_as_its_offset_and_only_it_learns(lt_data, name):
    base = make_base(name)
    data = stage_data(lt_data, with_prior=True, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    offset = base.build(4, 30, use_prior=False, generator=gen)
    offset.fit_standardization(data.inputs[:, :4])
    offset.eval()
    model = base.build(8, 30, use_prior=True, generator=gen)
    model.fit_standardization(data.inputs)
    model.make_residual(offset)
    torch.testing.assert_close(model(data.inputs, data.prior), offset(data.inputs[:, :4]))
    loss = base.batch_loss(model, data.subset(torch.arange(0, len(data.target), 7)))
    loss.backward()
    assert all(p.grad is None for p in offset.parameters())
    assert {n for n, _ in model.named_parameters()}.isdisjoint(
        f"offset_model.{n}" for n, _ in offset.named_parameters()
    )
    assert not any(k.startswith("offset") for k in model.state_dict())


@pytest.mark.parametrize("name", ["balsoftmax", "cosine", "ride", "m2m"])
def test_residual_cascade_round_trips_and_leaves_its_base_untouched(lt_data, tmp_path, name):
    plain = make(0, name).fit(lt_data.X_train, lt_data.y_train)
    clf = make(1, name, residual=True).fit(lt_data.X_train, lt_data.y_train)
    assert clf.heads_[0].offset_model is clf.fallback_
    for key, value in plain.fallback_.state_dict().items():
        torch.testing.assert_close(clf.fallback_.state_dict()[key], value, rtol=0, atol=0)
    assert clf.score(lt_data.X_test, lt_data.y_test) > 5 / 30
    loaded = DLSAClassifier.load(clf.save(tmp_path / "model"))
    assert loaded.residual and loaded.heads_[0].offset_model is loaded.fallback_
    np.testing.assert_array_equal(
        loaded.predict_proba(lt_data.X_test), clf.predict_proba(lt_data.X_test)
    )


def test_ride_experts_stay_accurate_and_bounded(lt_data, tmp_path):
    clf = make(0, "ride").fit(lt_data.X_train, lt_data.y_train)
    model = clf.fallback_
    with torch.no_grad():
        _, logits = clf.base_.expert_logits(model, torch.as_tensor(lt_data.X_test), None)
    target = torch.as_tensor(np.searchsorted(clf.classes_, lt_data.y_test))
    ensemble = clf.score(lt_data.X_test, lt_data.y_test)
    for expert in logits:
        assert float(expert.abs().max()) <= 30.0 + 1e-4  # cosine experts, s = 30
        assert float((expert.argmax(1) == target).float().mean()) >= ensemble - 0.1
    linear = make(0, "ride", {"norm_scale": None}).fit(lt_data.X_train, lt_data.y_train)
    loaded = DLSAClassifier.load(linear.save(tmp_path / "m"))
    assert loaded.base_.norm_scale is None
    np.testing.assert_array_equal(loaded.predict(lt_data.X_test), linear.predict(lt_data.X_test))


def test_ride_rejects_a_non_positive_norm_scale():
    with pytest.raises(ValueError, match="norm_scale must be > 0 or None"):
        make_base("ride", {"norm_scale": 0.0})


# ------------------------------------------------------------ lr schedule
@pytest.mark.parametrize("name", ["ce", "lws", "m2m", "ride", "tau-norm"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_constant_schedule_keeps_the_lr_fixed_in_every_phase(lt_data, monkeypatch, name, schedule):
    from dlsa.engine.training import SGD

    lrs: list[float] = []
    step = SGD.step

    def spy(self, *args, **kwargs):
        lrs.append(self.lr)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SGD, "step", spy)
    base = make_base(name)
    data = stage_data(lt_data, with_prior=False, dtype=torch.float32)
    model = base.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
    config = HeadConfig(epochs=2, batch_size=256, lr=0.05, schedule=schedule)
    base.fit(model, data, config, torch.Generator().manual_seed(0))
    assert base.settings(config).cosine == (schedule == "cosine")
    phase_lrs = {0.05, Ride().router_lr}
    if schedule == "constant":
        assert lrs and set(lrs) <= phase_lrs
    else:
        assert any(lr not in phase_lrs for lr in lrs)


# ------------------------------------------------------------ shared plain phase
PLAIN = ("ce", "logit-adjust", "lws", "m2m")


def plain_phase_weights(lt_data, name: str, monkeypatch) -> list[torch.Tensor]:
    """The linear weights and bias of ``name``'s first phase (stopped right after it)."""
    import dlsa.stage2.bases._base as base_module

    class Stop(Exception):
        pass

    real = base_module.train_epochs

    def first_only(params, *args, **kwargs):
        real(params, *args, **kwargs)
        raise Stop([p.detach().clone() for p in params])

    monkeypatch.setattr(base_module, "train_epochs", first_only)
    method = make_base(name)
    data = stage_data(lt_data, with_prior=False, dtype=torch.float32)
    model = method.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
    with pytest.raises(Stop) as stop:
        method.fit(model, data, HEAD, torch.Generator().manual_seed(0))
    monkeypatch.setattr(base_module, "train_epochs", real)
    return stop.value.args[0]


def test_the_plain_first_phases_are_one_training(lt_data, monkeypatch):
    """ce, logit-adjust, lws (phase 1) and m2m (g) train the same weights, bit for bit:
    the contract that lets the selection train them once; the other methods do not
    claim it."""
    ce = plain_phase_weights(lt_data, "ce", monkeypatch)
    for name in PLAIN[1:]:
        for a, b in zip(plain_phase_weights(lt_data, name, monkeypatch), ce, strict=True):
            assert torch.equal(a, b), name
    assert {n for n in BASES if make_base(n).plain_phase} == set(PLAIN)


def test_shared_phases_train_the_plain_phase_once_and_change_nothing(lt_data, monkeypatch):
    import dlsa.stage2.bases._base as base_module
    from dlsa.stage2.bases import shared_phases

    data = stage_data(lt_data, with_prior=False, dtype=torch.float32)

    def fitted(name: str) -> dict[str, torch.Tensor]:
        method = make_base(name)
        model = method.build(8, 30, use_prior=False, generator=torch.Generator().manual_seed(0))
        method.fit(model, data, HEAD, torch.Generator().manual_seed(0))
        return model.state_dict()

    alone = {name: fitted(name) for name in PLAIN}
    calls = []
    real = base_module.train_epochs
    monkeypatch.setattr(
        base_module, "train_epochs", lambda *a, **k: calls.append(k.get("desc")) or real(*a, **k)
    )
    with shared_phases():
        together = {name: fitted(name) for name in PLAIN}
    assert len(calls) == 1 + 2  # one plain phase, then lws's scales and m2m's f
    for name in PLAIN:
        for key, value in alone[name].items():
            assert torch.equal(together[name][key], value), (name, key)
