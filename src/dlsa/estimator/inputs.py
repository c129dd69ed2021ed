"""Checks of the estimator's inputs: training features and labels, the validation set,
their size against the parameters, and the flow filter's K resolved by the data. Each
bad input raises one :class:`~dlsa.errors.DLSAInputError` naming it; :func:`fit_data`
runs every check :meth:`dlsa.DLSAClassifier.fit` makes before it trains anything."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import DataConversionWarning

from dlsa.cascade import resolve, selection_of
from dlsa.config import FilterConfig, auto_components
from dlsa.errors import DLSAInputError
from dlsa.io.features import check_features, check_labels


@dataclass(frozen=True)
class FitData:
    """The checked inputs of a fit.

    Attributes:
        X: training features (N, D), float32.
        classes: the sorted labels (C,).
        y: class indices (N,) of the training labels.
        val: the validation set as (features (M, D), class indices (M,)), or None.
    """

    X: np.ndarray
    classes: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None

    @property
    def counts(self) -> np.ndarray:
        """Training samples per class (C,)."""
        return np.bincount(self.y, minlength=len(self.classes))


def fit_data(
    params: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray | None,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    min_class_samples: int = 1,
) -> FitData:
    """Every check a fit with the estimator parameters ``params`` makes before training:
    the parameters, the training data (:func:`encode_training`), the validation set
    (:func:`encoded_validation`) and the data's size (:func:`check_data_size`).

    Raises:
        DLSAInputError: naming the first bad parameter or input (``X``, ``y``,
            ``X_val``, ``y_val``).
    """
    spec = resolve(params)
    needs_flow = spec.depth > 0 and selection_of(params) is None
    X, classes, y_enc = encode_training(
        X, y, min_class_samples, needs_flow=needs_flow, depth=spec.depth
    )
    val = encoded_validation(X_val, y_val, classes, X.shape[1])
    data = FitData(X, classes, y_enc, val)
    check_data_size(params, data.counts, X.shape[1], has_val=val is not None)
    return data


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


def check_data_size(
    params: Mapping[str, Any], counts: np.ndarray, n_features: int, *, has_val: bool
) -> None:
    """Refuse, before any fit, training data too small for what the estimator
    parameters ``params`` fit on it: flow filters (``depth >= 1`` on at least 2 features)
    with more clusters K than training samples, or more folds (of the selection, of
    the safeguard's ``validation_folds``, or of the base method's own search, e.g.
    ``logreg``'s ``inner_folds``) than the largest class has samples, so that a fold
    could be empty. ``counts`` (C,) are the training samples per class; with a
    validation set (``has_val``) the selection and the safeguard draw no folds.

    A fold of the selection has fewer samples than all the data, so a K close to N can
    still fail in training (naming the level).

    Raises:
        DLSAInputError: naming the parameter, its value and the data's size.
    """
    spec, sel = resolve(params), selection_of(params)
    n, largest = int(np.sum(counts)), int(np.max(counts))
    k = spec.flow_filter.mixture.n_components
    if spec.depth >= 1 and n_features >= 2 and k is not None and k > n:
        raise DLSAInputError(
            f"{n} training samples but the flow filters have K={k} clusters; use fewer "
            "(flow_filter.mixture.n_components) or depth=0"
        )
    searched = sel is not None and (params.get("base") == "auto" or spec.depth >= 1)
    folds = {
        "selection.folds": sel.folds if searched and sel is not None and not has_val else 0,
        "validation_folds": spec.validation_folds if spec.safeguarded and not has_val else 0,
        "base_params.inner_folds": spec.base.search_folds,
    }
    for name, value in folds.items():
        if value > largest:
            raise DLSAInputError(
                f"{name}={value} but the largest class has {largest} training samples: "
                f"a fold would be empty (use at most {largest})"
            )


def with_components(flt: FilterConfig, y: np.ndarray) -> FilterConfig:
    """The flow filter config with K resolved for class indices y (N,)
    (``n_components=None``: :func:`dlsa.config.auto_components`)."""
    if flt.mixture.n_components is not None:
        return flt
    k = auto_components(int(y.max()) + 1, len(y))
    return dataclasses.replace(flt, mixture=dataclasses.replace(flt.mixture, n_components=k))


def encoded_validation(
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    classes: np.ndarray,
    n_features: int,
    *,
    names: tuple[str, str] = ("X_val", "y_val"),
) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation set as (features (M, D) float32, class indices (M,)), or None.

    Everything is checked before anything is fitted on it: the features' shape, width
    and values, the labels' shape, count, type and membership among the training
    ``classes``. ``names`` are the two arguments as error messages name them.

    Raises:
        DLSAInputError: if only one of the two is given, the features are not a finite
            (M, D) matrix or their width differs from the training features, the labels
            are not M integers, texts or booleans, are of another kind than the training
            labels, or one is not a training class.

    Example:
        >>> encoded_validation([[1.0], [2.0]], ["b", "a"], np.array(["a", "b"]), 1)[1]
        array([1, 0])
    """
    x_name, y_name = names
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise DLSAInputError(f"{x_name} and {y_name} must be given together")
    X_v, _ = check_features(X_val, source=x_name)
    if X_v.shape[1] != n_features:
        raise DLSAInputError(
            f"{x_name} has {X_v.shape[1]} features, the training features have {n_features}"
        )
    y_v = check_labels(np.asarray(y_val), X_v.shape[0], source=y_name)
    return X_v, class_indices(classes, y_v, source=y_name)


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
    kinds = label_kind(y), label_kind(classes)
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


def label_kind(labels: np.ndarray) -> str:
    """ "text", "boolean" or "integer": the kinds of label :func:`dlsa.io.features.check_labels`
    returns (labels of two kinds never match: ``1 != "1"``).

    Example:
        >>> label_kind(np.array(["a"])), label_kind(np.array([True])), label_kind(np.array([3]))
        ('text', 'boolean', 'integer')
    """
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
