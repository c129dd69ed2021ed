"""Saving and loading a fitted :class:`~dlsa.estimator.DLSAClassifier`: tensors in
``model.safetensors``, everything else in ``model.json`` (with the SHA-256 of the tensor
file). Nothing executes code on load.

The parameters written are the estimator's ``get_params()`` as fitted (``fitted_params_``,
after selection), checked on load field by field against :class:`dlsa.config.DLSAConfig`,
so a new parameter cannot be forgotten here. Models saved before a parameter existed load
with the value they were fitted with (:data:`LEGACY_PARAMS`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from dlsa._version import __version__
from dlsa.cascade import Cascade, resolve
from dlsa.cascade.blueprint import Blueprint
from dlsa.cascade.deployment_prior import resolve_test_prior
from dlsa.cascade.temperature import BiasCorrection
from dlsa.config import DLSAConfig, from_dict, to_dict
from dlsa.config.io import MOVED_KEYS
from dlsa.engine.devices import resolve_device
from dlsa.errors import ModelFileError
from dlsa.estimator.fitted import FittedModel
from dlsa.estimator.prior_estimate import confusion_from_json, confusion_to_json
from dlsa.io.integrity import check_float32, checksums, read_tensors, verify_checksums
from dlsa.io.outputs import output_folder

FORMAT = "dlsa-model"
FORMAT_VERSION = 1
TENSOR_FILE = "model.safetensors"
"""The one tensor file of a model folder (its SHA-256 is kept in ``model.json``)."""

Model = TypeVar("Model", bound=FittedModel)


def save_model(clf: FittedModel, path: str | os.PathLike[str]) -> Path:
    """Write the fitted model to the folder ``path``; it is written beside its
    destination and renamed into place, so a failure leaves nothing half-written. An
    existing ``path`` is replaced only if dlsa wrote it (:mod:`dlsa.io.outputs`).

    Raises:
        OutputRefusedError: if ``path`` exists and is not a folder dlsa wrote.
    """
    check_is_fitted(clf, "cascade_")
    dest = Path(path)
    with output_folder(dest, overwrite=True, command="model") as tmp:
        save_file(_state_tensors(clf), str(tmp / TENSOR_FILE))
        meta = _metadata(clf) | {"checksums": checksums(tmp, [TENSOR_FILE])}
        (tmp / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return dest


def load_model(cls: Callable[..., Model], path: str | os.PathLike[str], device: str) -> Model:
    """Read a model written by :func:`save_model` onto ``device``: ``cls`` (the model's
    class) is called with the saved parameters, then given the fitted attributes.

    Raises:
        ModelFileError: if the folder is not a dlsa model, a file is damaged (its
            SHA-256 differs from the one saved; folders saved without checksums skip
            this check), a weight is not finite, a number that predictions use
            (the temperatures, BCTS's biases, the test prior, the base method's
            parameters) is finite but 0 or infinite in float32
            (:func:`dlsa.io.integrity.check_float32`), or the tensors do not match the
            metadata. The message names the file (and the field).
    """
    folder = Path(path)
    target = resolve_device(device)
    meta = _read_metadata(folder)
    verify_checksums(folder, meta.get("checksums"))
    _check_scoring_numbers(meta, folder / "model.json")
    try:
        clf = cls(**(_params_from_json(meta["params"]) | {"device": device}))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{folder / 'model.json'}: invalid model params ({err})") from err
    tensors = read_tensors(folder / TENSOR_FILE)
    try:
        _restore(clf, meta, tensors, target)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).replace("\n", " ").replace("\t", "")
        raise ModelFileError(
            f"{folder}: model.json does not match {TENSOR_FILE} ({reason[:300]})"
        ) from err
    clf.fitted_params_ = clf.get_params()
    clf.selection_ = meta.get("selection")
    return clf


def _check_scoring_numbers(meta: dict[str, Any], meta_path: Path) -> None:
    """Refuse numbers of ``model.json`` that predictions use (temperature, BCTS, test
    prior, ``params.base_params``) and that float32 would turn to 0 or infinity (the
    training-only parameters are left alone: they do not change a prediction)."""
    params = meta.get("params")
    fields = {
        "temperature": meta.get("temperature"),
        "bcts": meta.get("bcts"),
        "test_prior": meta.get("test_prior"),
        "params.base_params": params.get("base_params") if isinstance(params, dict) else None,
    }
    for field, value in fields.items():
        check_float32(value, f"{meta_path}: {field}")
    t = fields["temperature"]
    if t is not None and not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
        raise ModelFileError(f"{meta_path}: temperature must be a finite number > 0, got {t!r}")


def _modules(cascade: Cascade) -> list[tuple[str, nn.Module]]:
    """The fitted modules by prefix; the fallback is listed only if distinct."""
    assert cascade.regular is not None and cascade.fallback is not None
    modules: list[tuple[str, nn.Module]] = [
        ("filters", cascade.filters),
        ("heads", cascade.heads),
        ("regular", cascade.regular),
    ]
    if cascade.fallback is not cascade.regular:
        modules.append(("fallback", cascade.fallback))
    return modules


def _state_tensors(clf: FittedModel) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for prefix, module in _modules(clf.cascade_):
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous()
    return tensors


def _metadata(clf: FittedModel) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dlsa_version": __version__,
        "params": _params_to_json(clf.fitted_params_),
        "classes": clf.classes_.tolist(),
        "class_counts": clf.class_counts_.tolist(),
        "n_features_in": int(clf.n_features_in_),
        "n_levels": len(clf.cascade_.filters),
        "stage_enabled": clf.cascade_.stage_enabled,
        "fallback_is_regular": clf.cascade_.fallback is clf.cascade_.regular,
        "reports": clf.cascade_.reports,
        "validation": clf.cascade_.validation,
        "selection": clf.selection_,
        "test_prior": None if clf.test_prior_ is None else clf.test_prior_.tolist(),
        "temperature": clf.temperature_,
        "bcts": _bcts_to_json(getattr(clf, "bcts_", None)),
        "test_prior_estimate": getattr(clf, "test_prior_estimate_", None),
        "held_out_confusion": confusion_to_json(getattr(clf, "held_out_confusion_", None)),
    }


def _restore(
    clf: FittedModel, meta: dict[str, Any], tensors: dict[str, Tensor], device: torch.device
) -> None:
    """Set the fitted attributes of ``clf`` (built with the saved params) from the saved
    metadata and tensors: the untrained cascade of the saved structure
    (:meth:`~dlsa.cascade.blueprint.Blueprint.build`), then the saved states."""
    spec = resolve(clf.get_params())
    clf.classes_ = np.asarray(meta["classes"])
    clf.class_counts_ = np.asarray(meta["class_counts"], dtype=np.int64)
    clf.n_features_in_ = int(meta["n_features_in"])
    prior = meta.get("test_prior")
    clf.test_prior_ = (
        None
        if prior is None
        else resolve_test_prior(
            np.asarray(prior, dtype=np.float64), clf.classes_, clf.class_counts_
        )
    )
    temperature = meta.get("temperature")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    clf.temperature_ = None if temperature is None else float(temperature)
    estimate = meta.get("test_prior_estimate")
    if estimate is not None and not (isinstance(estimate, dict) and prior is not None):
        raise ValueError("test_prior_estimate must be an object, with a test_prior")
    clf.bcts_ = _bcts_from_json(meta.get("bcts"), len(clf.classes_))
    if estimate is not None and estimate.get("calibration") == "bcts" and clf.bcts_ is None:
        raise ValueError("test_prior_estimate was made with BCTS, but bcts is missing")
    clf.test_prior_estimate_ = estimate
    clf.held_out_confusion_ = confusion_from_json(
        meta.get("held_out_confusion"), len(clf.classes_)
    )
    plan = Blueprint.of(
        spec,
        clf.n_features_in_,
        len(clf.classes_),
        n_levels=int(meta["n_levels"]),
        fallback_is_regular=bool(meta["fallback_is_regular"]),
    )
    cascade = plan.build(clf.class_counts_)
    cascade.reports = meta.get("reports", [])
    cascade.validation = meta.get("validation")
    cascade.stage_enabled = [bool(v) for v in meta["stage_enabled"]]
    for prefix, module in _modules(cascade):
        state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict(state, strict=True)
        module.to(device).eval()
    clf.cascade_ = cascade


def _bcts_to_json(bcts: BiasCorrection | None) -> dict[str, Any] | None:
    if bcts is None:
        return None
    data = {"temperature": bcts.temperature, "bias": bcts.bias.tolist()}
    if bcts.null_weights is not None:
        data["null_weights"] = bcts.null_weights.tolist()
    return data


def _bcts_from_json(data: Any, n_classes: int) -> BiasCorrection | None:
    """:func:`_bcts_to_json`'s object read back; absent (models saved before BCTS, or
    never calibrated): None. ``null_weights`` absent (saved before the no-shift test):
    None, the test's null is then Wilks' chi-square.

    Raises:
        ValueError: not an object of a temperature > 0 and ``n_classes`` finite biases,
            null weights that are not at most ``n_classes - 1`` finite numbers >= 0.
    """
    if data is None:
        return None
    t, bias = (data.get("temperature"), data.get("bias")) if isinstance(data, dict) else (0, 0)
    numbers = isinstance(bias, list) and all(isinstance(v, int | float) for v in bias)
    if not (isinstance(t, int | float) and np.isfinite(t) and t > 0 and numbers):
        raise ValueError("bcts must be {temperature: a number > 0, bias: [numbers]}")
    values = np.asarray(bias, dtype=np.float64)
    if values.shape != (n_classes,) or not np.isfinite(values).all():
        raise ValueError(f"bcts.bias must be {n_classes} finite numbers")
    return BiasCorrection(float(t), values, _null_weights(data.get("null_weights"), n_classes))


def _null_weights(data: Any, n_classes: int) -> np.ndarray | None:
    """``bcts.null_weights`` read back (None if absent)."""
    if data is None:
        return None
    numbers = isinstance(data, list) and all(type(v) in (int, float) for v in data)
    weights = np.asarray(data if numbers else [np.nan], dtype=np.float64)
    if len(weights) > n_classes - 1 or not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError(f"bcts.null_weights must be at most {n_classes - 1} finite numbers >= 0")
    return weights


MACHINE_PARAMS = ("device", "features_on", "n_jobs", "verbose")
"""Estimator parameters that belong to the machine a model runs on, not to the model:
never saved, and set by whoever loads it."""


def _params_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Estimator parameters as JSON-ready data (configs as dicts; :data:`MACHINE_PARAMS`
    are left out)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in MACHINE_PARAMS:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[key] = value
    return out


LEGACY_PARAMS: dict[str, Any] = {
    "residual": False,
    "stage_prior": "routed",
    "validation_folds": 0,
    "selection": None,
}
"""Values of parameters that models saved before the parameter existed were fitted with."""


def _params_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_params_to_json`, checking every field against
    :class:`DLSAConfig` (unknown keys raise). A key that moved (:data:`MOVED_KEYS`:
    ``flow_filter.proportion`` of models saved before ``routed_share``) gives its new
    field."""
    fields = LEGACY_PARAMS | {k: v for k, v in data.items() if k not in MACHINE_PARAMS}
    config = from_dict(DLSAConfig, fields, where="model params")
    moved = {
        new
        for (_, new), (parent, old) in MOVED_KEYS.items()
        if isinstance(fields.get(parent), Mapping) and old in fields[parent]
    }
    return {k: getattr(config, k) for k in [*fields, *sorted(moved - set(fields))]}


def _read_metadata(folder: Path) -> dict[str, Any]:
    meta_path = folder / "model.json"
    if not meta_path.is_file() or not (folder / TENSOR_FILE).is_file():
        raise ModelFileError(
            f"{folder}: not a dlsa model folder (needs model.json and model.safetensors)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ModelFileError(f"{meta_path}: invalid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} file "
            f"(format={meta.get('format')!r}, version={meta.get('format_version')!r})"
        )
    return meta
