"""Flow filter: routing quantile, cluster prior, epoch selection, stability, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dlsa.config import FilterConfig, MixtureConfig
from dlsa.engine.sampling import PurityPairSampler
from dlsa.stage2.filter import (
    FlowFilter,
    cluster_class_histogram,
    top_fraction_threshold,
)


def small_config(**changes) -> FilterConfig:
    base = FilterConfig(
        mixture=MixtureConfig(n_components=12, sigma=0.5),
        epochs=6,
        batch_size=128,
        lr=0.2,
        min_cluster_size=3,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def fitted(lt_data, generator):
    x = torch.from_numpy(lt_data.X_train)
    y = torch.from_numpy(lt_data.y_train)
    flt = FlowFilter(x.shape[1], 30, small_config(), generator=generator)
    report = flt.fit(x, y, generator=generator)
    return flt, report, x, y


@pytest.mark.parametrize("proportion", [0.1, 0.3, 0.5])
def test_threshold_selects_exactly_the_top_fraction(proportion):
    lp = torch.randn(1001, generator=torch.Generator().manual_seed(0))
    thr = top_fraction_threshold(lp, proportion)
    selected = lp >= thr
    assert int(selected.sum()) == round(proportion * 1001)
    assert lp[selected].min() >= lp[~selected].max()


def test_fitted_filter_routes_exactly_thirty_percent_of_its_train_set(fitted):
    flt, report, x, y = fitted
    out = flt.transform(x)
    mask = flt.route(out.log_prob)
    assert int(mask.sum()) == round(0.3 * x.shape[0])
    assert report.threshold == pytest.approx(float(flt.threshold))


def test_cluster_prior_is_class_histogram_of_train_clusters(fitted):
    flt, _, x, y = fitted
    out = flt.transform(x)
    hist = cluster_class_histogram(out.cluster, y, flt.n_components, 30)
    torch.testing.assert_close(flt.cluster_counts, hist)
    compact = flt.cluster_prior(out.cluster)
    assert compact.shape == (x.shape[0], 30) and compact.table.shape == hist.shape
    prior = compact.dense()
    torch.testing.assert_close(prior.sum(1), torch.ones(x.shape[0]))
    k = int(out.cluster[0])
    torch.testing.assert_close(prior[0], hist[k] / hist[k].sum())
    rows = out.cluster == k  # indexing keeps it compact and selects the same rows
    torch.testing.assert_close(compact[rows].dense(), prior[rows])


def test_selected_epoch_is_after_warmup_and_reported(fitted):
    _, report, _, _ = fitted
    assert report.selected_epoch >= 3
    assert len(report.losses) == 6 and len(report.good_clusters) == 6
    assert report.selection


def test_weighted_mle_sends_more_tail_than_the_input_holds(fitted, lt_data):
    flt, _, x, y = fitted
    counts = np.bincount(lt_data.y_train)
    tail = torch.from_numpy(counts <= 20)[y]
    mask = flt.route(flt.transform(x).log_prob)
    assert float(tail[mask].float().mean()) > float(tail.float().mean())


def test_unfitted_filter_refuses_to_route(generator):
    flt = FlowFilter(4, 3, small_config(), generator=generator)
    with pytest.raises(RuntimeError, match="not fitted"):
        flt.route(torch.zeros(2))


def test_more_clusters_than_samples_is_a_clear_error(generator):
    flt = FlowFilter(4, 2, small_config(), generator=generator)
    x, y = torch.randn(8, 4), torch.arange(8) % 2
    with pytest.raises(ValueError, match="8 training samples but the filter has K=12"):
        flt.fit(x, y, generator=generator)


def test_level_with_near_empty_classes_stays_finite(generator):
    """DESIGN pitfall: q=2 with one- or two-sample classes used to diverge to NaN."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, 6, generator=g), torch.randn(3, 6, generator=g) * 0.01 + 3])
    y = torch.cat([torch.zeros(150), torch.ones(150), torch.tensor([2.0, 2.0, 3.0])]).long()
    cfg = small_config(epochs=10, lr=0.5, batch_size=64)
    flt = FlowFilter(6, 4, cfg, generator=generator)
    report = flt.fit(x, y, generator=generator)
    assert report.diverged_epoch is None
    out = flt.transform(x)
    assert torch.isfinite(out.log_prob).all() and torch.isfinite(out.z).all()
    assert all(np.isfinite(v) for e in report.losses for v in e.values())


