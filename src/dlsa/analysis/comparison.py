"""Compare base methods with and without DLSA, over several seeds (the paper's Table 1).

For every seed, the flow filters are trained once, with the first base method, and
shared by the DLSA models of all the other base methods (``reuse_filters``), as in the
paper (Sec. 4.4: "all the classifier methods use a same trained Flow Filter model").
Each base method is also fitted alone (``depth=0``). Every model is evaluated once on
the test set; nothing is selected on it.

References:
    Xu et al., "Constructing Balance from Imbalance for Long-tailed Image Recognition",
    ECCV 2022, Sec. 4.4 and Table 1.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dlsa.analysis.evaluation import evaluate
from dlsa.analysis.peer import PEER_NAME, peer_report
from dlsa.analysis.report import COLUMNS, markdown_table
from dlsa.config import DLSAConfig, to_dict
from dlsa.engine.parallel import run_jobs, worker_count
from dlsa.engine.progress import Phase
from dlsa.estimator import DLSAClassifier
from dlsa.stage2.bases import BASES

logger = logging.getLogger(__name__)

VARIANTS = ("base", "dlsa")
"""The two models of each (seed, base method): alone and inside DLSA."""


def _check_arguments(
    bases: Sequence[str], config: DLSAConfig, seeds: Sequence[int]
) -> tuple[list[str], list[int]]:
    if not isinstance(config, DLSAConfig):
        raise ValueError(f"config must be a DLSAConfig, got {type(config).__name__}")
    if config.depth < 1:
        raise ValueError(f"config.depth must be >= 1 to compare with DLSA, got {config.depth}")
    names = list(bases)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"bases must be a non-empty list without repeats, got {names}")
    unknown = [b for b in names if b not in BASES]
    if unknown:
        raise ValueError(f"unknown base method(s) {unknown}; choose from {sorted(BASES)}")
    seed_list = list(seeds)
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {seed_list}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seed_list):
        raise ValueError(f"seeds must be ints, got {seed_list}")
    return names, seed_list


def _params_of(
    base: str, config: DLSAConfig, base_params: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Hyper-parameters of ``base``: ``base_params[base]``, else ``config.base_params``
    when ``base`` is ``config.base``, else the method's defaults."""
    if base_params is not None and base in base_params:
        return dict(base_params[base])
    return dict(config.base_params) if base == config.base else {}


