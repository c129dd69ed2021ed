"""The deployment prior: class frequencies of the data a model will predict on, applied
post hoc by Bayes' rule.

Every base method of dlsa but plain cross-entropy is trained for a balanced test set:
its logits estimate ``log p(x | y)`` up to a constant, i.e. the posterior under the
uniform prior. For a deployment whose class frequencies are ``pi``, Bayes' rule gives
``p(y | x) ∝ p(x | y) pi(y)``: the logits get ``log pi(y)`` added. Plain cross-entropy
(``ce``) learns the training prior ``pi_train`` into its logits, which is taken out
first (``- log pi_train``). The adjustment changes scores only, never the cascade's
routing.

References:
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (post-hoc
    adjustment to a known prior). https://arxiv.org/abs/2007.07314
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlsa.errors import DLSAInputError

PriorSpec = str | Mapping[Any, float] | np.ndarray | None
"""A deployment prior: "uniform" (or None), "train", a mapping from class label (or its
name as text) to frequency, or an array (C,) in the order of ``classes_``."""


def resolve_test_prior(
    spec: PriorSpec, classes: np.ndarray, class_counts: np.ndarray
) -> np.ndarray | None:
    """The prior (C,) normalised to sum to one, or None for the uniform prior.

    Raises:
        DLSAInputError: for an unknown name, a class the model does not know or one it
            lacks (mappings must name every class), a negative, non-finite or all-zero
            frequency, a share of the total that float32 rounds to 0 (below 1.2e-38),
            or an array of the wrong length.

    Example:
        >>> resolve_test_prior({"b": 3, "a": 1}, np.array(["a", "b"]), np.array([5, 5]))
        array([0.25, 0.75])
    """
    if spec is None or (isinstance(spec, str) and spec == "uniform"):
        return None
    if isinstance(spec, str):
        if spec != "train":
            raise DLSAInputError(
                f"test prior must be 'uniform', 'train' or frequencies, got {spec!r}"
            )
        values = np.asarray(class_counts, dtype=np.float64)
    elif isinstance(spec, Mapping):
        values = _from_mapping(spec, classes)
    else:
        values = np.asarray(spec, dtype=np.float64)
        if values.shape != (len(classes),):
            raise DLSAInputError(
                f"test prior has shape {values.shape}; the model has {len(classes)} classes"
            )
    if not np.all(np.isfinite(values)) or (values < 0).any() or values.sum() <= 0:
        raise DLSAInputError("test prior: frequencies must be finite, >= 0 and not all 0")
    prior = values / values.sum()
    tiny = (prior > 0) & (prior < np.finfo(np.float32).tiny)
    if tiny.any():
        name = classes.tolist()[int(np.argmax(tiny))]
        raise DLSAInputError(
            f"test prior: the frequency of class {name!r} is {prior[tiny][0]:.3g} of the "
            "total, 0 in float32; give 0 or a larger frequency"
        )
    return prior


def _from_mapping(spec: Mapping[Any, float], classes: np.ndarray) -> np.ndarray:
    """Frequencies (C,) of a mapping keyed by the labels or by their text."""
    by_text = {str(c): i for i, c in enumerate(classes.tolist())}
    values = np.full(len(classes), np.nan)
    for key, value in spec.items():
        index = by_text.get(str(key))
        if index is None:
            raise DLSAInputError(f"test prior names a class the model does not know: {key!r}")
        values[index] = float(value)
    missing = [c for c, v in zip(classes.tolist(), values, strict=True) if np.isnan(v)]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise DLSAInputError(f"test prior lacks classes of the model: {shown}")
    return values


def logit_shift(
    prior: np.ndarray | None, class_counts: np.ndarray, balanced: bool
) -> np.ndarray | None:
    """What Bayes' rule adds to the logits (C,) for the deployment ``prior``: ``log pi``,
    minus ``log pi_train`` for a method whose logits carry the training prior (not
    ``balanced``); None when no prior is set (every model then predicts as trained).

    Example:
        >>> logit_shift(np.array([0.5, 0.5]), np.array([3, 1]), balanced=False).round(3)
        array([-0.405,  0.693])
    """
    if prior is None:
        return None
    with np.errstate(divide="ignore"):
        shift = np.log(prior)
        if not balanced:
            train = np.asarray(class_counts, dtype=np.float64)
            shift = shift - np.log(train / train.sum())
    return shift
