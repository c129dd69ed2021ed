"""Typed, frozen configuration of DLSA with the paper's defaults and named presets.

Every field carries a one-line docstring that says where its value comes from: the
paper (main text or supplement), the original release, or "not in the paper" when we
chose it. Variants are made with :func:`dataclasses.replace`; configs are never mutated
and never receive values derived during a run (those are fitted attributes).

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022. https://arxiv.org/abs/2207.02173
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Precision = Literal["fp32", "tf32", "bf16"]
"""Matmul precision of training steps (:func:`dlsa.engine.precision.step_precision`)."""


@dataclass(frozen=True)
class FlowConfig:
    """Masked autoregressive flow (MAF) of a flow filter."""

    n_blocks: int = 2
    """Number of MADE blocks; "2-layered MAF" (paper, Sec. 4.3)."""
    hidden_features: int | None = None
    """Width of each MADE hidden layer; None means the feature dimension D (original
    release)."""
    hidden_layers: int = 1
    """Hidden layers of each MADE (original release: 2, D -> D -> D -> 2D; one layer is
    half the cost at D = 2048 and was enough on our feature sets, not in the paper)."""
    zero_init: bool = True
    """Zero the MADE output layer, so that a new block is the identity and training starts
    from the identity flow (original release: False, PyTorch's default initialisation;
    ours keeps the first epochs stable at large lr, not in the paper)."""
    max_hidden: int | None = None
    """Cap on the hidden width when ``hidden_features`` is None (None: no cap, the paper's
    width D). A compute choice, not an accuracy one: at D = 2048 a width-D MADE costs
    16x a width-512 one (not in the paper)."""
    batch_norm: bool = True
    """RealNVP batch-norm transform after each MADE block (original release)."""
    bn_momentum: float = 0.1
    """Update rate of the batch-norm running statistics (not in the paper)."""
    bn_eps: float = 1e-5
    """Variance floor of the batch-norm transform (not in the paper)."""
    bn_unbiased: bool = False
    """Batch-norm variance with Bessel's correction, in training and in the running
    statistics (original release: True, unbiased; ours is the biased variance of RealNVP
    and of ``torch.nn.BatchNorm1d``'s normalisation; the difference is a factor
    B / (B - 1))."""


@dataclass(frozen=True)
class MixtureConfig:
    """Fixed Gaussian-mixture latent of a flow filter."""

    n_components: int | None = 500
    """Number of clusters K (supplement, Sec. 5: 500 on all three benchmarks); None picks
    ``clip(3 C, 100, 500)``, at most a tenth of the samples (:func:`auto_components`; not
    in the paper)."""
    sigma: float | None = 0.05
    """Std of the entries of the fixed means mu_k ~ N(0, sigma^2 I) (paper, Sec. 4.3);
    None means sqrt(3 / (2 D)) (supplement, Sec. 3)."""


@dataclass(frozen=True)
class FilterConfig:
    """Training and filtering of one Gaussian Mixture Flow Filter."""

    flow: FlowConfig = field(default_factory=FlowConfig)
    """The flow's architecture."""
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    """The latent mixture."""
    q: float = 2.0
    """Exponent of the class weights w(i) ~ n_i^-q of the weighted MLE (paper, Eq. 6)."""
    max_class_share: float | None = 5.0
    """Cap on one class's share of the MLE weight, in multiples of the uniform share 1/C
    (not in the paper; guards against one tiny class taking all the weight); None: no
    cap (original release: none, its cap is commented out)."""
    mle_normalization: Literal["weight-sum", "batch"] = "weight-sum"
    """How the weighted log-likelihood of a batch is averaged: "weight-sum" (divided by
    the batch's total class weight, so the term's scale does not depend on the number
    of classes) or "batch" (divided by the batch size; the class weights sum to one over
    the level's classes, so with class-balanced batches the term is about 1/C' of
    "weight-sum"'s) (original release: "batch")."""
    lambda_mle: float = 1.0
    """Weight of the weighted MLE term (original release: lambda_lh = 2 on ImageNet-LT;
    1 with ``mle_per_dimension``, which already rescales the term)."""
    mle_per_dimension: bool = True
    """Divide the weighted negative log-likelihood by D (original release: False, the
    class-weighted mean log-likelihood itself; ours keeps the term's scale, and so the
    meaning of lambda_bal and lambda_pure, independent of the feature dimension)."""
    lambda_bal: float = 1.0
    """Weight of the balancedness loss (supplement, Sec. 5, ImageNet-LT)."""
    lambda_pure: float = 0.02
    """Weight of the purity loss (supplement, Sec. 5, ImageNet-LT)."""
    eta: float = 0.7
    """Decay of the momentum estimator of the cluster posterior (paper, Sec. 4.3)."""
    purity_pairs: float = 0.25
    """Purity pairs per step, as a fraction of the batch size (original release: 1.0, B
    pairs; ours passes half as many samples through the flow per step, not in the
    paper)."""
    purity_anchors: Literal["drawn", "batch"] = "drawn"
    """First samples of the purity pairs: "drawn" (``purity_pairs`` x B pairs drawn
    apart from the batch, both classes uniform) or "batch" (the batch's own B samples,
    each paired with a sample of another class drawn uniformly; ``purity_pairs`` is
    then unused) (original release: "batch")."""
    flow_passes: Literal["joint", "separate"] = "joint"
    """"joint": the batch and the purity samples go through the flow in one pass (one
    set of batch-norm statistics); "separate": one pass per group, each with its own
    batch-norm statistics and running-statistics update (original release: separate,
    two passes of B rows per step)."""
    detach_purity_target: bool = True
    """Stop the gradient through P(k | x_i) of the purity loss (original release)."""
    lr: float = 0.2
    """SGD learning rate (supplement, Sec. 5, ImageNet-LT)."""
    momentum: float = 0.0
    """SGD momentum (original release: 0)."""
    weight_decay: float = 0.0
    """SGD weight decay (not in the paper)."""
    batch_size: int = 1024
    """Minibatch size (supplement, Sec. 5, ImageNet-LT)."""
    batch_sampler: Literal["shuffle", "class-balanced"] = "shuffle"
    """Order of the likelihood / balancedness batches: "shuffle" (a random permutation
    of the level's samples each epoch) or "class-balanced" (N draws per epoch, each a
    class uniformly among the present ones, then one of its samples, with replacement)
    (original release: class-balanced; ours lets the class weights of Eq. 6 alone
    decide how much the tail counts, not in the paper)."""
    epochs: int = 50
    """Training epochs (supplement, Sec. 5, ImageNet-LT)."""
    grad_clip: float | None = 10.0
    """Max gradient norm, applied after backward (not in the paper; None disables)."""
    standardize: bool = False
    """Standardize the flow's input with the mean and std of the level's training samples
    (an affine map; its log-determinant is added, so ``log p(x)`` stays a density of x).
    Makes the flow's training independent of the feature scale: without it, features of
    a large scale or offset (e.g. x 1000) can make the first epoch diverge (not in the
    paper, whose features were not standardized)."""
    precision: Precision = "fp32"
    """Matmul precision of the flow's training steps: "fp32", "tf32" (CUDA only; no
    effect elsewhere) or "bf16" (autocast; the mixture's distances, log-determinants and
    losses stay float32). Scoring and thresholds are always float32 (not in the paper)."""
    min_purity: float = 0.7
    """Purity a cluster needs to count as good in flow-epoch selection (original release)."""
    min_cluster_size: int = 10
    """Size a cluster needs to count as good in flow-epoch selection (original release)."""
    epoch_ties: Literal["latest", "earliest"] = "latest"
    """Which epoch flow-epoch selection keeps among epochs with equally many good
    clusters (original release: "earliest"; ours prefers the longer-trained flow, not in
    the paper)."""
    selection_start: float = 0.5
    """Flow-epoch selection only considers epochs after this fraction of training, so
    that a barely trained flow is never kept (not in the paper)."""
    max_cluster_share: float = 0.5
    """An epoch whose largest cluster holds more than this share of the level's train
    samples is never selected (not in the paper)."""
    max_cluster_size: int | None = None
    """An epoch whose largest cluster holds this many train samples or more is never
    selected (original release: 5000); None: no absolute bound."""
    eval_batch_size: int = 4096
    """Batch size for scoring (no effect on results)."""


