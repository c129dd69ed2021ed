"""Choose flow-filter settings for a preset on a validation split carved from TRAIN.

The test set is never read. A stratified part of the train features is held out; each
candidate (K, sigma, lambda_pure, flow lr) fits base and base + DLSA on the rest and is
scored by the gain in overall accuracy on the held-out part (mean over seeds).

Usage:
    python benchmarks/tune_preset.py --train runs/demo/train.h5 --config small --seeds 0,1
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np

from dlsa import DLSAClassifier
from dlsa.config import DLSAConfig, MixtureConfig, get_preset
from dlsa.data import stratified_split
from dlsa.evaluation import evaluate
from dlsa.features import load_features
from dlsa.report import markdown_table


def candidates(cfg: DLSAConfig, n_classes: int) -> list[tuple[str, DLSAConfig]]:
    """The search grid around a preset."""
    rep = dataclasses.replace
    out = []
    ks = sorted({max(2, n_classes), 3 * n_classes, 10 * n_classes})
    for k, sigma, pure, lr in itertools.product(ks, (0.05, None), (0.02, 0.1), (0.05, 0.2)):
        f = rep(
            cfg.flow_filter,
            mixture=MixtureConfig(n_components=k, sigma=sigma),
            lambda_pure=pure,
            lr=lr,
        )
        name = f"K={k} sigma={'auto' if sigma is None else sigma} pure={pure} lr={lr}"
        out.append((name, rep(cfg, flow_filter=f, validation_fraction=0.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--config", default="small")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = load_features(args.train)
    fit_idx, val_idx = stratified_split(data.y, args.val_fraction, seed=123, min_per_class=2)
    X, y, Xv, yv = data.X[fit_idx], data.y[fit_idx], data.X[val_idx], data.y[val_idx]
    cfg = get_preset(args.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    base_acc = {}
    for seed in seeds:
        params = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        base = DLSAClassifier(**(params | {"depth": 0, "random_state": seed})).fit(X, y)
        base_acc[seed] = evaluate(base, Xv, yv)["metrics"]["overall"]
    rows, record = [], []
    for name, cand in candidates(cfg, len(np.unique(y))):
        gains, start = [], time.perf_counter()
        for seed in seeds:
            params = {f.name: getattr(cand, f.name) for f in dataclasses.fields(cand)}
            clf = DLSAClassifier(**(params | {"random_state": seed})).fit(X, y)
            gains.append(evaluate(clf, Xv, yv)["metrics"]["overall"] - base_acc[seed])
        record.append({"candidate": name, "gains": gains})
        rows.append([name, f"{100 * np.mean(gains):+.2f}", f"{time.perf_counter() - start:.0f}s"])
        print(rows[-1], flush=True)
    rows.sort(key=lambda r: -float(r[1]))
    print(markdown_table(["candidate", "val gain (overall, pts)", "time"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"base": base_acc, "candidates": record}, fh, indent=2)


if __name__ == "__main__":
    main()