def test_fallback_keeps_a_trained_epoch_when_no_cluster_is_pure(generator):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = torch.randint(0, 5, (200,), generator=g)  # labels unrelated to x: no pure cluster
    cfg = small_config(epochs=4, min_purity=0.99, min_cluster_size=50)
    flt = FlowFilter(4, 5, cfg, generator=generator)
    report = flt.fit(x, y, generator=generator)
    assert report.selection.startswith("fallback")
    assert report.selected_epoch == 4


def test_same_generator_seed_gives_identical_filters(lt_data):
    x = torch.from_numpy(lt_data.X_train)
    y = torch.from_numpy(lt_data.y_train)
    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        flt = FlowFilter(8, 30, small_config(epochs=2), generator=g)
        flt.fit(x, y, generator=g)
        outs.append(flt.transform(x).log_prob)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# ----------------------------------------------------- original-release options
def _three_classes(n: tuple[int, ...] = (500, 80, 20)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(n)])
    return torch.randn(len(y), 4, generator=g) + y[:, None].double() * 2, y


@pytest.mark.parametrize("sampler", ["shuffle", "class-balanced"])
def test_flow_batches_are_class_uniform_with_the_class_balanced_sampler(
    sampler, generator, monkeypatch
):
    from dlsa.stage2.filter_training import FilterTrainer

    drawn: list[torch.Tensor] = []
    original = FilterTrainer.epoch_order

    def spy(self):
        order = original(self)
        drawn.append(order)
        return order

    monkeypatch.setattr(FilterTrainer, "epoch_order", spy)
    x, y = _three_classes()
    cfg = small_config(epochs=3, batch_size=64, batch_sampler=sampler)
    FlowFilter(4, 3, cfg, generator=generator).fit(x.float(), y, generator=generator)
    assert len(drawn) == 3 and all(o.numel() == 600 for o in drawn)  # N draws an epoch
    share = torch.bincount(y[torch.cat(drawn)], minlength=3) / 1800
    expected = (
        torch.full((3,), 1 / 3)
        if sampler == "class-balanced"
        else torch.tensor([500, 80, 20]) / 600
    )
    torch.testing.assert_close(share, expected.float(), atol=0.04, rtol=0)
    if sampler == "shuffle":
        assert all(torch.equal(o.sort().values, torch.arange(600)) for o in drawn)


def test_mle_term_is_divided_by_d_only_per_dimension(generator):
    from dlsa.stage2.filter_training import FilterReport, FilterTrainer

    x, y = _three_classes()
    x = x.float()
    cfg = small_config(lambda_bal=0.0, lambda_pure=0.0, lambda_mle=2.0)
    flt = FlowFilter(4, 3, cfg, generator=generator)
    idx = torch.arange(0, 600, 7)
    terms, losses = {}, {}
    for per_dim in (True, False):
        flt.config = dataclasses.replace(cfg, mle_per_dimension=per_dim)
        pairs = torch.Generator().manual_seed(5)  # the same purity pairs (and BN batch)
        trainer = FilterTrainer(flt, x, y, pairs, FilterReport(600, 3))
        losses[per_dim] = float(trainer.step_loss(idx).detach())
        terms[per_dim] = trainer.terms["mle"]
    assert terms[False] == pytest.approx(4 * terms[True])  # D = 4
    assert losses[False] == pytest.approx(2.0 * terms[False])  # lambda_lh x the mean NLL