@dataclass(frozen=True)
class HeadConfig:
    """Training of the stage-2 classifiers (cluster-aided and regular)."""

    epochs: int = 30
    """Training epochs (not in the paper; original release: 150)."""
    batch_size: int = 512
    """Minibatch size (decoupled training default, Kang et al. 2020; original release:
    128)."""
    lr: float = 0.1
    """SGD learning rate, annealed as ``schedule`` says (not in the paper; original
    release: 0.01 on CE / CBS features, 1e-4 on PaCo features)."""
    momentum: float = 0.9
    """SGD momentum (decoupled training default; original release: 0)."""
    weight_decay: float = 5e-4
    """SGD weight decay (decoupled training default; original release: 0)."""
    standardize: bool = True
    """Standardise inputs with the training mean and std, kept as buffers (original
    release: False, raw inputs; ours makes one lr fit any feature scale, not in the
    paper)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule: "cosine" (per-step cosine annealing to 0) or "constant"
    (original release: constant; ours converges in fewer epochs, decoupled-training
    practice)."""
    precision: Precision = "fp32"
    """Matmul precision of the classifiers' training steps: "fp32", "tf32" (CUDA only) or
    "bf16" (autocast; logits and losses stay float32). Prediction is always float32 (not
    in the paper)."""
    max_steps: int | None = None
    """Most SGD steps of a training phase: on more samples than ``max_steps x
    batch_size / epochs`` the phase runs fewer epochs, ``ceil(max_steps / steps per
    epoch)``, its schedule annealed over them (a head converges in steps, not passes:
    at ImageNet-LT's 115,846 rows, 10 and 40 epochs of Balanced Softmax are within 0.1
    point, docs/speed.md). None: always ``epochs`` (not in the paper)."""


