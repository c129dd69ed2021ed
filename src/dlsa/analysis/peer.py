"""The scikit-learn peer: what a user would write in ten lines instead of dlsa.

``StandardScaler`` + ``LogisticRegressionCV(Cs=[0.001 ... 1], cv=3,
class_weight="balanced", scoring="balanced_accuracy")``, C chosen on the training data
only. Its test metrics are a row of ``dlsa compare`` and a column of the README's table
and ``benchmarks.protocol.peer_check`` (issue 29: it beat the default by up to 2.6 points
before ``logreg`` and the prior guard). It draws nothing at random (L-BFGS, unshuffled
stratified folds), so one fit serves every seed; like any L-BFGS fit its result depends
on the thread count through BLAS's summation order (fm-digits: 79.0 at one thread, 78.8
at two, the same C).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from dlsa.estimator.inputs import class_indices
from dlsa.metrics.accuracy import classification_report

PEER_CS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
"""The peer's grid of C (``logreg``'s default grid is the same)."""
PEER_NAME = 'scikit-learn peer (LogisticRegressionCV, class_weight="balanced")'
"""How tables name the peer."""


def fit_peer(X: np.ndarray, y: np.ndarray) -> Any:
    """The peer fitted on features X (N, D) and labels y (N,): a scikit-learn pipeline
    (``predict``; the chosen C is ``pipeline[-1].C_``). Convergence warnings of the
    weakest C are silenced (the user's ten lines would print them)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegressionCV(
        Cs=list(PEER_CS), cv=3, class_weight="balanced", scoring="balanced_accuracy",
        max_iter=1000,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_pipeline(StandardScaler(), lr).fit(X, y)


def peer_report(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """The peer's test metrics: ``metrics`` (:func:`dlsa.metrics.classification_report`
    with the training counts of y_train (N,); X_test (M, D), y_test (M,) of the same
    labels), the chosen ``c`` and ``fit_s``.

    Raises:
        DLSAInputError: if a test label was never seen in training.
    """
    classes, y = np.unique(np.asarray(y_train), return_inverse=True)
    target = class_indices(classes, np.asarray(y_test), source="test")
    start = time.perf_counter()
    model = fit_peer(X_train, y)
    seconds = time.perf_counter() - start
    pred = model.predict(X_test)
    counts = np.bincount(y, minlength=len(classes))
    return {
        "metrics": classification_report(pred, target, counts),
        "c": float(np.ravel(model[-1].C_)[0]),
        "fit_s": seconds,
    }
