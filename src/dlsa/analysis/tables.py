"""Plain-text helpers of the reports: percentages and Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
