"""Markdown tables."""

from __future__ import annotations

from dlsa.analysis.report import markdown_table, metrics_table, pct


def test_pct_and_absent_values():
    assert pct(0.5) == "50.0" and pct(None) == "-"


def test_metrics_table_shows_gains_against_the_reference():
    base = {"overall": 0.5, "many": 0.7, "medium": 0.4, "few": None, "mcc": 0.45, "nmi": 0.6}
    dlsa = {"overall": 0.52, "many": 0.69, "medium": 0.44, "few": None, "mcc": 0.47, "nmi": 0.6}
    text = metrics_table({"ce": base, "ce + DLSA": dlsa}, reference="ce")
    lines = text.splitlines()
    assert lines[2] == "| ce | 50.0 | 70.0 | 40.0 | - | 45.0 | 60.0 |"
    assert lines[3].startswith("| ce + DLSA | 52.0 (+2.0) | 69.0 (-1.0) | 44.0 (+4.0) | - |")


def test_markdown_table_shape():
    text = markdown_table(["a", "b", "c"], [[1, 2, 3], [4, 5, 6]])
    assert len(text.splitlines()) == 4 and text.splitlines()[1] == "|---|--:|--:|"


def test_levels_table_gives_the_epoch_1_terms_on_the_release_scale():
    from dlsa.analysis.report import levels_table

    flt = {
        "good_clusters": [0, 3],
        "selected_epoch": 2,
        "losses": [{}, {}],
        "terms": [{"log_lh": 1.2751, "purity": -0.127, "balance": 0.00001}, {}],
    }
    level = {"filter": flt, "n_input": 100, "n_routed": 30}
    level |= {"tail_share_input": 0.2, "tail_share_routed": 0.5}
    row = levels_table([level], []).splitlines()[-1]
    assert row.endswith("| 2/2 | 3 | 1.275 / -0.127 / 0.0000 |")
    old = {**level, "filter": {k: v for k, v in flt.items() if k != "terms"}}
    assert levels_table([old], []).splitlines()[-1].endswith("| 3 | - |")
