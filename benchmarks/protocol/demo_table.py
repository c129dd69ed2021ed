"""Aggregate ``dlsa demo`` runs over seeds into one mean ± std table.

Usage:
    for s in 0 1 2; do dlsa demo --imbalance 100 --seed $s --out runs/demo-r100-s$s; done
    python -m benchmarks.protocol.demo_table runs/demo-r100-s*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dlsa.analysis.report import COLUMNS, markdown_table


def mean_std(values: list[float | None], signed: bool = False) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    std = np.std(vals, ddof=1) if len(vals) > 1 else 0.0
    mean = f"{100 * np.mean(vals):+.1f}" if signed else f"{100 * np.mean(vals):.1f}"
    return f"{mean} ± {100 * std:.1f}"


def _normalise(record: dict) -> dict:
    """Accept ``dlsa fit`` results too: same keys as a demo record."""
    if "metrics" in record:
        return record
    return record | {
        "metrics": {"base": record["base"]["metrics"], "dlsa": record["dlsa"]["metrics"]},
        "separation": [s["accuracy"] for s in record["dlsa"]["separation"]],
        "validation": record.get("validation"),
        "settings": {"seed": record["seed"]},
        "timings": record["timings_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="folders written by dlsa demo")
    args = parser.parse_args()
    records = [_normalise(json.loads((Path(r) / "results.json").read_text())) for r in args.runs]
    base = records[0]["config"]["base"]
    columns = list(COLUMNS)
    if all("tail_half" in r["metrics"]["base"] for r in records):
        columns.append("tail_half")
    rows = []
    for name, key in ((base, "base"), (f"{base} + DLSA", "dlsa")):
        cells = [mean_std([r["metrics"][key][c] for r in records]) for c in columns]
        rows.append([name, *cells])
    gains = []
    for c in columns:
        pairs = [
            (r["metrics"]["dlsa"][c], r["metrics"]["base"][c])
            for r in records
            if r["metrics"]["dlsa"][c] is not None and r["metrics"]["base"][c] is not None
        ]
        gains.append(mean_std([a - b for a, b in pairs], signed=True) if pairs else "-")
    rows.append(["gain", *gains])
    header = ["model", "overall", "many", "medium", "few", "MCC", "NMI", "tail half"]
    header = header[: len(columns) + 1]
    print(markdown_table(header, rows))
    seps = [[s for s in r["separation"]] for r in records]
    kept = [r["validation"]["stages"] if r["validation"] else None for r in records]
    enabled = [[s["kept"] for s in k] if k else None for k in kept]
    print(f"\nseeds: {[r['settings']['seed'] for r in records]}; stages kept by the safeguard "
          f"(levels 1-3, regular): {enabled}")  # fmt: skip
    print(f"test head-tail separation per filter: {seps}")
    times = {k: np.mean([r["timings"][k] for r in records]) for k in records[0]["timings"]}
    print("mean time: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))


if __name__ == "__main__":
    main()
