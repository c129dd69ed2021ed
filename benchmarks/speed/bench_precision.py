"""Does bfloat16 training keep accuracy? DLSA fitted with ``precision="fp32"`` and with
``"bf16"`` (flow filter and classifiers' training steps), same sets, same seeds.

Model: the default configuration without selection, Balanced Softmax + DLSA at depth 1
(``DLSAConfig(selection=None, base="balsoftmax")``), so that DLSA is always on and
every stage trains. For each set of the transfer panel (``benchmarks/protocol/panel.py`` builds
them into ``runs/panel``) and seed, the table gives the test accuracy of both (overall
and few-shot, in points), their paired difference, and the fit time of each on this
device. The sets are fixed below, before any number was seen; no setting is chosen by
this table.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_precision --panel runs/panel
    python -m benchmarks.speed.bench_precision --panel runs/panel --device cuda --precision tf32
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import evaluate
from dlsa.config import DLSAConfig
from dlsa.io.features import load_features

SETS = ("fm-ce-r500", "fm-digits", "emb-c100-d512", "emb-c100-d2048")
"""Two Fashion-MNIST sets and two synthetic embedding sets (D = 512 and 2048), from both
halves of the panel."""


def fit_and_score(config: DLSAConfig, folder: Path) -> tuple[float, float, float]:
    """Test accuracy, few-shot accuracy (points; NaN without few-shot classes) and fit
    seconds of ``config`` on the set in ``folder``."""
    train, test = load_features(folder / "train.h5"), load_features(folder / "test.h5")
    start = time.perf_counter()
    clf = DLSAClassifier(**config.estimator_params()).fit(train.X, train.y)
    seconds = time.perf_counter() - start
    metrics = evaluate(clf, test.X, test.y)["metrics"]
    few = metrics.get("few")
    return 100 * metrics["overall"], np.nan if few is None else 100 * few, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", type=Path, default=Path("runs/panel"))
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", help="compared with fp32")
    args = parser.parse_args()
    base = dataclasses.replace(DLSAConfig(), selection=None, base="balsoftmax")
    base = dataclasses.replace(base, device=args.device)
    low = dataclasses.replace(
        base,
        flow_filter=dataclasses.replace(base.flow_filter, precision=args.precision),
        head=dataclasses.replace(base.head, precision=args.precision),
    )
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    p = args.precision
    print(
        f"| set | seed | fp32 overall | {p} overall | diff | fp32 few | {p} few | diff "
        f"| fp32 s | {p} s |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    summary = {}
    for name in args.sets:
        diffs, few_diffs, ratio = [], [], []
        for seed in args.seeds:
            ref = fit_and_score(dataclasses.replace(base, random_state=seed), args.panel / name)
            out = fit_and_score(dataclasses.replace(low, random_state=seed), args.panel / name)
            diffs.append(out[0] - ref[0])
            few_diffs.append(out[1] - ref[1])
            ratio.append(out[2] / ref[2])
            print(
                f"| {name} | {seed} | {ref[0]:.2f} | {out[0]:.2f} | {diffs[-1]:+.2f} | "
                f"{ref[1]:.2f} | {out[1]:.2f} | {few_diffs[-1]:+.2f} | {ref[2]:.1f} | "
                f"{out[2]:.1f} |",
                flush=True,
            )
        summary[name] = (diffs, few_diffs, ratio)
    print(f"\n| set | {p} - fp32 overall | few | time {p} / fp32 |")
    print("|---|--:|--:|--:|")
    for name, (diffs, few_diffs, ratio) in summary.items():
        few = "-" if np.isnan(few_diffs).all() else f"{np.mean(few_diffs):+.2f}"
        print(
            f"| {name} | {np.mean(diffs):+.2f} ± {np.std(diffs):.2f} | {few} | "
            f"{np.mean(ratio):.2f}x |"
        )


if __name__ == "__main__":
    main()