@pytest.mark.parametrize(("ties", "epoch"), [("latest", 4), ("earliest", 2)])
def test_epoch_ties_pick_the_latest_or_earliest_equally_good_epoch(ties, epoch, generator):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = torch.randint(0, 5, (200,), generator=g)  # no pure cluster: every epoch scores 0
    cfg = small_config(epochs=4, min_purity=0.99, min_cluster_size=50, epoch_ties=ties)
    report = FlowFilter(4, 5, cfg, generator=generator).fit(x, y, generator=generator)
    assert report.good_clusters == [0, 0, 0, 0]
    assert report.selected_epoch == epoch  # epochs 2-4 are past selection_start
    assert ties in report.selection


def test_filter_builds_the_configured_flow(generator):
    from dlsa.config import FlowConfig
    from dlsa.stage2.flows import BatchNormTransform, MaskedAutoregressiveTransform

    flow = FlowConfig(hidden_layers=2, zero_init=False, bn_unbiased=True)
    flt = FlowFilter(4, 3, small_config(flow=flow), generator=generator)
    made = [t for t in flt.flow.transforms if isinstance(t, MaskedAutoregressiveTransform)]
    bns = [t for t in flt.flow.transforms if isinstance(t, BatchNormTransform)]
    assert len(made) == 2 and all(len(t.deeper) == 1 for t in made)
    assert all(bool(t.output.weight.abs().sum() > 0) for t in made)
    assert len(bns) == 2 and all(t.unbiased for t in bns)


def _standardized(generator_seed: int = 0) -> FlowFilter:
    cfg = FilterConfig(
        mixture=MixtureConfig(n_components=6, sigma=0.5), epochs=3, batch_size=64, standardize=True
    )
    return FlowFilter(5, 3, cfg, generator=torch.Generator().manual_seed(generator_seed))


def test_standardized_filter_does_not_depend_on_the_feature_scale():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 5, generator=g), torch.arange(300) % 3
    x[y == 1] += 2.0
    scale = torch.tensor([1e3, 1e-3, 1.0, 50.0, 7.0])
    shift = torch.tensor([1e4, -3.0, 0.0, 5.0, 0.5])
    a, b = _standardized(), _standardized()
    a.fit(x, y, generator=torch.Generator().manual_seed(2))
    b.fit(x * scale + shift, y, generator=torch.Generator().manual_seed(2))
    out_a, out_b = a.transform(x), b.transform(x * scale + shift)
    assert torch.equal(out_a.cluster, out_b.cluster)
    assert torch.equal(a.route(out_a.log_prob), b.route(out_b.log_prob))
    # log p(s x + t) = log p(x) - sum(log s): a density of the scaled features
    torch.testing.assert_close(
        out_b.log_prob, out_a.log_prob - scale.log().sum(), atol=1e-3, rtol=1e-4
    )


def test_standardized_filter_log_det_matches_the_autograd_jacobian():
    flt = _standardized()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(200, 5, generator=g) * 30 + 100, torch.arange(200) % 3
    flt.fit(x, y, generator=g)
    flt.eval()
    point = x[:1].double()
    flt.double()
    _, log_prob, _ = flt(point)
    z = flt(point)[0]
    jac = torch.autograd.functional.jacobian(lambda v: flt(v[None])[0][0], point[0])
    expected = flt.latent(z)[0] + torch.linalg.slogdet(jac).logabsdet
    torch.testing.assert_close(log_prob, expected)


def test_purity_pairs_are_drawn_once_per_epoch(lt_data, generator, monkeypatch):
    """Each epoch draws its steps' pairs at once (one copy to the device), never per step."""
    calls = {"steps": [], "draw": 0}
    draw_steps = PurityPairSampler.draw_steps
    monkeypatch.setattr(
        PurityPairSampler,
        "draw_steps",
        lambda self, s, p, g: calls["steps"].append(s) or draw_steps(self, s, p, g),
    )
    monkeypatch.setattr(PurityPairSampler, "draw", lambda *a: calls.update(draw=1))
    x, y = torch.from_numpy(lt_data.X_train), torch.from_numpy(lt_data.y_train)
    cfg = small_config(batch_size=100)
    FlowFilter(x.shape[1], 30, cfg, generator=generator).fit(x, y, generator=generator)
    per_epoch = x.shape[0] // 100 + (x.shape[0] % 100 >= 2)
    assert calls["steps"] == [per_epoch] * cfg.epochs and calls["draw"] == 0


