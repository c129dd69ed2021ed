"""Readable Markdown tables of evaluation results (no computation beyond formatting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlsa.analysis.selection_report import choice_line, selection_table
from dlsa.analysis.tables import markdown_table, pct

COLUMNS = ("overall", "many", "medium", "few", "mcc", "nmi")
"""Metric columns of the paper's tables."""


def metrics_table(
    results: Mapping[str, Mapping[str, float | None]], reference: str | None = None
) -> str:
    """One row per model; with ``reference``, other rows show the gain in brackets.

    Args:
        results: model name -> metrics dict with the keys of :data:`COLUMNS`.
        reference: the model whose numbers the gains are measured against.
    """
    rows = []
    ref = results.get(reference) if reference else None
    for name, metrics in results.items():
        cells: list[str] = [name]
        for col in COLUMNS:
            value = metrics.get(col)
            cell = pct(value)
            base = None if ref is None or name == reference else ref.get(col)
            if value is not None and base is not None:
                cell += f" ({100 * (value - base):+.1f})"
            cells.append(cell)
        rows.append(cells)
    return markdown_table(["model", "overall", "many", "medium", "few", "MCC", "NMI"], rows)


def calibration_table(
    results: Mapping[str, Mapping[str, Any]], temperatures: Mapping[str, float | None]
) -> str:
    """One row per model: ECE (%), NLL, Brier score of its test probabilities
    (:mod:`dlsa.metrics.calibration`) and its temperature (1: not calibrated).

    Example:
        >>> print(calibration_table({"m": {"ece": 0.05, "nll": 0.4, "brier": 0.2}},
        ...                         {"m": None}).splitlines()[-1])
        | m | 5.00 | 0.400 | 0.200 | 1 (not calibrated) |
    """
    rows = []
    for name, cal in results.items():
        t = temperatures.get(name)
        rows.append(
            [name, pct(cal.get("ece"), 2), _num(cal.get("nll")), _num(cal.get("brier")),
             "1 (not calibrated)" if t is None else f"{t:.3f}"]
        )  # fmt: skip
    return markdown_table(["model", "ECE (%)", "NLL", "Brier", "temperature"], rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def levels_table(
    levels: Sequence[Mapping[str, Any]], test_separation: Sequence[Mapping[str, Any]]
) -> str:
    """Per flow filter: train routing, test head-tail separation and flow-epoch choice."""
    rows = []
    for i, level in enumerate(levels):
        flt = level["filter"]
        sep = test_separation[i] if i < len(test_separation) else {}
        good = flt["good_clusters"][flt["selected_epoch"] - 1] if flt["selected_epoch"] else "-"
        rows.append(
            [
                i + 1,
                level["n_input"],
                level["n_routed"],
                pct(level["tail_share_input"]),
                pct(level["tail_share_routed"]),
                pct(sep.get("tail_share_input")),
                pct(sep.get("accuracy")),
                f"{flt['selected_epoch']}/{len(flt['losses'])}",
                good,
                _release_terms(flt.get("terms") or []),
            ]
        )
    header = [
        "filter",
        "train in",
        "train routed",
        "tail% in",
        "tail% routed",
        "test tail% in",
        "test separation acc",
        "epoch kept",
        "good clusters",
        "epoch 1: log_lh / purity / balance",
    ]
    return markdown_table(header, rows)


def _release_terms(terms: Sequence[Mapping[str, float]]) -> str:
    """Epoch 1's lambda-weighted per-step loss terms, as the original release logs them
    (it prints their sums over the epoch's steps); "-" for models saved without them."""
    if not terms:
        return "-"
    first = terms[0]
    return f"{first['log_lh']:.3f} / {first['purity']:.3f} / {first['balance']:.4f}"


def stages_table(rows: Sequence[Mapping[str, Any]], n_levels: int) -> str:
    """Per stage: test samples handled, DLSA's accuracy and the base's on the same ones."""
    out = []
    for row in rows:
        s = row["stage"]
        name = "regular" if s == n_levels else f"cluster-aided {s + 1}"
        gain = row["dlsa_accuracy"] - row["base_accuracy"]
        out.append(
            [
                name,
                row["n"],
                pct(row["dlsa_accuracy"]),
                pct(row["base_accuracy"]),
                f"{100 * gain:+.1f}",
            ]
        )
    return markdown_table(["stage", "test n", "DLSA acc", "base acc (same samples)", "gain"], out)


def safeguard_table(validation: Mapping[str, Any] | None, n_levels: int) -> str:
    """The safeguard's per-stage decisions (``DLSAClassifier.validation_``) as a titled
    markdown table; a line saying it was off when ``validation`` is None.

    Example:
        >>> v = {"n_fit": 80, "n_val": 20, "n_folds": None, "stages": [
        ...     {"stage": 0, "n": 12, "accuracy": 0.5, "base_accuracy": 0.75, "kept": False},
        ...     {"stage": 1, "n": 8, "accuracy": 1.0, "base_accuracy": 1.0, "kept": True}]}
        >>> print(safeguard_table(v, 1).splitlines()[-2])
        | cluster-aided 1 | 12 | 50.0 | 75.0 | no: base method |
    """
    if not validation:
        return "safeguard: off (every stage is used)"
    if validation.get("n_folds"):
        how = (
            f"{validation['n_folds']} folds, every one of {validation['n_val']} training "
            "samples held out once"
        )
    elif validation.get("source") == "validation set":
        how = f"fit on all {validation['n_fit']} training samples, decided on the validation set"
    else:
        how = f"fit on {validation['n_fit']}, validated on {validation['n_val']} samples"
    rows = []
    for row in validation["stages"]:
        s = row["stage"]
        rows.append(
            [
                "regular" if s == n_levels else f"cluster-aided {s + 1}",
                row["n"],
                pct(row["accuracy"]),
                pct(row["base_accuracy"]),
                "yes" if row["kept"] else "no: base method",
            ]
        )
    header = ["stage", "val n", "DLSA acc (balanced)", "base acc (balanced)", "kept"]
    return f"safeguard ({how}):\n\n" + markdown_table(header, rows)


def classes_line(classes: Sequence[Any], counts: Sequence[int], limit: int = 20) -> str:
    """The class names with their training sample counts, most frequent first, at most
    ``limit`` of them (the rest counted).

    Example:
        >>> classes_line(["cat", "dog", "emu"], [5, 40, 2], limit=2)
        '3 classes: dog (40), cat (5), ... and 1 more'
    """
    order = sorted(range(len(classes)), key=lambda i: (-counts[i], i))
    shown = ", ".join(f"{classes[i]} ({counts[i]})" for i in order[:limit])
    rest = len(classes) - limit
    return f"{len(classes)} classes: {shown}" + (f", ... and {rest} more" if rest > 0 else "")


def fit_report(results: dict[str, Any]) -> str:
    """``report.md`` of ``dlsa fit``: test metrics of the reference and the chosen model,
    selection evidence, filters, stages, safeguard, classes and timings."""
    ref, chosen = results["reference"], results["chosen"]
    if chosen == ref:
        chosen += " (chosen)"
    table = metrics_table(
        {ref: results["base"]["metrics"], chosen: results["dlsa"]["metrics"]}, reference=ref
    )
    names = {"base": results["reference"], "dlsa": chosen}
    parts = [
        "## Test metrics (%)",
        table,
        choice_line(results["selection"]),
        "",
        "## Calibration of the test probabilities",
        calibration_table(
            {names[k]: results[k]["calibration"] for k in names},
            {names[k]: results[k].get("temperature") for k in names},
        ),
        "",
        "## Selection",
        selection_table(results["selection"]),
        "",
        "## Flow filters (train routing, test separation)",
        levels_table(results["levels"], results["dlsa"]["separation"]),
        "",
        "## Stages on the test set",
        stages_table(results["stage_comparison"], results["n_levels"]),
        "",
        "## Safeguard (decided without the test set)",
        safeguard_table(results["validation"], results["n_levels"]),
        "",
        "## Classes (training samples)",
        classes_line(results["classes"], results["class_counts"]),
        "",
        "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in results["timings_s"].items()),
    ]
    return "\n".join(parts)


def demo_report(record: dict[str, Any]) -> str:
    """``report.md`` of ``dlsa demo`` from its results record."""
    ref, chosen = record["reference"], record["chosen"]
    if chosen == ref:
        chosen += " (chosen)"
    m = record["metrics"]
    table = metrics_table({ref: m["base"], chosen: m["dlsa"]}, reference=ref)
    sep = (
        ", ".join(
            f"filter {i + 1}: {'- (no tail class)' if a is None else f'{100 * a:.1f}%'}"
            for i, a in enumerate(record["separation"])
        )
        or "- (the chosen model has no flow filter)"
    )
    settings = record["settings"]
    parts = [
        f"## Fashion-MNIST-LT (rho={settings['imbalance']:g}, seed {settings['seed']}), "
        f"train counts {record['counts']}",
        "",
        table,
        choice_line(record["selection"]),
        "",
        f"head-tail separation accuracy on test (share of tail among filtered): {sep}",
        "",
        stages_table(record["stages"], len(record["levels"])),
        "",
        "calibration of the test probabilities (temperature fitted on the val split):",
        "",
        calibration_table(
            {ref: record["calibration"]["base"], chosen: record["calibration"]["dlsa"]},
            {
                ref: record["calibration"]["base"]["temperature"],
                chosen: record["calibration"]["dlsa"]["temperature"],
            },
        ),  # fmt: skip
        "",
        safeguard_table(record["validation"], len(record["levels"])),
        "",
        selection_table(record["selection"]),
        "",
        "time: " + ", ".join(f"{k} {v:.0f}s" for k, v in record["timings"].items()),
    ]
    return "\n".join(parts)
