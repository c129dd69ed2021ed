"""Readable Markdown tables of evaluation results (no computation beyond formatting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("overall", "many", "medium", "few", "mcc", "nmi")
"""Metric columns of the paper's tables."""


def pct(value: float | None, digits: int = 1) -> str:
    """A [0, 1] value as a percentage string; ``-`` for an absent value.

    Example:
        >>> pct(0.1234), pct(None)
        ('12.3', '-')
    """
    return "-" if value is None else f"{100 * value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with right-aligned columns after the first.

    Example:
        >>> print(markdown_table(["a", "b"], [["x", 1]]))
        | a | b |
        |---|--:|
        | x | 1 |
    """
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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


def selection_table(selection: Mapping[str, Any] | None) -> str:
    """The out-of-fold model selection (``DLSAClassifier.selection_``): per round, every
    candidate's balanced accuracy, paired gain ± standard error over the round's
    reference and gain on the rarer half of the classes, what was chosen and why; a line
    saying it was off when ``selection`` is None.

    Example:
        >>> sel = {"folds": 3, "margin": 2.0, "min_gain": 0.002, "seconds": 1.0,
        ...        "chosen": "balsoftmax", "rounds": [{"what": "base method",
        ...        "reference": "balsoftmax", "chosen": "balsoftmax", "reason": "r",
        ...        "seconds": 1.0, "candidates": [{"name": "balsoftmax",
        ...        "balanced_accuracy": 0.8, "gain": 0.0, "se": 0.0, "chosen": True}]}]}
        >>> print(selection_table(sel).splitlines()[-3])
        | balsoftmax | 80.00 | - | - | chosen |
    """
    if not selection:
        return "selection: off (the configuration was fitted as given)"
    bar = f"> {selection['margin']:g} standard errors"
    if selection.get("multiplicity") == "max-t":
        bar += " (or the max-t bar of the round's departures, whichever is higher)"
    parts = [
        f"selection: {evidence_source(selection)}; a departure from a simpler option "
        f"needs a paired gain {bar} and > {100 * selection['min_gain']:.2f} points; "
        f"{selection['seconds']:.1f} s. Chosen: **{selection['chosen']}**."
    ]
    if selection.get("final_fit_diverged"):
        parts.append(
            "The DLSA option the rounds below chose diverged when fitted on all the data "
            f"({selection['final_fit_diverged']}); the chosen base is used alone."
        )
    for rnd in selection["rounds"]:
        rows = []
        for row in rnd["candidates"]:
            gain = (
                "-"
                if row["name"] == rnd["reference"]
                else (f"{100 * row['gain']:+.2f} ± {100 * row['se']:.2f}")
            )
            routed = row.get("tail_share_routed")
            extra = (
                []
                if "tail_share_routed" not in row
                else [
                    "-"
                    if routed is None
                    else f"{100 * routed:.0f}% of routed vs {100 * row['tail_share_input']:.0f}%"
                ]
            )
            tail = (
                "-"
                if row["name"] == rnd["reference"] or "tail_gain" not in row
                else (f"{100 * row['tail_gain']:+.2f}")
            )
            decision = (
                "chosen"
                if row["chosen"]
                else ("not eligible" if row.get("eligible") is False else "")
            )
            rows.append(
                [row["name"], pct(row["balanced_accuracy"], 2), gain, tail, *extra, decision]
            )  # fmt: skip
        header = [
            "candidate",
            "validation balanced acc"
            if selection.get("source") == "validation"
            else "out-of-fold balanced acc",
            f"gain over {rnd['reference']}",
            "rarer half gain",
        ]
        if rows and len(rows[0]) == 6:
            header.append("tail share (filter 1)")
        table = markdown_table([*header, "decision"], rows)
        parts += ["", f"{rnd['what']} ({rnd['seconds']:.1f} s):", "", table, ""]
        parts.append(f"why: {rnd['reason']}")
        for skip in rnd.get("skipped", []):
            parts.append(f"skipped (its training diverged, not eligible): {skip['name']}")
        if rnd.get("skipped"):
            parts.append(
                "A diverging flow filter usually means features of a large scale or offset: "
                "`--flow-filter.standardize true` makes the filter scale-free."
            )
    return "\n".join(parts)


def evidence_source(selection: Mapping[str, Any]) -> str:
    """Where the selection's evidence came from, in words.

    Example:
        >>> evidence_source({"source": "out-of-fold", "folds": 3})
        'out-of-fold predictions of 3 stratified folds of the training data'
    """
    if selection.get("source") == "validation":
        return (
            "every candidate fitted on all the training data, scored on the validation set "
            f"({selection['n_scored']} samples)"
        )
    return f"out-of-fold predictions of {selection['folds']} stratified folds of the training data"


def choice_line(selection: Mapping[str, Any] | None) -> str:
    """One line: what the selection chose, why (the deciding round's reason) and on what
    evidence; "configured" when there was no selection.

    Example:
        >>> choice_line({"chosen": "balsoftmax", "source": "validation", "n_scored": 9,
        ...     "rounds": [{"chosen": "balsoftmax", "reason": "nothing beats it"}]})
        'chosen: balsoftmax (nothing beats it; validation set, 9 samples)'
    """
    if not selection:
        return "chosen: the configuration as given (no selection)"
    rounds = selection.get("rounds") or []
    reason = rounds[-1]["reason"] if rounds else "the configuration as given"
    for rnd in rounds:  # the round that departed says why
        if rnd["chosen"] != rnd.get("reference", rnd["chosen"]):
            reason = rnd["reason"]
    where = (
        f"validation set, {selection['n_scored']} samples"
        if selection.get("source") == "validation"
        else "out of fold on the training data"
    )
    return f"chosen: {selection['chosen']} ({reason}; {where})"


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
