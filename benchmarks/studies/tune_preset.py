"""Choose a preset's settings on validation splits carved from TRAIN (the test set is
never read).

For each train feature file, a stratified part of every class is held out; each
candidate (K, share routed per level, weight decay of the classifiers) is fitted on the
rest as a raw cascade (no safeguard) of ``--max-depth`` levels, and scored for every
depth 0 .. max-depth at once (a depth-d model is the deeper one with levels > d handing
their samples to the base method, which is exactly how the cascade treats them when
the regular classifier is trained on all data). The score is the gain in class-balanced
accuracy (mean per-class recall, the quantity a balanced test set measures) over the
base method, averaged over files and seeds.

Usage:
    python -m benchmarks.studies.tune_preset --train runs/demo-r500-s0/train.h5 \
        runs/demo-r100-s0/train.h5 --config small --seeds 0,1
    python -m benchmarks.studies.tune_preset --train runs/syn200/train.h5 --config small \
        --k 200,600 --seeds 0,1
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import balanced_accuracy_score

from dlsa import DLSAClassifier
from dlsa.analysis.report import markdown_table
from dlsa.config import DLSAConfig, from_dict, get_preset, set_path, to_dict
from dlsa.engine.splits import stratified_split
from dlsa.io.features import load_features


def candidates(cfg: DLSAConfig, args: argparse.Namespace) -> list[tuple[str, DLSAConfig]]:
    """The search grid around a preset: name -> raw-cascade config."""
    rep = dataclasses.replace
    out = []
    ks = [int(k) for k in args.k.split(",")] or [cfg.flow_filter.mixture.n_components]
    props = [float(p) for p in args.proportion.split(",")]
    decays = [float(w) for w in args.weight_decay.split(",")]
    for k, prop, wd in itertools.product(ks, props, decays):
        f = cfg.flow_filter
        f = rep(f, mixture=rep(f.mixture, n_components=k))
        cand = rep(
            cfg,
            flow_filter=f,
            routed_share=prop,
            head=rep(cfg.head, weight_decay=wd),
            depth=args.max_depth,
            regular_data="all",
            validation_fraction=0.0,
            validation_folds=0,
        )
        out.append((f"K={k} proportion={prop} wd={wd}", cand))
    return out


def depth_scores(clf: DLSAClassifier, X: np.ndarray, y: np.ndarray) -> list[float]:
    """Class-balanced accuracy on (X, y) of the depth-0 .. depth-L prefixes of ``clf``."""
    scores = []
    for d in range(len(clf.filters_) + 1):
        clf.stage_enabled_ = [level < d for level in range(len(clf.filters_))] + [True]
        scores.append(balanced_accuracy_score(y, clf.predict(X)))
    clf.stage_enabled_ = [True] * (len(clf.filters_) + 1)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", required=True, help="train feature files")
    parser.add_argument("--config", default="small")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--k", default="30,100", help="comma-separated K values")
    parser.add_argument("--proportion", default="0.3,0.5")
    parser.add_argument("--weight-decay", default="0.0005,0.005")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field of the preset, e.g. stage_prior=routed or flow_filter.lambda_bal=0",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cfg = get_preset(args.config)
    for item in args.set:
        key, value = item.split("=", 1)
        cfg = _override(cfg, key, value)
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = []
    for path in args.train:
        data = load_features(path)
        fit_idx, val_idx = stratified_split(data.y, args.val_fraction, seed=123, min_per_class=2)
        splits.append((path, data.X[fit_idx], data.y[fit_idx], data.X[val_idx], data.y[val_idx]))
    record: list[dict[str, Any]] = []
    for name, cand in candidates(cfg, args):
        params = cand.estimator_params()
        start = time.perf_counter()
        gains = []  # (files x seeds, depth 1 .. max)
        for (path, X, y, Xv, yv), seed in itertools.product(splits, seeds):
            clf = DLSAClassifier(**(params | {"random_state": seed})).fit(X, y)
            scores = depth_scores(clf, Xv, yv)
            gains.append([s - scores[0] for s in scores[1:]])
            record.append({"candidate": name, "file": path, "seed": seed, "scores": scores})
        mean = np.mean(gains, axis=0)
        print(f"{name}: " + " ".join(f"d{d + 1} {100 * g:+.2f}" for d, g in enumerate(mean))
              + f" ({time.perf_counter() - start:.0f}s)", flush=True)  # fmt: skip
    rows = _summary(record)
    print(markdown_table(["candidate", "depth", "val gain (balanced acc, pts)", "min"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": seeds, "files": args.train, "runs": record}, fh, indent=2)


def _override(config: DLSAConfig, path: str, value: str) -> DLSAConfig:
    """``config`` with the (dotted) field ``path`` set to ``value`` read as YAML, checked
    like a config file (a wrong name or type raises ValueError/KeyError)."""
    data = to_dict(config)
    set_path(data, path, yaml.safe_load(value))
    return from_dict(DLSAConfig, data, where=f"--set {path}")


def _summary(record: list[dict[str, Any]]) -> list[list[str]]:
    """Rows (candidate, depth, mean gain, worst gain over files x seeds), best first."""
    by_name: dict[str, list[list[float]]] = {}
    for r in record:
        s = r["scores"]
        by_name.setdefault(r["candidate"], []).append([v - s[0] for v in s[1:]])
    rows = []
    for name, gains in by_name.items():
        g = np.asarray(gains)
        for d in range(g.shape[1]):
            rows.append((float(g[:, d].mean()), float(g[:, d].min()), name, d + 1))
    rows.sort(key=lambda r: -r[0])
    return [[n, str(d), f"{100 * m:+.2f}", f"{100 * w:+.2f}"] for m, w, n, d in rows]


if __name__ == "__main__":
    main()
