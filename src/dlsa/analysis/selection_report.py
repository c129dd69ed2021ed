"""The selection's evidence in words and tables (``DLSAClassifier.selection_``): where it
came from, every candidate's score and gain, what was chosen and why, in one line or in
full. Used by ``report.md`` of ``dlsa fit`` and ``dlsa demo`` and by ``dlsa diagnose``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlsa.analysis.tables import markdown_table, pct


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
    parts = _summary(selection)
    for rnd in selection["rounds"]:
        parts += _round_lines(rnd, selection.get("source"))
    return "\n".join(parts)


def _summary(selection: Mapping[str, Any]) -> list[str]:
    """The lines above the rounds' tables: the evidence, the bar a departure must clear
    (margin, max-t, minimum gain, prior guard), the time and the choice; where the
    training features came from; a final fit that diverged."""
    bar = f"> {selection['margin']:g} standard errors"
    if selection.get("multiplicity") == "max-t":
        bar += " (or the max-t bar of the round's departures, whichever is higher)"
    guard = ""
    if selection.get("prior_guard") is not None:
        guard = (
            f", and may not move predictions from the rarer half of the classes to the "
            f"other half by more than {selection['prior_guard']:g} standard errors (the "
            "training features may be memorised: prior guard)"
        )
    parts = [
        f"selection: {evidence_source(selection)}; a departure from a simpler option "
        f"needs a paired gain {bar} and > {100 * selection['min_gain']:.2f} points{guard}; "
        f"{selection['seconds']:.1f} s. Chosen: **{selection['chosen']}**."
    ]
    if "train_features" in selection:
        source = str(selection.get("source", "out-of-fold"))
        line = evidence_line(source, selection["train_features"]).removeprefix("selection: ")
        parts += ["", f"Evidence: {line}."]
    if selection.get("final_fit_diverged"):
        parts.append(
            "The DLSA option the rounds below chose diverged when fitted on all the data "
            f"({selection['final_fit_diverged']}); the chosen base is used alone."
        )
    return parts


def _round_lines(rnd: Mapping[str, Any], source: str | None) -> list[str]:
    """One round's lines: its title and time, the table of its candidates (one row each,
    :func:`_candidate_row`), why it chose, and the candidates it skipped. ``source`` is
    the selection's ("validation", or out of fold otherwise)."""
    rows = [_candidate_row(row, rnd["reference"]) for row in rnd["candidates"]]
    header = [
        "candidate",
        "validation balanced acc" if source == "validation" else "out-of-fold balanced acc",
        f"gain over {rnd['reference']}",
        "rarer half gain",
    ]
    if rnd["candidates"] and "tail_share_routed" in rnd["candidates"][0]:
        header.append("tail share (filter 1)")
    if rnd["candidates"] and "to_head" in rnd["candidates"][0]:
        header.append("to the head / back")
    table = markdown_table([*header, "decision"], rows)
    parts = ["", f"{rnd['what']} ({rnd['seconds']:.1f} s):", "", table, ""]
    parts.append(f"why: {rnd['reason']}")
    for skip in rnd.get("skipped", []):
        parts.append(f"skipped (its training diverged, not eligible): {skip['name']}")
    if rnd.get("skipped"):
        parts.append(
            "A diverging flow filter usually means features of a large scale or offset: "
            "`--flow-filter.standardize true` makes the filter scale-free."
        )
    return parts


def _candidate_row(row: Mapping[str, Any], reference: str) -> list[str]:
    """A candidate's cells: name, balanced accuracy, gain ± standard error and rarer-half
    gain over the round's ``reference`` ("-" for the reference itself), the tail share
    its first filter routes and the prior guard's counts (where the round has them), and
    the decision (:func:`_decision`)."""
    gain = (
        "-" if row["name"] == reference else (f"{100 * row['gain']:+.2f} ± {100 * row['se']:.2f}")
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
        if row["name"] == reference or "tail_gain" not in row
        else (f"{100 * row['tail_gain']:+.2f}")
    )
    flow = [] if "to_head" not in row else [_flow(row, reference)]
    return [row["name"], pct(row["balanced_accuracy"], 2), gain, tail, *extra, *flow,
            _decision(row)]  # fmt: skip


def _decision(row: Mapping[str, Any]) -> str:
    """What became of a candidate: "chosen", dropped early (after how many samples), not
    eligible (by the prior guard, or otherwise), or "" (scored, not chosen)."""
    decision = (
        "chosen"
        if row["chosen"]
        else f"dropped after {row['n_scored']} samples"
        if row.get("dropped")
        else ("not eligible" if row.get("eligible") is False else "")
    )
    if row.get("prior_guard") and not row.get("dropped"):
        decision = "not eligible (prior guard)"
    return decision


def _flow(row: Mapping[str, Any], reference: str) -> str:
    """The prior guard's counts of a candidate: rows its predictions move from the rarer
    half of the classes to the other half, and back, against the reference's."""
    if row["name"] == reference:
        return "-"
    return f"{row['to_head']} / {row['to_tail']} (z {row['shift_z']:+.1f})"


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


_WHY = {
    "seen": "the backbone trained on these images: the prior guard is on",
    "unseen": "the backbone did not train on these images: the prior guard is off",
    "unknown": "whether the backbone trained on these images is unknown: the prior guard is on",
}


def evidence_line(source: str, train_features: str, because: str = "") -> str:
    """One sentence: on which evidence the selection decides and why.

    Args:
        source: "validation" (``--val``) or "out-of-fold" (``--train``).
        train_features: ``SelectionConfig.train_features`` ("seen", "unseen", "unknown").
        because: where ``train_features`` came from, e.g. "recorded in train.h5"; "" to
            leave it out.

    Example:
        >>> evidence_line("out-of-fold", "unseen")
        'selection: out of fold on --train (the backbone did not train on these images: the prior guard is off)'
    """  # noqa: E501
    if source == "validation":
        return "selection: on --val (images the backbone did not train on; no prior guard)"
    why = _WHY.get(train_features, _WHY["unknown"])
    if because:
        why = f"{why}; {because}"
    line = f"selection: out of fold on --train ({why})"
    if train_features != "unseen":
        line += "; pass --val to decide on held-out images"
    return line


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
