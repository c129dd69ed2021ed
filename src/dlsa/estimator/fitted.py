"""What the estimator's helpers (calibration, persistence, the prior estimate) read and
set on a fitted model: :class:`FittedModel`, a protocol that
:class:`~dlsa.estimator.DLSAClassifier` meets, so that those modules never import the
classifier that calls them."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from torch import Tensor

from dlsa.cascade import Cascade
from dlsa.cascade.temperature import BiasCorrection


class FittedModel(Protocol):
    """A fitted DLSA model as its helpers see it (C classes, D features).

    Attributes:
        classes_: the class labels (C,).
        class_counts_: training samples per class (C,).
        n_features_in_: D.
        cascade_: the fitted cascade.
        fitted_params_: the concrete parameters it was fitted with.
        selection_: the selection's evidence (None without a selection).
        test_prior_: the deployment prior (C,), or None (uniform).
        test_prior_estimate_: how ``test_prior_`` was estimated, or None.
        temperature_: the fitted temperature, or None (1).
        bcts_: bias-corrected temperature scaling, or None.
        held_out_confusion_: BBSE's held-out confusion counts (C, C), or None.
    """

    classes_: np.ndarray
    class_counts_: np.ndarray
    n_features_in_: int
    cascade_: Cascade
    fitted_params_: dict[str, Any]
    selection_: dict[str, Any] | None
    test_prior_: np.ndarray | None
    test_prior_estimate_: dict[str, Any] | None
    temperature_: float | None
    bcts_: BiasCorrection | None
    held_out_confusion_: np.ndarray | None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's ``get_params``)."""
        ...

    def _check_X(self, X: np.ndarray) -> Tensor:
        """Validated features (N, D) as a CPU tensor."""
        ...
