"""Checks of the estimator's inputs: training features and labels, the validation set,
and the flow filter's K resolved by the data. Each bad input raises one
:class:`~dlsa.errors.DLSAInputError` naming it."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning

from dlsa.config import FilterConfig, auto_components
from dlsa.errors import DLSAInputError
from dlsa.io.features import check_features


def encode_training(
    X: np.ndarray, y: np.ndarray | None, min_class_samples: int, *, needs_flow: bool, depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked features (N, D) float32, the sorted labels (C,) and class indices (N,).

    Raises:
        DLSAInputError: for a missing y, bad features or labels, fewer than 2 features
            where a flow is fitted (``needs_flow``), fewer than 2 classes, or a class
            with fewer than ``min_class_samples`` samples.
    """
    if y is None:
        raise DLSAInputError("DLSAClassifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it is raveled "
            "to shape (n_samples,)",
            DataConversionWarning,
            stacklevel=4,
        )
    X, y_raw = check_features(X, y, source="X")
    assert y_raw is not None
    if needs_flow and X.shape[1] < 2:
        raise DLSAInputError(
            f"X has {X.shape[1]} feature(s); the flow filters (depth={depth}) need "
            "at least 2 (use depth=0)"
        )
    classes, y_enc = np.unique(y_raw, return_inverse=True)
    counts = np.bincount(y_enc, minlength=len(classes))
    check_class_counts(classes, counts, min_class_samples)
    return X, classes, y_enc


def with_components(flt: FilterConfig, y: np.ndarray) -> FilterConfig:
    """The flow filter config with K resolved for class indices y (N,)
    (``n_components=None``: :func:`dlsa.config.auto_components`)."""
    if flt.mixture.n_components is not None:
        return flt
    k = auto_components(int(y.max()) + 1, len(y))
    return dataclasses.replace(flt, mixture=dataclasses.replace(flt.mixture, n_components=k))


def encoded_validation(
    X_val: np.ndarray | None, y_val: np.ndarray | None, classes: np.ndarray, n_features: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation set as (features (M, D) float32, class indices (M,)), or None.

    Raises:
        DLSAInputError: if only one of the two is given, the width differs from the
            training features, or a label is not a training class.
    """
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise DLSAInputError("X_val and y_val must be given together")
    X_v, y_v = check_features(X_val, np.asarray(y_val), source="X_val")
    assert y_v is not None
    if X_v.shape[1] != n_features:
        raise DLSAInputError(
            f"X_val has {X_v.shape[1]} features, the training features have {n_features}"
        )
    return X_v, class_indices(classes, y_v, source="y_val")


def class_indices(classes: np.ndarray, y: np.ndarray, *, source: str = "y") -> np.ndarray:
    """Indices (N,) int64 of labels ``y`` (N,) in the sorted training ``classes`` (C,).

    Raises:
        DLSAInputError: if the labels are of another kind (text, integer, boolean) than
            the classes, or a label is not a training class (names up to five of them).

    Example:
        >>> class_indices(np.array(["a", "c"]), np.array(["c", "a", "c"])).tolist()
        [1, 0, 1]
    """
    y = np.asarray(y)
    kinds = _label_kind(y), _label_kind(classes)
    if kinds[0] != kinds[1]:
        raise DLSAInputError(
            f"{source}: labels are {kinds[0]} but the model was trained on {kinds[1]} labels"
        )
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[idx] != y
    if unknown.any():
        shown = np.unique(y[unknown])[:5].tolist()
        raise DLSAInputError(
            f"{source}: labels not seen in training: {shown} (a label that is not a "
            "training class cannot be scored)"
        )
    return idx.astype(np.int64)


def _label_kind(labels: np.ndarray) -> str:
    """ "text", "boolean" or "integer": the kinds of label :func:`dlsa.io.features.check_labels`
    returns."""
    kind = labels.dtype.kind
    return "text" if kind in "USO" else "boolean" if kind == "b" else "integer"


def check_class_counts(classes: np.ndarray, counts: np.ndarray, minimum: int = 1) -> None:
    if len(classes) < 2:
        raise DLSAInputError(
            f"y has 1 class ({classes[0].tolist()!r}); a classifier needs at least 2 classes"
        )
    small = np.flatnonzero(counts < minimum)
    if small.size:
        shown = ", ".join(f"{classes[i].tolist()!r} ({counts[i]} sample)" for i in small[:5])
        raise DLSAInputError(
            f"{small.size} class(es) have fewer than {minimum} training samples: {shown}; "
            f"DLSA needs at least {minimum} per class (drop those classes or merge them)"
        )
