"""Seconds of the default (out-of-fold selection + final fit) with its fold fits in one
process against ``n_jobs`` worker processes, and whether the two predict the same.

Each set is a folder with ``train.h5`` and ``test.h5`` (``benchmarks/protocol/panel.py`` writes
them under ``runs/panel``). The one-process run uses one torch thread, as each worker
does on a machine with ``n_jobs`` cores, so the predictions should be bit-identical.

Usage::

    python -m benchmarks.speed.bench_selection_jobs runs/panel/fm-digits runs/panel/emb-c100-d512
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dlsa import DLSAClassifier
from dlsa.io.features import load_features


def timed_fit(train, n_jobs: int | None) -> tuple[DLSAClassifier, float]:
    start = time.perf_counter()
    clf = DLSAClassifier(n_jobs=n_jobs).fit(train.X, train.y)
    return clf, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders with train.h5, test.h5")
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| set | one process | n_jobs={args.n_jobs} | ratio | same predictions |")
    print("|---|--:|--:|--:|---|")
    for folder in args.sets:
        train, test = load_features(folder / "train.h5"), load_features(folder / "test.h5")
        one, t_one = timed_fit(train, None)
        pool, t_pool = timed_fit(train, args.n_jobs)
        same = np.array_equal(one.decision_function(test.X), pool.decision_function(test.X))
        print(f"| {folder.name} | {t_one:.1f} s | {t_pool:.1f} s | {t_one / t_pool:.2f}x "
              f"| {'yes' if same else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
