"""Classifier heads and the stage classifiers of the cascade.

A head maps inputs (N, D_in) to logits (N, C). A :class:`StageClassifier` wraps a head
with fixed input standardisation and, for the Cluster-aided Classifier, a second fully
connected layer on the cluster prior:

``logits = FC[x, z] + FC[P(y | h = k_hat)]`` (paper, Sec. 3.4),

where the caller passes the concatenation ``[x, z]`` as the input and the cluster prior
(N, C) as ``prior``. The Regular Classifier is the same module without the prior branch
(with it, on ``[x, z]`` of the last filter, when it is cluster-aided:
``DLSAConfig.regular_cluster_aided``, in neither the paper nor the original release,
whose regular classifier is FC(x) + FC(x) without the cluster prior, docs/presets.md).
A *residual* stage (:meth:`StageClassifier.make_residual`, not in the paper) also adds the
frozen logits of another stage classifier on ``x`` and starts from zero, so it begins as
that classifier and learns a correction. No losses, samplers or training loops live here.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 3.4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsa.engine.precision import at_least_float32
from dlsa.engine.rows import Rows, column_moments


class ClusterPrior:
    """The cluster prior ``P(y | h = k_hat)`` of N samples, kept as the samples' clusters
    (N,) and the class frequencies of each cluster (K, C).

    It holds N + K*C numbers instead of the N*C of the dense prior (at iNaturalist's
    8,142 classes, a level's dense prior is gigabytes); indexing keeps it compact, and
    only the rows a classifier uses are gathered (:meth:`dense`).

    Example:
        >>> table = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
        >>> prior = ClusterPrior(torch.tensor([1, 0, 1]), table)
        >>> prior[torch.tensor([0, 1])].dense()
        tensor([[0.2500, 0.7500],
                [1.0000, 0.0000]])
    """

    def __init__(self, cluster: Tensor, table: Tensor) -> None:
        self.cluster, self.table = cluster, table

    def __getitem__(self, index: Tensor | slice) -> ClusterPrior:
        """The prior of the rows ``index`` (a (B,) index or boolean mask, or a slice)."""
        return ClusterPrior(self.cluster[index], self.table)

    def __len__(self) -> int:
        return self.cluster.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(N, C), the shape of the dense prior."""
        return (len(self), self.table.shape[1])

    def dense(self) -> Tensor:
        """The prior as a tensor (N, C)."""
        return self.table[self.cluster]


Prior = Tensor | ClusterPrior


def dense_prior(prior: Prior | None) -> Tensor | None:
    """A prior as a tensor (N, C) (None stays None)."""
    return prior.dense() if isinstance(prior, ClusterPrior) else prior


class LinearHead(nn.Linear):
    """Plain linear classifier (N, D) -> (N, C).

    Example:
        >>> LinearHead(4, 3)(torch.randn(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, in_features: int, n_classes: int, *, bias: bool = True) -> None:
        super().__init__(in_features, n_classes, bias=bias)


class CosineHead(nn.Module):
    """Cosine classifier: ``s * cos(x, w_c)`` with a learned or fixed scale s.

    s itself is the parameter, as in Gidaris & Komodakis (their ``scale_cls``). Learning
    ``log s`` instead multiplies the scale's gradient by s: from s = 16 and random class
    vectors, SGD with momentum drove s to ~1e-4 within a few steps and training stalled.

    Args:
        in_features: D.
        n_classes: C.
        scale: initial (or fixed) scale s.
        learn_scale: learn s; otherwise it is a buffer.
        squash: scale the unit input by ``|x| / (1 + |x|)``, as the CosNorm classifier
            of OLTR (Liu et al., CVPR 2019) that the original DLSA release uses.

    References:
        Gidaris & Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting",
        CVPR 2018. https://arxiv.org/abs/1804.09458

    Example:
        >>> head = CosineHead(4, 3, scale=10.0)
        >>> bool(head(torch.randn(5, 4)).abs().max() <= 10.0 + 1e-5)
        True
    """

    scale: Tensor

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        *,
        scale: float = 16.0,
        learn_scale: bool = True,
        squash: bool = False,
    ) -> None:
        super().__init__()
        self.squash = squash
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if learn_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, D) to scaled cosine logits (N, C); with ``squash`` each row is first
        scaled by ``|x| / (1 + |x|)`` (OLTR's CosNorm classifier)."""
        unit = F.normalize(x, dim=-1)
        if self.squash:
            norm = x.norm(dim=-1, keepdim=True)
            unit = unit * norm / (1.0 + norm)
        return self.scale * unit @ F.normalize(self.weight, dim=-1).T

    @torch.no_grad()
    def zero_output_(self) -> None:
        """Make the logits zero: s = 0 when s is learned (the class vectors keep their
        random directions, which a zero vector would not have); a fixed s is kept."""
        if isinstance(self.scale, nn.Parameter):
            self.scale.zero_()


@torch.no_grad()
def zero_output_(head: nn.Module) -> None:
    """Make a head's logits zero for every input, in place: the head's own
    ``zero_output_`` if it has one, else zero weights and biases of its linear layers.

    Example:
        >>> head = LinearHead(4, 3)
        >>> zero_output_(head)
        >>> bool(head(torch.randn(2, 4)).abs().max() == 0)
        True
    """
    own = getattr(head, "zero_output_", None)
    if callable(own):
        own()
        return
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.weight.zero_()
            if module.bias is not None:
                module.bias.zero_()


class StageClassifier(nn.Module):
    """A head with fixed input standardisation and an optional cluster-prior branch.

    Args:
        head: module mapping standardised inputs (N, D_in) to logits (N, C).
        n_inputs: D_in.
        n_classes: C.
        use_prior: add ``FC[prior]`` for a prior (N, C) (the Cluster-aided Classifier).
        twin: a second head whose logits are added, as the original release builds its
            classifiers: on ``[inputs, prior]`` (N, D_in + C) with ``use_prior``, else on
            the inputs (N, D_in); it replaces the ``FC[prior]`` branch.

    Example:
        >>> clf = StageClassifier(LinearHead(6, 3), 6, 3, use_prior=True)
        >>> prior = torch.tensor([[1.0, 0.0, 0.0]]).expand(2, 3)
        >>> clf(torch.randn(2, 6), prior).shape
        torch.Size([2, 3])
    """

    input_mean: Tensor
    input_std: Tensor
    seen: Tensor
    offset_model: StageClassifier | None

    def __init__(
        self,
        head: nn.Module,
        n_inputs: int,
        n_classes: int,
        *,
        use_prior: bool,
        twin: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.head = head
        self.n_inputs = n_inputs
        self.n_classes = n_classes
        self._use_prior = use_prior
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        self.register_buffer("seen", torch.ones(n_classes, dtype=torch.bool))
        self.twin = twin
        use_fc = use_prior and twin is None
        self.prior_fc = nn.Linear(n_classes, n_classes) if use_fc else None
        # A plain attribute, not a submodule: the offset model is saved and trained
        # elsewhere (it is the cascade's base classifier).
        self.__dict__["offset_model"] = None

    @property
    def residual(self) -> bool:
        """Whether the frozen logits of an offset model are added (see
        :meth:`make_residual`)."""
        return self.offset_model is not None

    @torch.no_grad()
    def make_residual(self, offset_model: StageClassifier, *, zero: bool = True) -> None:
        """Add ``offset_model``'s logits on the first ``offset_model.n_inputs`` input
        columns (``x`` of ``[x, z]``) to this classifier's, without gradient; with
        ``zero``, also zero the head and the prior branch so that, before training, this
        classifier predicts exactly what ``offset_model`` predicts (a correction is then
        learned on top of it). Pass ``zero=False`` to re-attach a trained offset model
        after loading.

        Example:
            >>> base = StageClassifier(LinearHead(4, 3), 4, 3, use_prior=False)
            >>> clf = StageClassifier(LinearHead(6, 3), 6, 3, use_prior=True)
            >>> clf.make_residual(base)
            >>> x, prior = torch.randn(2, 6), torch.rand(2, 3)
            >>> torch.equal(clf(x, prior), base(x[:, :4]))
            True
        """
        if offset_model.n_inputs > self.n_inputs or offset_model.n_classes != self.n_classes:
            raise ValueError(
                f"offset model maps {offset_model.n_inputs} inputs to "
                f"{offset_model.n_classes} classes; this classifier has {self.n_inputs} "
                f"inputs and {self.n_classes} classes"
            )
        if zero:
            zero_output_(self.head)
            if self.twin is not None:
                zero_output_(self.twin)
            if self.prior_fc is not None:
                self.prior_fc.weight.zero_()
                self.prior_fc.bias.zero_()
        self.__dict__["offset_model"] = offset_model

    @property
    def use_prior(self) -> bool:
        """Whether the classifier takes the cluster prior (an ``FC[prior]`` branch, or
        the twin head's ``[inputs, prior]``)."""
        return self._use_prior

    @torch.no_grad()
    def fit_standardization(self, inputs: Rows) -> None:
        """Store the mean and std (floored at 1e-6) of training inputs (N, D_in) (a
        tensor or :class:`~dlsa.engine.rows.HostRows`)."""
        mean, std = column_moments(inputs)
        self.input_mean.copy_(mean)
        self.input_std.copy_(std.clamp_min(1e-6))

    @torch.no_grad()
    def set_seen_classes(self, counts: Tensor) -> None:
        """Record which classes (C,) had training samples; :meth:`masked_logits` never
        predicts the others (a stage cannot learn a class it never saw, and Balanced
        Softmax leaves such logits untrained)."""
        self.seen.copy_(counts > 0)

    def masked_logits(self, logits: Tensor) -> Tensor:
        """Logits (N, C) with classes unseen in training set to -inf."""
        return logits.masked_fill(~self.seen, float("-inf"))

    def standardize(self, inputs: Tensor) -> Tensor:
        """(N, D_in) -> (N, D_in) with the stored statistics."""
        return (inputs - self.input_mean) / self.input_std

    def side_logits(self, s: Tensor, prior: Prior | None) -> Tensor | float:
        """What is added to the head's logits of standardised inputs s (N, D_in):
        ``FC[prior]`` (N, C) with the prior branch (``prior`` a tensor or a
        :class:`ClusterPrior`), or the twin head's logits of ``[s, prior]`` (or of s),
        plus the offset model's logits (no gradient) for a residual classifier; 0 when
        there is none of them."""
        out: Tensor | float = 0.0
        dense = dense_prior(prior) if self.use_prior else None
        if self.use_prior and dense is None:
            raise ValueError("this cluster-aided classifier needs the cluster prior (N, C)")
        if self.twin is not None:
            out = self.twin(torch.cat([s, dense], 1) if dense is not None else s)
        elif self.prior_fc is not None:
            out = self.prior_fc(dense)
        offset = self.offset_model
        if offset is not None:
            with torch.no_grad():
                x = s * self.input_std + self.input_mean
                out = out + offset(x[:, : offset.n_inputs])
        return out

    def forward(self, inputs: Tensor, prior: Prior | None = None) -> Tensor:
        """Logits (N, C) of inputs (N, D_in) and, if used, the cluster prior (N, C)
        (a tensor or a :class:`ClusterPrior`)."""
        s = self.standardize(inputs)
        return at_least_float32(self.head(s) + self.side_logits(s, prior))  # dlsa.engine.precision