# ------------------------------------------------------------------ the release's step
def _release_step_config(**changes) -> FilterConfig:
    base = small_config(
        lambda_bal=0.0,
        lambda_pure=0.0,
        lambda_mle=2.0,
        mle_per_dimension=False,
        mle_normalization="batch",
        purity_anchors="batch",
        flow_passes="separate",
    )
    return dataclasses.replace(base, **changes)


def test_batch_normalised_mle_is_the_release_batch_mean_of_weighted_log_likelihoods(generator):
    """The release's ``-(log_lh * w).mean() * lambda_lh`` with class weights summing to
    one: the weight-sum form divided by the batch size and multiplied by the weight sum."""
    from dlsa.stage2.filter_training import FilterReport, FilterTrainer
    from dlsa.stage2.losses import class_weights

    x, y = _three_classes()
    x = x.float()
    cfg = _release_step_config()
    flt = FlowFilter(4, 3, cfg, generator=generator)
    idx = torch.arange(0, 600, 7)
    trainer = FilterTrainer(flt, x, y, torch.Generator().manual_seed(5), FilterReport(600, 3))
    loss = trainer.step_loss(idx)
    per_class = class_weights(torch.bincount(y).float(), 2.0)
    assert float(per_class.sum()) == pytest.approx(1.0)  # one over classes, not samples
    w = per_class[y[idx]]
    flt.train()  # the batch's own pass: the same batch-norm statistics as in the step
    log_prob = flt(x[idx])[1]
    expected = -(w * log_prob).sum() / idx.numel()
    torch.testing.assert_close(loss, 2.0 * expected)
    torch.testing.assert_close(trainer.terms["log_lh"], 2.0 * expected.detach())
    weight_sum = -(w * log_prob).sum() / w.sum()
    torch.testing.assert_close(trainer.terms["mle"] * idx.numel() / w.sum(), weight_sum.detach())


def test_release_log_lh_term_is_about_one_over_the_class_count_of_ours():
    """On class-balanced batches, the release's term is the weight-sum term times
    sum(w) / B, about 1 / C' (C' = classes at the level): 1/100 on the parity set."""
    from dlsa.stage2.filter_training import FilterReport

    counts = torch.round(200 * (5 / 200) ** (torch.arange(100) / 99)).long()
    y = torch.repeat_interleave(torch.arange(100), counts)
    x = torch.randn(len(y), 6, generator=torch.Generator().manual_seed(0)) + y[:, None] * 0.01
    gen = torch.Generator().manual_seed(1)
    cfg = _release_step_config(
        epochs=1, batch_size=1024, mle_normalization="weight-sum", batch_sampler="class-balanced"
    )
    flt = FlowFilter(
        6, 100, dataclasses.replace(cfg, mixture=MixtureConfig(50, 0.05)), generator=gen
    )
    report: FilterReport = flt.fit(x, y, generator=gen)
    ratio = report.terms[0]["log_lh"] / (2.0 * report.losses[0]["mle"])
    assert ratio == pytest.approx(1 / 100, rel=0.1)


def test_batch_anchored_purity_pairs_the_batch_with_other_classes_drawn_uniformly():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    sampler = PurityPairSampler(y)
    anchors = torch.zeros(6000, dtype=torch.long)  # all of class 0
    partners = sampler.partners(anchors, torch.Generator().manual_seed(0))
    assert partners.shape == anchors.shape and bool((y[partners] != 0).all())
    share = torch.bincount(y[partners], minlength=4)[1:] / 6000
    torch.testing.assert_close(share, torch.full((3,), 1 / 3), atol=0.03, rtol=0)
    mixed = torch.arange(100)
    assert bool((y[sampler.partners(mixed, torch.Generator())] != y[mixed]).all())