MethodName = Literal[
    "balsoftmax",
    "balsoftmax-tuned",
    "logreg",
    "logit-adjust",
    "tau-norm",
    "ce",
    "cbs",
    "crt",
    "lws",
    "cosine",
    "m2m",
    "ride",
]
"""A stage-2 base method (a candidate of ``selection.bases``); the one declaration of
the names."""
BASE_NAMES: tuple[str, ...] = get_args(MethodName)
"""The twelve stage-2 base methods, simplest first (the order ties are broken in)."""
SELECTION_BASES: tuple[str, ...] = tuple(
    n for n in BASE_NAMES if n not in ("crt", "balsoftmax-tuned")
)
"""The default's base candidates, the reference (``balsoftmax``) first: every base but
``crt``, which on frozen features is the same training as ``cbs`` (a fresh linear head
on class-balanced draws) and would count one candidate twice, and ``balsoftmax-tuned``,
which out-of-fold evidence from memorised features prefers to DLSA where DLSA is better
on test (docs/decisions.md, "A tuned Balanced Softmax")."""
BaseName = Literal["auto", MethodName]
"""A base method of :data:`BASE_NAMES`, or "auto" (chosen by selection)."""
DropRuleName = Literal["futile", "behind"]
"""How the selection drops candidates between folds (:class:`dlsa.selection.rule.DropRule`)."""


@dataclass(frozen=True)
class SelectionConfig:
    """Model selection on out-of-fold predictions of the training data (not in the
    paper; :mod:`dlsa.selection`).

    Every candidate is scored by its class-balanced accuracy on the pooled out-of-fold
    predictions of ``folds`` stratified folds (the same folds for every candidate). A
    candidate that is more complex than another is only preferred when its paired gain
    over it exceeds ``margin`` standard errors and ``min_gain``; ties go to the simpler
    one."""

    folds: int = 3
    """Stratified folds of the out-of-fold predictions (>= 2)."""
    margin: float = 2.0
    """A departure from a simpler candidate needs a paired gain above this many standard
    errors of that gain."""
    min_gain: float = 0.002
    """... and above this absolute gain in balanced accuracy (0.002 = 0.2 points)."""
    multiplicity: Literal["per-candidate", "max-t"] = "max-t"
    """How the bar for a departure from the reference accounts for the number of
    candidates: "per-candidate" (``margin`` standard errors for each) or "max-t" (at
    least the 95% quantile of the largest of the candidates' standardised gains when
    none is better in truth, from their joint normal distribution: the chance that any
    candidate departs by luck is about 5% however many there are;
    :mod:`dlsa.selection.multiplicity`)."""
    bases: tuple[MethodName, ...] = SELECTION_BASES  # type: ignore[assignment]
    """Candidate base methods of ``base="auto"``, simplest first; the first one is the
    reference that every departure must beat."""
    tau_grid: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    """tau values tried for ``tau-norm`` and ``logit-adjust`` (post-hoc: one training per
    fold serves every tau)."""
    drop_behind: float | None = 2.0
    """After every fold but the last, a candidate that ``drop_rule`` says cannot win on
    the folds so far is dropped: it is not fitted on the remaining folds and is not
    eligible. The max-t bar still counts it. The value is the rule's width in standard
    errors; None fits every candidate on every fold."""
    drop_rule: DropRuleName = "futile"
    """``"futile"``: dropped when even the upper bound (``drop_behind`` standard errors)
    of its predicted final gain, or rarer-half gain, is below the bar it must clear
    (:class:`dlsa.selection.rule.DropRule`). ``"behind"``: dropped when its gain or
    rarer-half gain so far is below ``-drop_behind`` standard errors (the rule before
    "futile"; it drops fewer)."""
    prior_guard: float | None = 2.0
    """On out-of-fold evidence from training features a backbone may have memorised, a
    departure whose predictions flow from the rarer half of the classes to the other
    half, against the reference's, by more than this many binomial standard errors is
    not eligible: such evidence overrates a smaller class-prior correction
    (:mod:`dlsa.selection.shift`). None: no guard."""
    train_features: Literal["unknown", "seen", "unseen"] = "unknown"
    """Whether the backbone trained on the images of the training features: "seen"
    (e.g. features of ``dlsa train``'s own training images), "unseen" (a frozen
    pretrained encoder, or images held out of stage 1) or "unknown". The prior guard
    applies to out-of-fold evidence unless "unseen"; a validation split needs none."""
    proportions: tuple[float, ...] = (0.3, 0.5, 0.99)
    """Routed shares tried for DLSA on top of the chosen base; 0.99 is "no routing" (one
    cluster-aided classifier for almost every sample). Depth-1 candidates share one
    filter per fold."""


