"""What each DLSA ingredient contributes (a small version of the paper's Table 4).

Runs the base method alone and base + DLSA variants (full; without the MLE class
weighting, q = 0; without L_bal; without L_pure; without the residual classifiers, the
class coverage or the global stage prior where the preset uses them; depth 1-4) over
several seeds on one feature set, and prints overall / many / medium / few / MCC / NMI
as mean ± std (%) with the gain over the base. Each number touches the test set once;
nothing is selected on it.

Usage:
    python -m benchmarks.studies.ablation --train runs/demo/train.h5 --test runs/demo/test.h5 \
        --config small --seeds 0,1,2
    python -m benchmarks.studies.ablation --train runs/syn200/train.h5 --test runs/syn200/test.h5 \
        --config many-classes --no-safeguard --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np

from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import evaluate
from dlsa.analysis.report import COLUMNS, markdown_table
from dlsa.config import DLSAConfig, get_preset
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.io.features import load_features


def variants(cfg: DLSAConfig) -> dict[str, DLSAConfig]:
    """The ablation grid: name -> config."""
    f = cfg.flow_filter
    rep = dataclasses.replace
    out = {
        "base alone": rep(cfg, depth=0),
        "full": cfg,
        "w/o MLE weighting (q=0)": rep(cfg, flow_filter=rep(f, q=0.0)),
        "w/o L_bal": rep(cfg, flow_filter=rep(f, lambda_bal=0.0)),
        "w/o L_pure": rep(cfg, flow_filter=rep(f, lambda_pure=0.0)),
    }
    if cfg.residual:
        out["w/o residual"] = rep(cfg, residual=False)
    if cfg.cover_classes:
        out["w/o cover_classes"] = rep(cfg, cover_classes=False)
    if cfg.stage_prior == "global":
        out["stage prior of the routed samples"] = rep(cfg, stage_prior="routed")
    for depth in (1, 2, 3, 4):
        if depth != cfg.depth:
            out[f"depth {depth}"] = rep(cfg, depth=depth)
    return out


def run(cfg: DLSAConfig, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray) -> dict:
    params = cfg.estimator_params()
    clf = DLSAClassifier(**params).fit(X, y)
    return evaluate(clf, Xt, yt)["metrics"]


def cell(values: list[float | None], ref: list[float | None] | None) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    text = f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals, ddof=1 if len(vals) > 1 else 0):.1f}"
    if ref is not None:
        pairs = [
            (a, b) for a, b in zip(values, ref, strict=True) if a is not None and b is not None
        ]
        if pairs:
            text += f" ({100 * np.mean([a - b for a, b in pairs]):+.1f})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train")
    parser.add_argument("--test")
    parser.add_argument("--synthetic", type=int, default=0, help="classes of a synthetic set")
    parser.add_argument("--config", default="small")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--base", default=None, help="base method (default: the preset's)")
    parser.add_argument(
        "--no-safeguard", action="store_true", help="no validation split or folds (raw cascade)"
    )
    parser.add_argument(
        "--n-components", type=int, default=None, help="K of the mixture (default: preset's)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = get_preset(args.config)
    if args.n_components:
        f = cfg.flow_filter
        mixture = dataclasses.replace(f.mixture, n_components=args.n_components)
        cfg = dataclasses.replace(cfg, flow_filter=dataclasses.replace(f, mixture=mixture))
    if args.no_safeguard:
        cfg = dataclasses.replace(cfg, validation_fraction=0.0, validation_folds=0)
    if args.base:
        cfg = dataclasses.replace(cfg, base=args.base)
    grid = variants(cfg)
    if args.only:
        keep = {"base alone", *args.only.split(",")}
        grid = {k: v for k, v in grid.items() if k in keep}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in grid}
    for seed in seeds:
        data = load_data(args, seed)
        for name, variant in grid.items():
            start = time.perf_counter()
            m = run(dataclasses.replace(variant, random_state=seed), *data)
            results[name].append(m)
            print(f"seed {seed} {name}: overall {100 * m['overall']:.2f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)  # fmt: skip
    ref = results["base alone"]
    rows = []
    for name, runs in results.items():
        cells = [
            cell([r[c] for r in runs], None if name == "base alone" else [r[c] for r in ref])
            for c in COLUMNS
        ]
        rows.append([name, *cells])
    print(markdown_table(["variant", "overall", "many", "medium", "few", "MCC", "NMI"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": seeds, "config": args.config, "results": results}, fh, indent=2)


def load_data(args: argparse.Namespace, seed: int) -> tuple[np.ndarray, ...]:
    if args.synthetic:
        d = make_long_tailed_features(
            n_classes=args.synthetic, n_features=32, n_max=400, imbalance=100,
            separation=1.0, seed=1000 + seed,
        )  # fmt: skip
        return d.X_train, d.y_train, d.X_test, d.y_test
    train, test = load_features(args.train), load_features(args.test)
    return train.X, train.y, test.X, test.y


if __name__ == "__main__":
    main()