def test_release_step_uses_the_batch_as_purity_anchors(generator, monkeypatch):
    from dlsa.stage2.filter_training import FilterReport, FilterTrainer
    from dlsa.stage2.losses import purity_loss

    x, y = _three_classes()
    x = x.float()
    cfg = _release_step_config(lambda_pure=1.0, lambda_mle=0.0, epochs=1)
    flt = FlowFilter(4, 3, cfg, generator=generator)
    trainer = FilterTrainer(flt, x, y, torch.Generator().manual_seed(5), FilterReport(600, 3))
    order = trainer.epoch_order()
    idx = order[: cfg.batch_size]
    _, partners = trainer.epoch_pairs[-1]
    assert partners.shape == idx.shape and bool((y[partners] != y[idx]).all())
    loss = trainer.step_loss(idx)
    flt.train()
    expected = purity_loss(flt(x[idx])[2], flt(x[partners])[2])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_separate_flow_passes_differ_from_one_pass_only_through_batch_norm(batch_norm):
    from dlsa.config import FlowConfig
    from dlsa.stage2.filter_training import FilterReport, FilterTrainer

    x, y = _three_classes()
    x = x.float()
    losses = []
    for passes in ("joint", "separate"):
        cfg = _release_step_config(
            flow=FlowConfig(batch_norm=batch_norm), flow_passes=passes, lambda_pure=0.02
        )
        flt = FlowFilter(4, 3, cfg, generator=torch.Generator().manual_seed(0))
        trainer = FilterTrainer(flt, x, y, torch.Generator().manual_seed(5), FilterReport(600, 3))
        losses.append(trainer.step_loss(torch.arange(0, 600, 7)))
    if batch_norm:
        assert not torch.allclose(losses[0], losses[1])
    else:
        torch.testing.assert_close(losses[0], losses[1])


def test_epochs_with_a_cluster_of_max_cluster_size_are_never_selected(generator):
    x, y = _three_classes()
    cfg = small_config(epochs=3, selection_start=0.0, max_cluster_share=1.0)
    free = FlowFilter(4, 3, cfg, generator=torch.Generator().manual_seed(0))
    report = free.fit(x.float(), y, generator=torch.Generator().manual_seed(0))
    largest = max(round(s * 600) for s in report.largest_share)
    bounded = dataclasses.replace(cfg, max_cluster_size=largest)  # the release's "< 5000"
    flt = FlowFilter(4, 3, bounded, generator=torch.Generator().manual_seed(0))
    kept = flt.fit(x.float(), y, generator=torch.Generator().manual_seed(0))
    assert kept.largest_share == report.largest_share
    eligible = [e + 1 for e, s in enumerate(kept.largest_share) if round(s * 600) < largest]
    if eligible:
        assert kept.selected_epoch in eligible
    else:
        assert kept.selected_epoch == 3 and "oversized" in kept.selection


def test_imagenet_lt_preset_logs_the_release_loss_terms_on_the_parity_set():
    """The release's ImgNet_PaCo_R50_bsm.yaml logged per step of epoch 1, on the parity
    set of ../shared/parity (seed 20261202), ``log_lh 1.275, purity -0.127`` (its own run:
    7.65 and -0.76 summed over 6 steps). The preset's epoch-1 terms are within 0.5-2x."""
    from dlsa.config import get_preset

    rng = np.random.default_rng(20261202)
    counts = np.round(200 * (5 / 200) ** (np.arange(100) / 99)).astype(int)
    means = 0.6 * rng.normal(size=(100, 64))
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = np.maximum(means[y] + rng.normal(size=(len(y), 64)), 0).astype(np.float32)
    cfg = dataclasses.replace(get_preset("imagenet-lt").flow_filter, epochs=1)
    gen = torch.Generator().manual_seed(0)
    flt = FlowFilter(64, 100, cfg, generator=gen)
    report = flt.fit(torch.from_numpy(x), torch.from_numpy(y), generator=gen)
    terms = report.terms[0]
    assert set(report.purity_counts[0]) == {">0.9", ">0.7", ">0.5"}
    assert report.purity_counts[0][">0.7"] >= report.good_clusters[0]
    assert 0.5 * 1.275 <= terms["log_lh"] <= 2 * 1.275
    assert 0.5 * 0.127 <= -terms["purity"] <= 2 * 0.127
    assert abs(terms["balance"]) < 1e-3
