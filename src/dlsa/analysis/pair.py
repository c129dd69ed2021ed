"""The reference base method alone and the configured model, fitted on the same features
and seed, then evaluated once on the same test set: what ``dlsa fit`` and ``dlsa demo``
report, so that what the configuration bought over the reference stays visible. Both
take the one path :func:`fit_and_evaluate_pair`: fit, calibrate, save, evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlsa.analysis.evaluation import compare_on_stages, encode_labels, evaluate
from dlsa.config import DLSAConfig
from dlsa.engine.progress import Phase
from dlsa.estimator import DLSAClassifier
from dlsa.selection import describe, reference_params

logger = logging.getLogger(__name__)

NAMES = ("base", "dlsa")
"""Keys of the two models: the reference base method alone, the configured model."""

Step = Literal["fit", "calibrate", "evaluate"]
"""The steps of :func:`fit_and_evaluate_pair` that a caller may wrap."""


def fit_pair(
    config: DLSAConfig,
    X: np.ndarray,
    y: np.ndarray,
    *,
    reference: str | None = None,
    timings: dict[str, float] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, DLSAClassifier]:
    """Fit the reference (``reference``, else the config's base or Balanced Softmax, with
    depth 0) and the configured model on features X (N, D) and labels y (N,); record
    seconds of each fit in ``timings`` as ``fit_base`` / ``fit_dlsa``. ``val`` =
    (X_val (M, D), y_val (M,)) is what the configured model's selection and safeguard
    decide on (:meth:`DLSAClassifier.fit`)."""
    runs = [("base", reference_params(config, reference)), ("dlsa", config.estimator_params())]
    models: dict[str, DLSAClassifier] = {}
    for name, params in runs:
        start = time.perf_counter()
        logger.info("fitting %s (%s, depth %d)", name, params["base"], params["depth"])
        fit_val = {} if val is None or name == "base" else {"X_val": val[0], "y_val": val[1]}
        # the configured model's final fit takes the reference as its base when it is
        # the same model (same seed, method and head): not trained twice, same numbers
        donor = {"reuse_filters": models["base"]} if name == "dlsa" else {}
        phase = Phase(f"stage 2: {_label(name, params)}", counter="")
        phase.note(f"fitting on {len(y)} samples")
        models[name] = DLSAClassifier(**params).fit(X, y, **fit_val, **donor)
        selection = models[name].selection_
        phase.end("fitted" + (f", chosen: {selection['chosen']}" if selection else ""))
        if timings is not None:
            timings[f"fit_{name}"] = time.perf_counter() - start
    return models


def _label(name: str, params: dict[str, Any]) -> str:
    """How the progress lines call the reference and the configured model."""
    if name == "base":
        return f"reference {describe(params)}"
    return "configured model" + (" (selection)" if params["base"] == "auto" else "")


def calibrate_pair(
    models: dict[str, DLSAClassifier],
    train: Any,
    val: Any = None,
    timings: dict[str, float] | None = None,
) -> None:
    """Temperature-scale both models: on the validation features ``val`` (``.X``,
    ``.y``) when given, else out of fold on the training features ``train`` (3 more fits
    of each model's configuration); seconds in ``timings["calibrate"]``."""
    start = time.perf_counter()
    for model in models.values():
        if val is not None:
            model.calibrate(val.X, val.y)
        else:
            model.calibrate_out_of_fold(train.X, train.y)
    if timings is not None:
        timings["calibrate"] = time.perf_counter() - start


def evaluate_pair(
    models: dict[str, DLSAClassifier], X: np.ndarray, y: np.ndarray, *, source: str = "y"
) -> dict[str, Any]:
    """Evaluate both models once on test features X (M, D), labels y (M,).

    Returns:
        ``evals`` (per model, :func:`dlsa.analysis.evaluation.evaluate`'s result),
        ``stage_comparison`` (the configured model against the reference on the samples
        of each stage), ``reference`` and ``chosen`` (names of the two models).
    """
    target = encode_labels(models["dlsa"], y, source=source)
    evals = {name: evaluate(m, X, y) for name, m in models.items()}
    return {
        "evals": evals,
        "stage_comparison": compare_on_stages(evals["dlsa"], evals["base"], target),
        "reference": models["base"].fitted_params_["base"],
        "chosen": describe(models["dlsa"].fitted_params_),
    }


def _no_wrap(step: Step) -> AbstractContextManager[None]:
    """Run a step of :func:`fit_and_evaluate_pair` as it is."""
    return nullcontext()


def fit_and_evaluate_pair(
    config: DLSAConfig,
    train: Any,
    test: Any,
    folder: Path,
    *,
    reference: str | None = None,
    val: Any = None,
    calibrate: bool = False,
    timings: dict[str, float] | None = None,
    before_save: Callable[[dict[str, DLSAClassifier]], None] | None = None,
    around: Callable[[Step], AbstractContextManager[None]] = _no_wrap,
    source: str = "y",
) -> tuple[dict[str, DLSAClassifier], dict[str, Any]]:
    """The path of ``dlsa fit`` and ``dlsa demo``: :func:`fit_pair` on the training
    features, :func:`calibrate_pair` when ``calibrate``, ``before_save`` (e.g. a test
    prior), both models saved under ``folder`` (``model/``, ``base_model/``), then
    :func:`evaluate_pair` once on the test features.

    Args:
        config: the configured model's config; the reference is :func:`fit_pair`'s.
        train: training features (``.X`` (N, D), ``.y`` (N,)).
        test: test features (``.X`` (M, D), ``.y`` (M,)).
        folder: where the two models are saved.
        reference: the reference base method (:func:`fit_pair`).
        val: validation features (``.X`` (V, D), ``.y`` (V,)) or None: what the
            configured model's selection and safeguard decide on, and what the
            temperature is fitted on (else out of fold on ``train``).
        calibrate: temperature-scale both models (:func:`calibrate_pair`).
        timings: seconds of the fits (``fit_base``, ``fit_dlsa``) and of ``calibrate``.
        before_save: called with both fitted (and calibrated) models before they are saved.
        around: a context manager for each step ("fit", "calibrate", "evaluate"), e.g.
            one that turns an error into a command's message or times the step.
        source: how the test labels are named in an error (:func:`evaluate_pair`).

    Returns:
        The two models (:data:`NAMES`) and :func:`evaluate_pair`'s result.
    """
    with around("fit"):
        models = fit_pair(
            config, train.X, train.y, reference=reference, timings=timings,
            val=None if val is None else (val.X, val.y),
        )  # fmt: skip
    if calibrate:
        with around("calibrate"):
            calibrate_pair(models, train, val, timings)
    if before_save is not None:
        before_save(models)
    models["dlsa"].save(folder / "model")
    models["base"].save(folder / "base_model")
    with around("evaluate"):
        pair = evaluate_pair(models, test.X, test.y, source=source)
    return models, pair
