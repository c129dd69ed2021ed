"""``DLSAClassifier``: the DLSA cascade as a scikit-learn estimator, with the default's
model selection beside it.

The estimator holds parameters and one fitted :class:`~dlsa.cascade.Cascade`. Without
``selection`` it fits the configuration as given (:func:`dlsa.cascade.fit_cascade`);
with one (the default) the search of :mod:`dlsa.selection` chooses a configuration from
out-of-fold or validation evidence, and the estimator fits that one, the way
scikit-learn keeps ``LogisticRegressionCV``'s search apart from the model it returns.
Save / load (no pickle): :mod:`dlsa.estimator.persistence`.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022. https://arxiv.org/abs/2207.02173
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from dlsa.cascade import Cascade, resolve, selection_of
from dlsa.cascade.deployment_prior import PriorSpec, resolve_test_prior
from dlsa.cascade.model import finite_scores
from dlsa.cascade.spec import DEFAULT
from dlsa.cascade.temperature import BiasCorrection
from dlsa.config import FilterConfig, HeadConfig, SelectionConfig
from dlsa.errors import DLSAInputError
from dlsa.estimator.calibration import held_out_logits, out_of_fold_logits, set_calibration
from dlsa.estimator.final_fit import fit_chosen
from dlsa.estimator.inputs import fit_data, with_components
from dlsa.estimator.persistence import load_model, save_model
from dlsa.estimator.prior_estimate import held_out_confusion, scoring, set_estimated_prior
from dlsa.io.features import check_features
from dlsa.selection import select


class DLSAClassifier(ClassifierMixin, BaseEstimator):
    """Dynamic Label Space Adjustment on frozen features.

    Args:
        depth: number of flow filters (0: the base method alone).
        base: stage-2 base method, a key of :data:`dlsa.stage2.bases.BASES`.
        base_params: hyper-parameters of the base method.
        flow_filter: configuration of every flow filter (default :class:`FilterConfig`).
        routed_share: share of each level's training samples its filter routes to the
            level's cluster-aided classifier, the most likely ones (paper: 0.3).
        head: training of every classifier (default :class:`HeadConfig`).
        selection: the model selection (:class:`SelectionConfig`; :mod:`dlsa.selection`)
            that chooses the base method and DLSA on top; "default" is the default
            configuration's, None fits the configuration as given.
        regular_data, regular_prior, regular_cluster_aided, cluster_prior_data,
            classifier_layout, mask_unseen, stack_base, cover_classes, residual,
            stage_prior, validation_fraction, validation_folds: see
            :class:`dlsa.config.DLSAConfig`.
        random_state: seed; each stage gets a child seed of it.
        device: torch device.
        verbose: progress bars and per-epoch logs.

    Fitted attributes:
        cascade_: the fitted :class:`~dlsa.cascade.Cascade` (the chosen configuration);
            the attributes below that name its parts read it.
        classes_: (C,) the labels, in the column order of :meth:`predict_proba`.
        n_features_in_: D.
        class_counts_: (C,) training samples per class.
        filters_: the fitted :class:`FlowFilter` of each level.
        heads_: the cluster-aided :class:`StageClassifier` of each level.
        regular_: the regular :class:`StageClassifier` (with ``regular_cluster_aided``, a
            cluster-aided one on ``[x, z]`` and the cluster prior of the last filter).
        base_: the resolved base method.
        reports_: per level, a dict of training diagnostics.
        fitted_params_: the concrete parameters fitted (after selection).
        selection_: the selection's evidence (None without selection).
        validation_: the safeguard's evidence (None without the safeguard).

    Example:
        >>> from dlsa.datasets.synthetic import make_long_tailed_features
        >>> from dlsa.config import FilterConfig, MixtureConfig, HeadConfig
        >>> d = make_long_tailed_features(
        ...     n_classes=6, n_features=4, n_max=100, imbalance=20, seed=0)
        >>> clf = DLSAClassifier(depth=1, head=HeadConfig(epochs=2),
        ...     flow_filter=FilterConfig(mixture=MixtureConfig(8), epochs=2, batch_size=64))
        >>> clf.fit(d.X_train, d.y_train).predict(d.X_test[:3]).shape
        (3,)
    """

    def __init__(
        self,
        *,
        depth: int = DEFAULT.depth,
        base: str = DEFAULT.base,
        base_params: Mapping[str, Any] | None = None,
        flow_filter: FilterConfig | None = None,
        routed_share: float = DEFAULT.routed_share,
        head: HeadConfig | None = None,
        selection: SelectionConfig | str | None = "default",
        regular_data: str = DEFAULT.regular_data,
        regular_prior: str = DEFAULT.regular_prior,
        regular_cluster_aided: bool = DEFAULT.regular_cluster_aided,
        cluster_prior_data: str = DEFAULT.cluster_prior_data,
        classifier_layout: str = DEFAULT.classifier_layout,
        mask_unseen: bool = DEFAULT.mask_unseen,
        stack_base: bool = DEFAULT.stack_base,
        cover_classes: bool = DEFAULT.cover_classes,
        residual: bool = DEFAULT.residual,
        stage_prior: str = DEFAULT.stage_prior,
        validation_fraction: float = DEFAULT.validation_fraction,
        validation_folds: int = DEFAULT.validation_folds,
        random_state: int | None = DEFAULT.random_state,
        device: str = DEFAULT.device,
        features_on: str = DEFAULT.features_on,
        n_jobs: int | None = DEFAULT.n_jobs,
        verbose: bool = DEFAULT.verbose,
    ) -> None:
        self.depth = depth
        self.base = base
        self.base_params = base_params
        self.flow_filter = flow_filter
        self.routed_share = routed_share
        self.head = head
        self.selection = selection
        self.regular_data = regular_data
        self.regular_prior = regular_prior
        self.regular_cluster_aided = regular_cluster_aided
        self.cluster_prior_data = cluster_prior_data
        self.classifier_layout = classifier_layout
        self.mask_unseen = mask_unseen
        self.stack_base = stack_base
        self.cover_classes = cover_classes
        self.residual = residual
        self.stage_prior = stage_prior
        self.validation_fraction = validation_fraction
        self.validation_folds = validation_folds
        self.random_state = random_state
        self.device = device
        self.features_on = features_on
        self.n_jobs = n_jobs
        self.verbose = verbose

    def check_params(self) -> None:
        """Check every parameter without data (what :meth:`fit` checks first).

        Raises:
            DLSAInputError: naming the first invalid parameter and its value.
        """
        resolve(self.get_params())

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        reuse_filters: DLSAClassifier | None = None,
        min_class_samples: int = 1,
    ) -> DLSAClassifier:
        """Fit on features X (N, D) and labels y (N,).

        With ``validation_fraction > 0`` or ``validation_folds >= 2`` (and ``depth >
        0``) the safeguard first decides, on held-out training samples, which stages to
        keep: a stage whose classifier is less accurate (class-balanced) on the samples
        it handles than the base method trained on the same data falls back to the base
        method (:mod:`dlsa.cascade.safeguard`). With a selection config, the
        configuration is first chosen by :func:`dlsa.selection.select`.

        With a validation set (``X_val``, ``y_val``: features of images the backbone
        did not train on, labels among y's) the selection and the safeguard decide on
        it instead of on held-out training samples: each candidate is fitted once on all
        of X and scored on the validation set. The model itself is fitted on X only.

        Args:
            X: features (N, D).
            y: labels (N,).
            X_val: optional validation features (M, D).
            y_val: optional validation labels (M,), each one of y's classes.
            reuse_filters: a model fitted on the same X, y with the same ``flow_filter``
                config and ``random_state``, whose flow filters are reused instead of
                trained again (the paper trains the filters once and shares them across
                base methods); at another ``routed_share`` its first filter is rerouted
                and the later ones trained. Not used for the validation run of the
                safeguard.
            min_class_samples: fewest training samples a class may have (default 1).

        Raises:
            ValueError: on invalid features/labels (those of X, y, X_val and y_val all
                checked before any training), a class with too few samples, more clusters
                or folds than the data has samples, a level with fewer samples than
                clusters, or a bad hyper-parameter (mostly :class:`dlsa.errors.DLSAInputError`).
            FloatingPointError: if a filter or classifier diverges in training (lower
                its learning rate, or scale features of huge magnitude).
        """
        spec = resolve(self.get_params())
        data = fit_data(self.get_params(), X, y, X_val, y_val, min_class_samples)
        X, y_enc, val = data.X, data.y, data.val
        self.classes_, self.class_counts_ = data.classes, data.counts
        self.n_features_in_ = X.shape[1]
        params = self.get_params() | {"flow_filter": with_components(spec.flow_filter, y_enc)}
        params["head"] = spec.head
        if X.shape[1] < 2:  # a flow needs 2 features: the selection only picks the base
            params["depth"] = 0
        self.test_prior_: np.ndarray | None = None  # uniform until set_test_prior
        self.temperature_: float | None = None  # 1 until calibrate
        self.bcts_: BiasCorrection | None = None  # EM's bias-corrected calibration
        self.test_prior_estimate_: dict[str, Any] | None = None  # how an estimate was made
        self.held_out_confusion_: np.ndarray | None = None  # (C, C) counts for BBSE
        self.selection_: dict[str, Any] | None = None
        sel, fitted = selection_of(params), None
        if sel is not None:
            params, self.selection_, fitted = select(
                params | {"selection": sel, "verbose": False},
                X, y_enc, len(self.classes_), val,
            )  # fmt: skip
            params["verbose"] = self.verbose
        # on a validation split the chosen candidate was fitted on exactly these data
        donor = fitted if fitted is not None or reuse_filters is None else _donor(reuse_filters)
        self.cascade_, self.fitted_params_ = fit_chosen(
            params, X, y_enc, len(self.classes_), val, donor, self.selection_
        )
        return self

    # -- the fitted cascade's parts -----------------------------------------------------

    def _cascade(self) -> Cascade:
        try:
            return self.__dict__["cascade_"]
        except KeyError:
            raise AttributeError("this DLSAClassifier is not fitted yet") from None

    filters_ = property(lambda self: self._cascade().filters, doc="Flow filter per level.")
    heads_ = property(lambda self: self._cascade().heads, doc="Cluster-aided classifiers.")
    regular_ = property(lambda self: self._cascade().regular, doc="The regular classifier.")
    fallback_ = property(lambda self: self._cascade().fallback, doc="The base on all data.")
    reports_ = property(lambda self: self._cascade().reports, doc="Per-level diagnostics.")
    base_ = property(lambda self: self._cascade().base, doc="The resolved base method.")
    validation_ = property(lambda self: self._cascade().validation, doc="Safeguard evidence.")

    @property
    def stage_enabled_(self) -> list[bool]:
        """Per stage (levels, then regular), whether it is used."""
        return self._cascade().stage_enabled

    @stage_enabled_.setter
    def stage_enabled_(self, value: list[bool]) -> None:
        self._cascade().stage_enabled = list(value)

    # -- inference ----------------------------------------------------------------------

    def _check_X(self, X: np.ndarray) -> Tensor:
        """Validated features (N, D) as a CPU tensor."""
        check_is_fitted(self, "cascade_")
        X, _ = check_features(X, source="X")
        if X.shape[1] != self.n_features_in_:
            raise DLSAInputError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return torch.from_numpy(X)

    def _scored(self, X: np.ndarray) -> tuple[Tensor, Tensor]:
        """Logits (N, C) (adjusted to the deployment prior, if set) and stages (N,) of X
        (N, D), on the CPU, scored in chunks of rows."""
        parts = [(logits.cpu(), stage.cpu()) for logits, stage in self._chunks(X)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _chunks(self, X: np.ndarray) -> Iterator[tuple[Tensor, Tensor]]:
        """Logits (B, C) and stages (B,) on the device for consecutive chunks of rows of
        X (N, D), adjusted to the deployment prior when one is set; a row whose
        probabilities would be NaN raises :class:`DLSAInputError`."""
        x = self._check_X(X)
        shift, temperature = scoring(self)
        offset = None if shift is None else torch.from_numpy(shift).to(self.cascade_.device)
        return finite_scores(self.cascade_.chunks(x, offset, temperature))

    def set_test_prior(self, prior: PriorSpec, X: np.ndarray | None = None) -> DLSAClassifier:
        """Set the class frequencies of the data this model will predict on: "uniform"
        (or None; the default), "train" (the training frequencies), a mapping from class
        label to frequency, an array (C,) in the order of ``classes_``, or "estimate"
        (EM) / "estimate-bbse" (BBSE; needs :meth:`fit_held_out_confusion` or a
        calibration) from the unlabelled features X (N, D) to be predicted
        (:mod:`dlsa.cascade.prior_estimate`; what was done in ``test_prior_estimate_``;
        EM's estimate only if its no-shift test finds a shift, else the prior predictions
        use without one: :mod:`dlsa.cascade.shift_detection`).
        Scores are then adjusted by Bayes' rule (:mod:`dlsa.cascade.deployment_prior`);
        routing is unchanged. Saved with the model. Returns self.

        Raises:
            DLSAInputError: see :func:`dlsa.cascade.deployment_prior.resolve_test_prior` and
                :func:`dlsa.estimator.prior_estimate.estimate_test_prior`; "estimate"
                without X.
        """
        check_is_fitted(self, "cascade_")
        if isinstance(prior, str) and prior.startswith("estimate"):
            if X is None:
                raise DLSAInputError(f"test prior {prior!r} needs the features X to predict")
            set_estimated_prior(self, [X], prior)
            return self
        self.test_prior_ = resolve_test_prior(prior, self.classes_, self.class_counts_)
        self.test_prior_estimate_ = None
        return self

    def fit_held_out_confusion(
        self, X: np.ndarray, y: np.ndarray, *, out_of_fold: bool = False, folds: int = 3
    ) -> DLSAClassifier:
        """The held-out confusion matrix (C, C) "estimate-bbse" needs, on labelled
        features X (M, D), y (M,) the model did not train on, or (``out_of_fold``) on its
        training data (``folds`` more fits). :meth:`calibrate` sets it too. Returns self."""
        check_is_fitted(self, "cascade_")
        if out_of_fold:
            held = out_of_fold_logits(self, X, y, folds)
        else:
            held = held_out_logits(self, X, y)
        self.held_out_confusion_ = held_out_confusion(*held, self)
        return self

    def calibrate(self, X: np.ndarray, y: np.ndarray) -> DLSAClassifier:
        """Fit the temperature (:mod:`dlsa.cascade.temperature`) on labelled features
        X (M, D), y (M,) of images the model did not train on (a validation set; never
        the test set). Probabilities become ``softmax(logits / T)`` (before the
        deployment prior); predicted classes do not change. Also fitted: BCTS (``bcts_``:
        a temperature and biases (C,), for EM's "estimate" only; see
        :mod:`dlsa.estimator.prior_estimate`) and BBSE's held-out confusion matrix.
        Saved with the model. Returns self."""
        check_is_fitted(self, "cascade_")
        set_calibration(self, *held_out_logits(self, X, y))
        return self

    def calibrate_out_of_fold(
        self, X: np.ndarray, y: np.ndarray, *, folds: int = 3
    ) -> DLSAClassifier:
        """:meth:`calibrate` on the training data X (N, D), y (N,) the model was fitted
        on: on the held-out logits of ``folds`` cascades of the fitted configuration,
        each fitted without one stratified fold (``folds`` more fits). Returns self."""
        check_is_fitted(self, "cascade_")
        set_calibration(self, *out_of_fold_logits(self, X, y, folds))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits (N, C) of the stage that handles each sample; with two classes, as
        scikit-learn's classifiers do, the score (N,) of ``classes_[1]``: its logit minus
        that of ``classes_[0]``."""
        logits = self._scored(X)[0]
        if logits.shape[1] == 2:
            return (logits[:, 1] - logits[:, 0]).numpy()
        return logits.numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes_``."""
        return torch.softmax(self._scored(X)[0], dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (N,), values from ``classes_`` (memory: one chunk's logits,
        not N x C)."""
        return self.predict_and_route(X)[0]

    def route(self, X: np.ndarray) -> np.ndarray:
        """Stage of each sample (N,): ``l`` (0-based) for the cluster-aided classifier of
        level ``l``, ``len(filters_)`` for the regular classifier."""
        return self.predict_and_route(X)[1]

    def predict_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` (N,) and :meth:`route` (N,) in one pass of the cascade, which
        keeps only each row's best class (memory: one chunk's logits, not N x C)."""
        parts = [(logits.argmax(dim=1).cpu(), stage.cpu()) for logits, stage in self._chunks(X)]
        best = torch.cat([p[0] for p in parts]).numpy()
        return self.classes_[best], torch.cat([p[1] for p in parts]).numpy()

    def predict_proba_and_route(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_proba` (N, C) and :meth:`route` (N,) in one pass of the cascade."""
        logits, stage = self._scored(X)
        return torch.softmax(logits, dim=1).numpy(), stage.numpy()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to the folder ``path``: tensors in
        ``model.safetensors``, everything else in ``model.json`` (with the SHA-256 of
        the tensor file, checked by :meth:`load`). The folder is written beside its
        destination and renamed into place, so a failure leaves nothing half-written; it
        replaces only a folder dlsa wrote (else ``dlsa.io.outputs.OutputRefusedError``)."""
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> DLSAClassifier:
        """Read a model written by :meth:`save`. No code is executed: tensors come from
        safetensors and the rest from JSON. The model's parameters are the concrete ones
        it was fitted with (after selection); the selection evidence is in
        ``selection_``.

        Raises:
            ModelFileError: if the folder is not a dlsa model, a file is damaged, a
                weight is not finite, or the tensors do not match the metadata
                (:func:`dlsa.estimator.persistence.load_model`).
        """
        return load_model(cls, path, device)


def _donor(model: DLSAClassifier) -> Cascade:
    """The cascade of a fitted model whose filters another fit reuses."""
    check_is_fitted(model, "cascade_")
    return model.cascade_