@dataclass(frozen=True)
class DLSAConfig:
    """Everything a :class:`dlsa.DLSAClassifier` takes; its fields are the estimator's
    keyword arguments."""

    depth: int = 1
    """Number of flow filters in the cascade (paper, Table 4: 3 is best). With
    ``selection`` it is the deepest cascade tried."""
    base: BaseName = "auto"
    """Stage-2 base method used by every classifier of the cascade (paper, Tables 1-2), a
    name of :data:`BASE_NAMES`, or "auto": chosen by ``selection`` among
    ``selection.bases``."""
    base_params: Mapping[str, Any] = field(default_factory=dict)
    """Hyper-parameters of the base method, by name (each base method documents its
    own)."""
    flow_filter: FilterConfig = field(default_factory=lambda: safe_filter())
    """Configuration shared by every flow filter of the cascade (its training; the share
    it routes is ``routed_share``)."""
    routed_share: float = 0.3
    """Share of each level's training samples that its flow filter routes to the level's
    cluster-aided classifier: the most likely ones, above the likelihood quantile
    ``1 - routed_share`` (paper, Sec. 4.3: the top 30% by likelihood). A property of the
    level, not of the filter's training: filters that differ only in it are the same
    filter (formerly ``flow_filter.proportion``, still read from YAML files and saved
    models)."""
    head: HeadConfig = field(
        default_factory=lambda: HeadConfig(epochs=40, batch_size=256, max_steps=5000)
    )
    """Training of every classifier of the cascade (40 epochs, at most 5,000 steps: the
    limit binds from 32,000 samples on, e.g. 12 epochs at ImageNet-LT's size)."""
    selection: SelectionConfig | None = field(default_factory=SelectionConfig)
    """Out-of-fold model selection of the base method and of DLSA on top of it; None fits
    the configuration as given (the paper presets)."""
    regular_data: Literal["remaining", "all"] = "all"
    """Data of the regular classifier: "remaining" (samples no filter took, as in the
    original release) or "all" (the base method on all training samples)."""
    regular_prior: Literal["reaching", "global"] = "reaching"
    """Class counts that the regular classifier's loss (or post-hoc correction) takes as
    the training prior: "reaching" (the samples that reach it) or "global" (all training
    samples) (original release: global; ours is the prior of the data the classifier is
    trained on, as Balanced Softmax defines it). Only matters with
    ``regular_data="remaining"``."""
    regular_cluster_aided: bool = False
    """With ``regular_data="remaining"`` and depth >= 1, make the regular classifier a
    (never residual) cluster-aided one on ``[x, z]`` and the cluster prior of the last
    filter (not the original release: its regular classifier is FC(x) + FC(x), two maps
    of x without the cluster prior, docs/presets.md; ours by default is the paper's
    regular classifier, a linear map of x alone, Sec. 3.4)."""
    cluster_prior_data: Literal["level", "all"] = "level"
    """Samples whose clusters under a level's filter make its cluster prior P(y | k):
    "level" (the level's own training samples, the paper's definition) or "all" (every
    training sample of the cascade, also those earlier levels took) (original release:
    all, which leaks earlier levels' samples into later levels' priors; kept for the
    ablation)."""
    classifier_layout: Literal["paper", "release"] = "paper"
    """How the cascade's classifiers are built: "paper" (a cluster-aided classifier is
    ``FC[x, z] + FC[P(y | k)]``, Sec. 3.4; the regular one a single map of x) or
    "release" (the original release's two summed maps: ``FC(x) + FC([x, P(y | k)])``
    for a cluster-aided classifier, without the flow's z, and ``FC(x) + FC(x)`` for the
    regular one, so the x-weights start from two summed initialisations and train at
    twice the lr)."""
    mask_unseen: bool = True
    """A stage never predicts a class it had no training sample of (its logit is -inf;
    not in the paper; original release: False, the raw argmax over all classes)."""
    stack_base: bool = False
    """Give each cluster-aided classifier the base method's logits (trained on all data)
    as extra inputs beside ``[x, z]`` (not in the paper)."""
    cover_classes: bool = True
    """Also train each cluster-aided classifier on a few non-routed samples of every class
    of its level (up to n_routed / C per class), so that it can recognise the classes whose
    test samples the filter routes there but whose training samples it did not (not in
    the paper)."""
    residual: bool = True
    """Each cluster-aided classifier adds the base method's logits (trained on all data,
    frozen) to its own and starts from zero, so it begins as the base method and learns a
    correction on the samples its filter routes (not in the paper)."""
    stage_prior: Literal["routed", "global"] = "global"
    """Class counts that each cluster-aided classifier's loss (or post-hoc correction)
    takes as the training prior: "routed" (the samples it is trained on, as in the
    paper) or "global" (all training samples; with Balanced Softmax its logits then
    estimate the balanced-test posterior p(x|y,R) P(R|y) on the region R its filter
    routes, which "routed" misses by log P(R|y)) (not in the paper)."""
    validation_fraction: float = 0.0
    """Share of each class held out to decide, per stage, whether DLSA's classifier beats
    the base method on the samples it handles; 0 disables the safeguard (not in the
    paper)."""
    validation_folds: int = 0
    """If >= 2, the safeguard decides on the out-of-fold predictions of that many
    cascades, each fitted without one stratified fold of the training data, instead of
    one held-out split of ``validation_fraction``: every training sample (also of the
    rarest classes) is used for validation once, at the cost of that many extra fits
    (not in the paper)."""
    random_state: int | None = 0
    """Seed; every stage draws a child seed from it (not in the paper)."""
    device: str = "cpu"
    """Torch device for training and inference: "cpu", "cuda", "cuda:1", ... or "auto"
    (the GPU of this process when CUDA is available, else the CPU)."""
    features_on: Literal["auto", "device", "host"] = "auto"
    """Where training keeps its feature matrices (x, z, ``[x, z]``): "device" (with
    the models), "host" (host memory; every minibatch is copied to the device, for
    features larger than GPU memory) or "auto" (host memory only when the features
    would take more than a quarter of the free GPU memory). It changes where, not what:
    the fitted model is the same."""
    n_jobs: int | None = None
    """Processes for independent fits: the selection's fold fits, the safeguard's
    validation folds, ``dlsa compare``'s seeds (None or 1: this process; -1: every core;
    joblib's convention). It changes how fast, not what is fitted: each fit draws from
    its own seeds (bit-identical at equal torch threads per fit, else up to float
    rounding). With a GPU ``device``, every worker process uses that GPU."""
    verbose: bool = False
    """Show progress bars and per-epoch logs."""

    def estimator_params(self) -> dict[str, Any]:
        """The keyword arguments of :class:`dlsa.DLSAClassifier`, one per field (nested
        configs stay dataclasses; :func:`to_dict` turns everything into plain data).

        Example:
            >>> DLSAConfig(depth=2).estimator_params()["depth"]
            2
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def safe_filter() -> FilterConfig:
    """Flow filter of the default configuration: K from the number of classes, the
    hidden width capped at 512, 30 epochs of batch 256 at lr 0.05, clusters of 5 samples
    count for the epoch rule (settings of the validated ``small`` preset)."""
    return FilterConfig(
        flow=FlowConfig(max_hidden=512),
        mixture=MixtureConfig(n_components=None),
        batch_size=256,
        epochs=30,
        lr=0.05,
        min_cluster_size=5,
    )


def auto_components(n_classes: int, n_samples: int) -> int:
    """K of ``n_components=None``: ``clip(3 C, 100, 500)``, at most ``n_samples // 10``
    (and at least 2).

    Example:
        >>> auto_components(10, 15000), auto_components(200, 9000), auto_components(10, 300)
        (100, 500, 30)
    """
    return max(2, min(500, max(100, 3 * n_classes), n_samples // 10))
