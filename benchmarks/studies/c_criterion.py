"""Which held-out criterion should choose ``balsoftmax-tuned``'s C: balanced accuracy or
balanced log-loss?

For every set and seed (a seed draws other inner folds), fits
``balsoftmax-tuned`` alone with each criterion and prints the C it chose and its test
accuracy. A stable criterion chooses the same C whatever the folds.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.studies.c_criterion \\
        --sets ../shared/cases/fa20 runs/panel/fmd-tail-s0 --seeds 0-5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import set_files
from dlsa import DLSAClassifier
from dlsa.io.features import load_features

CRITERIA = ("accuracy", "log-loss")


def run_set(folder: Path, seeds: list[int]) -> list[str]:
    """Table rows of one set: per criterion, the chosen C and test accuracy per seed."""
    files = set_files(folder)
    train, test = load_features(files["train"]), load_features(files["test"])
    classes = np.unique(train.y)
    y, y_test = np.searchsorted(classes, train.y), np.searchsorted(classes, test.y)
    rows = []
    for criterion in CRITERIA:
        cells = []
        for seed in seeds:
            clf = DLSAClassifier(
                base="balsoftmax-tuned", base_params={"criterion": criterion}, depth=0,
                selection=None, random_state=seed,
            )  # fmt: skip
            clf.fit(train.X, y)
            c = float(clf.cascade_.fallback.head.c)
            cells.append(f"{c:g}: {100 * clf.score(test.X, y_test):.2f}")
        rows.append(f"| {folder.name} | {criterion} | " + " · ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True, help="set folders")
    parser.add_argument("--seeds", default="0-5", help="first-last")
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    seeds = list(range(first, last + 1))
    print("| set | criterion | C chosen: test accuracy (%), per seed |\n|---|---|---|")
    for folder in map(Path, args.sets):
        print("\n".join(run_set(folder, seeds)), flush=True)


if __name__ == "__main__":
    main()