def dlsa_params(
    base: str, config: DLSAConfig, base_params: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The estimator parameters of ``base`` with DLSA in :func:`compare_bases` (its
    ``random_state`` is replaced by each seed; the base alone has ``depth=0``)."""
    params = {"base": base, "base_params": _params_of(base, config, base_params)}
    return config.estimator_params() | params


def _metrics(report: Mapping[str, Any]) -> dict[str, float | None]:
    return {k: None if report[k] is None else float(report[k]) for k in COLUMNS}


def compare_bases(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    bases: Sequence[str],
    config: DLSAConfig,
    seeds: Sequence[int],
    progress: bool = False,
    base_params: Mapping[str, Mapping[str, Any]] | None = None,
    peer: bool = True,
) -> dict[str, Any]:
    """Fit every base method alone and with DLSA for every seed, and the scikit-learn
    peer once; evaluate each model once.

    Args:
        X_train: (N, D) training features.
        y_train: (N,) training labels.
        X_test: (M, D) test features, used only for the single evaluation of each model.
        y_test: (M,) test labels.
        bases: base-method names (keys of :data:`dlsa.stage2.bases.BASES`); the first one is
            fitted with the flow filters that the others reuse.
        config: everything else (``depth >= 1``, filter and head configs, many/few
            thresholds are the defaults of :func:`dlsa.analysis.evaluation.evaluate`);
            ``config.base`` and ``config.random_state`` are replaced per run.
        seeds: random states; one cascade per seed (with ``config.n_jobs``, the seeds
            run in that many worker processes; the results do not change).
        progress: show a progress bar over (seed, base method) when stderr is a terminal,
            and log a progress line as seeds finish (:mod:`dlsa.engine.progress`).
        base_params: hyper-parameters per base name; a base without an entry uses
            ``config.base_params`` if it is ``config.base``, else its defaults.
        peer: also fit the scikit-learn peer (:mod:`dlsa.analysis.peer`; it does not
            depend on the seed).

    Returns:
        A JSON-ready dict: ``bases``, ``seeds``, ``config``, ``base_params`` (per base),
        ``runs`` (per seed and base: the metrics of ``base`` and ``dlsa``, fit times),
        ``summary`` (per base: ``base``, ``dlsa`` and ``gain``, each metric as
        ``{"mean", "std"}``; std is the sample std over seeds, None for one seed; a
        metric absent for the data, e.g. an empty shot group, is None),
        ``filter_fits`` (how many DLSA models trained their own filters: one per seed)
        and, with ``peer``, ``peer`` (its ``metrics``, chosen ``c`` and ``fit_s``).

    Raises:
        ValueError: for an unknown base, repeated bases or seeds, or ``config.depth < 1``.
    """
    names, seed_list = _check_arguments(bases, config, seeds)
    params = {name: _params_of(name, config, base_params) for name in names}
    fields = config.estimator_params()
    bar = tqdm(
        total=len(seed_list) * len(names), desc="compare", disable=None if progress else True
    )
    data = (X_train, y_train, X_test, y_test)
    if worker_count(config.n_jobs) > 1:  # one job per seed; the fits inside stay serial
        jobs = [(seed, names, params, fields | {"n_jobs": None}, data, None) for seed in seed_list]
    else:
        jobs = [(seed, names, params, fields, data, bar) for seed in seed_list]
    phase = Phase("compare", len(seed_list), "{done}/{total} seeds")
    done = (lambda _: phase.advance()) if progress else None
    per_seed = run_jobs(_seed_runs, jobs, config.n_jobs, done)
    bar.close()
    if progress:
        phase.end()
    runs = [run for seed_runs, _ in per_seed for run in seed_runs]
    filter_fits = sum(fits for _, fits in per_seed)
    extra = {"peer": _peer(X_train, y_train, X_test, y_test)} if peer else {}
    return extra | {
        "bases": names,
        "seeds": seed_list,
        "config": to_dict(config),
        "base_params": params,
        "runs": runs,
        "summary": {
            name: _summarise([r for r in runs if r["base_method"] == name]) for name in names
        },
        "filter_fits": filter_fits,
    }


def _seed_runs(
    seed: int,
    names: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    fields: dict[str, Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    bar: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The runs of one seed (every base alone and with DLSA, the first base's filters
    reused by the others) and how many DLSA models trained their own filters."""
    X_train, y_train, X_test, y_test = data
    donor: DLSAClassifier | None = None
    runs, filter_fits = [], 0
    for name in names:
        if bar is not None:
            bar.set_postfix(seed=seed, base=name)
        run: dict[str, Any] = {"seed": seed, "base_method": name, "fit_s": {}}
        for variant in VARIANTS:
            depth = 0 if variant == "base" else fields["depth"]
            kwargs = fields | {"depth": depth, "base": name, "random_state": seed}
            clf = DLSAClassifier(**kwargs | {"base_params": params[name]})
            start = time.perf_counter()
            reuse = donor if variant == "dlsa" else None
            clf.fit(X_train, y_train, reuse_filters=reuse)
            run["fit_s"][variant] = time.perf_counter() - start
            if variant == "dlsa" and donor is None:
                donor, filter_fits = clf, filter_fits + 1
            run[variant] = _metrics(evaluate(clf, X_test, y_test)["metrics"])
        logger.info("seed %d, %s: %s", seed, name, run["dlsa"])
        runs.append(run)
        if bar is not None:
            bar.update()
    return runs, filter_fits


def _peer(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
) -> dict[str, Any]:
    """The peer's record: metrics of :data:`COLUMNS`, ``c`` and ``fit_s``."""
    report = peer_report(X_train, y_train, X_test, y_test)
    report["metrics"] = _metrics(report["metrics"])
    logger.info("peer (C %g): %s", report["c"], report["metrics"])
    return report


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    if any(v is None for v in values):
        return {"mean": None, "std": None}
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return {"mean": float(arr.mean()), "std": std}


def _summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    out: dict[str, dict[str, dict[str, float | None]]] = {v: {} for v in (*VARIANTS, "gain")}
    for col in COLUMNS:
        for variant in VARIANTS:
            out[variant][col] = _mean_std([r[variant][col] for r in runs])
        gains = [
            None
            if r["dlsa"][col] is None or r["base"][col] is None
            else r["dlsa"][col] - r["base"][col]
            for r in runs
        ]
        out["gain"][col] = _mean_std(gains)
    return out


def format_mean_std(stat: Mapping[str, float | None], digits: int = 1) -> str:
    """``mean ± std`` of [0, 1] values in percent; ``-`` when absent.

    Example:
        >>> format_mean_std({"mean": 0.5123, "std": 0.0042})
        '51.2 ± 0.4'
        >>> format_mean_std({"mean": 0.5, "std": None}), format_mean_std({"mean": None})
        ('50.0', '-')
    """
    mean, std = stat.get("mean"), stat.get("std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{100 * mean:.{digits}f}"
    return text if std is None else f"{text} ± {100 * std:.{digits}f}"


def comparison_table(result: Mapping[str, Any], digits: int = 1) -> str:
    """Markdown table shaped like the paper's Table 1.

    Two rows per base method, ``<base>`` and ``<base> + DLSA``; columns overall, many,
    medium, few, MCC and NMI, each ``mean ± std`` over seeds in percent; the DLSA row
    also gives the mean gain over the base method in brackets. The scikit-learn peer,
    when fitted, is the last row (one fit, no std).

    Args:
        result: the output of :func:`compare_bases`.
        digits: decimals.
    """
    rows = []
    for name in result["bases"]:
        summary = result["summary"][name]
        rows.append([name] + [format_mean_std(summary["base"][c], digits) for c in COLUMNS])
        cells = [f"{name} + DLSA"]
        for col in COLUMNS:
            cell = format_mean_std(summary["dlsa"][col], digits)
            gain = summary["gain"][col]["mean"]
            if gain is not None:
                cell += f" ({100 * gain:+.{digits}f})"
            cells.append(cell)
        rows.append(cells)
    if result.get("peer") is not None:
        peer = result["peer"]
        stats = [{"mean": peer["metrics"][c], "std": None} for c in COLUMNS]
        rows.append(
            [f"{PEER_NAME}, C {peer['c']:g}"] + [format_mean_std(v, digits) for v in stats]
        )
    header = ["classifier", "overall", "many", "medium", "few", "MCC", "NMI"]
    n = len(result["seeds"])
    caption = f"Test metrics (%), mean ± std over {n} seed{'s' if n > 1 else ''}"
    return caption + "\n\n" + markdown_table(header, rows)
