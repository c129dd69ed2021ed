"""``dlsa diagnose``: will DLSA help on these features? Answered on the training data
alone, before anyone spends GPU hours.

Fits the flow filters once on all training samples (the default configuration's cheap
filter settings unless told otherwise) and reports, per filter, its head-tail separation
on the training samples, and its clusters (how many, how pure, how large). Then it runs
the DLSA round of :mod:`dlsa.selection` on top of the reference base method: the
out-of-fold gain of every DLSA variant over the base, with its standard error, and the
out-of-fold separation of filter 1. It ends with a one-line verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlsa.analysis.selection_report import selection_table
from dlsa.analysis.tables import markdown_table, pct
from dlsa.config import DLSAConfig, SelectionConfig
from dlsa.estimator import DLSAClassifier
from dlsa.metrics import HEAD_THRESHOLD as TAIL_THRESHOLD
from dlsa.metrics import cluster_statistics


def diagnose(
    X: np.ndarray,
    y: np.ndarray,
    config: DLSAConfig,
    reference: str,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Filters fitted once, DLSA's out-of-fold gain over ``reference`` (or its gain on
    the validation set ``val``), and a verdict.

    Args:
        X: (N, D) training features.
        y: (N,) training labels.
        config: filter, head and selection settings (``config.depth`` filters; the
            selection's folds, margin and routed shares; its base list is ignored).
        reference: the base method DLSA is measured against.
        val: optional (X_val (M, D), y_val (M,)) labelled features the backbone did not
            train on; the gains are measured on them.

    Returns:
        JSON-ready ``filters`` (per level), ``selection`` (the DLSA round's evidence),
        ``verdict`` (one line) and ``helps`` (bool).
    """
    sel = config.selection or SelectionConfig()
    full_params, oof_params = diagnose_params(config, reference)
    full = DLSAClassifier(**full_params).fit(X, y)
    filters = _filter_rows(full, X, y)
    oof = DLSAClassifier(**oof_params)
    oof.fit(X, y, **({} if val is None else {"X_val": val[0], "y_val": val[1]}))
    evidence = oof.selection_
    assert evidence is not None
    where = "on the validation set" if val is not None else "out of fold"
    verdict, helps = _verdict(evidence["rounds"][-1], sel, where)
    return {"filters": filters, "selection": evidence, "verdict": verdict, "helps": helps}


def diagnose_params(config: DLSAConfig, reference: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The estimator parameters of the two fits of :func:`diagnose`: the filters once on
    all the data (no selection), and the DLSA round of the selection over ``reference``
    (both with ``config.depth``, at least 1, filters)."""
    params = config.estimator_params() | {
        "base": reference,
        "base_params": dict(config.base_params) if reference == config.base else {},
        "depth": max(1, config.depth),
    }
    sel = config.selection or SelectionConfig()
    return params | {"selection": None}, params | {"selection": sel}


def _filter_rows(model: DLSAClassifier, X: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Per level: training samples in and routed, tail shares, cluster statistics."""
    import torch

    _, y_enc = np.unique(y, return_inverse=True)
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    rows = []
    keep = np.ones(len(y_enc), dtype=bool)
    for flt, report in zip(model.filters_, model.reports_, strict=True):
        idx = np.flatnonzero(keep)
        with torch.no_grad():
            out = flt.transform(x[idx].to(flt.threshold.device))
        routed = flt.route(out.log_prob).cpu().numpy()
        stats = cluster_statistics(
            out.cluster.cpu().numpy(),
            y_enc[idx],
            flt.n_components,
            min_purity=flt.config.min_purity,
            min_size=flt.config.min_cluster_size,
        )
        sizes, purity = stats["sizes"], stats["purity"]
        nonempty = sizes > 0
        rows.append(
            {
                "n_input": report["n_input"],
                "n_routed": report["n_routed"],
                "tail_share_input": report["tail_share_input"],
                "tail_share_routed": report["tail_share_routed"],
                "n_clusters": int(flt.n_components),
                "n_nonempty": int(stats["n_nonempty"]),
                "n_good": int(stats["n_good"]),
                "largest_share": float(stats["largest_share"]),
                "mean_purity": float(np.average(purity[nonempty], weights=sizes[nonempty])),
                "selection": report["filter"]["selection"],
            }
        )
        keep[idx[routed]] = False
    return rows


def _verdict(
    rnd: Mapping[str, Any], sel: SelectionConfig, where: str = "out of fold"
) -> tuple[str, bool]:
    """One line from the DLSA round: the gain ``where`` it was measured decides (above
    the round's bar, max-t included); filter 1's separation (of the variant routing the
    fewest samples) says why."""
    dlsa = rnd["candidates"][1:]
    best = max(dlsa, key=lambda r: r["gain"])
    gain = f"{100 * best['gain']:+.2f} ± {100 * best['se']:.2f} points"
    bar = best.get("margin", sel.margin)
    clear = best["gain"] > max(bar * best["se"], sel.min_gain)
    probe = next((r for r in dlsa if r.get("tail_share_routed") is not None), None)
    at_chance = False
    if probe is not None:
        routed, share, n = probe["tail_share_routed"], probe["tail_share_input"], probe["n_routed"]
        at_chance = routed <= share + 2 * math.sqrt(share * (1 - share) / max(n, 1)) + 0.01
        sep = f"{100 * routed:.0f}% tail among routed vs {100 * share:.0f}% overall"
    if clear:
        why = (
            f"; filter 1 separates head from tail at chance ({sep}), so the gain comes from "
            "the cluster-aided classifier, not from routing the tail"
            if at_chance
            else ""
        )
        return f"DLSA is likely to help: {best['name']} gains {gain} {where}{why}", True
    if at_chance:
        return (
            f"DLSA is unlikely to help here: separation at chance ({sep}, {where}); "
            f"best DLSA variant {gain}",
            False,
        )
    return (
        f"DLSA is unlikely to help here: its best gain {where} ({best['name']}, {gain}) "
        f"is within {bar:.2f} standard errors",
        False,
    )


def diagnose_report(result: Mapping[str, Any]) -> str:
    """Markdown report of :func:`diagnose`."""
    rows = []
    for i, r in enumerate(result["filters"]):
        tail = (
            "-"
            if r["tail_share_routed"] is None
            else f"{pct(r['tail_share_routed'])}% vs {pct(r['tail_share_input'])}%"
        )
        rows.append(
            [
                f"filter {i + 1}",
                r["n_input"],
                r["n_routed"],
                tail,
                f"{r['n_nonempty']} / {r['n_clusters']}",
                r["n_good"],
                pct(r["mean_purity"]),
                pct(r["largest_share"]),
            ]
        )
    header = [
        "filter",
        "train n in",
        "routed",
        f"tail share (<= {TAIL_THRESHOLD} samples): routed vs in",
        "clusters used",
        "good clusters",
        "mean purity",
        "largest cluster",
    ]
    return "\n".join(
        [
            "## Flow filters on the training data",
            markdown_table(header, rows),
            "",
            "## DLSA over the base",
            selection_table(result["selection"]),
            "",
            f"**Verdict:** {result['verdict']}",
        ]
    )
