"""Compare safeguard settings by nested validation on TRAIN (the test set is never read).

For each train feature file and seed, a stratified 20% of every class is held out (the
outer split); the base method and base + DLSA under each safeguard setting (off, or K
folds) are fitted on the rest, where the safeguard makes its own inner folds, and scored
by the gain in class-balanced accuracy on the outer split.

Usage:
    python -m benchmarks.studies.safeguard_policy --train runs/demo-r500-s0/train.h5 \
        runs/demo-r100-s0/train.h5 --config small --folds 0,2,5 --seeds 0,1
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from dlsa import DLSAClassifier
from dlsa.analysis.report import markdown_table
from dlsa.config import get_preset
from dlsa.engine.splits import stratified_split
from dlsa.io.features import load_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", required=True, help="train feature files")
    parser.add_argument("--config", default="small")
    parser.add_argument("--folds", default="0,2,5", help="safeguard folds; 0 = off")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--outer-fraction", type=float, default=0.2)
    args = parser.parse_args()
    cfg = get_preset(args.config)
    params = cfg.estimator_params()
    params["validation_fraction"] = 0.0
    folds = [int(k) for k in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    gains: dict[int, list[float]] = {k: [] for k in folds}
    for path, seed in itertools.product(args.train, seeds):
        data = load_features(path)
        fit_idx, val_idx = stratified_split(data.y, args.outer_fraction, seed=123, min_per_class=2)
        X, y, Xv, yv = data.X[fit_idx], data.y[fit_idx], data.X[val_idx], data.y[val_idx]
        base = DLSAClassifier(**(params | {"depth": 0, "random_state": seed})).fit(X, y)
        ref = balanced_accuracy_score(yv, base.predict(Xv))
        line = f"{path} seed {seed}: base {100 * ref:.2f}"
        for k in folds:
            clf = DLSAClassifier(**(params | {"validation_folds": k, "random_state": seed}))
            clf.fit(X, y)
            gain = balanced_accuracy_score(yv, clf.predict(Xv)) - ref
            gains[k].append(gain)
            line += f" | folds {k}: {100 * gain:+.2f} kept {clf.stage_enabled_}"
        print(line, flush=True)
    rows = [
        ["off" if k == 0 else f"{k} folds", f"{100 * np.mean(g):+.2f}", f"{100 * np.std(g):.2f}"]
        for k, g in gains.items()
    ]
    print(markdown_table(["safeguard", "outer-split gain (balanced acc, pts)", "std"], rows))


if __name__ == "__main__":
    main()
