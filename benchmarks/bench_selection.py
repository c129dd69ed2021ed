"""Seconds of the default fit (selection + final fit) against the same fit as it was
before issue 22's step 5, in the same run, and whether the two choose and predict the
same.

The reference fits every candidate on every fold (``selection.drop_behind=None``) and
computes M2M's translation gradient with autograd; the default drops candidates that are
clearly behind after a fold and uses the closed-form gradient (bit-identical). Each set
is a folder with ``train.h5`` and ``test.h5`` (``benchmarks/panel.py`` writes them under
``runs/panel``); the two fits of a set and seed run one after the other, on one torch
thread, so that the machine's load is alike for both.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_selection.py runs/panel/fmd-tail-s0 \\
        runs/panel/fm-digits --seeds 0,1,2 [--json runs/bench_selection.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dlsa import DLSAClassifier
from dlsa.config import DLSAConfig
from dlsa.io.features import load_features
from dlsa.stage2.bases import m2m


@contextlib.contextmanager
def autograd_translation() -> Iterator[None]:
    """M2M's translation gradient by autograd, as before the closed form."""
    closed = m2m._LinearGradient.of
    m2m._LinearGradient.of = classmethod(lambda cls, *args: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        m2m._LinearGradient.of = closed  # type: ignore[method-assign]


def timed_fit(train, seed: int, reference: bool) -> tuple[DLSAClassifier, float]:
    cfg = dataclasses.replace(DLSAConfig(), random_state=seed)
    if reference:
        assert cfg.selection is not None
        cfg = dataclasses.replace(
            cfg, selection=dataclasses.replace(cfg.selection, drop_behind=None)
        )
    start = time.perf_counter()
    with autograd_translation() if reference else contextlib.nullcontext():
        clf = DLSAClassifier(**cfg.estimator_params()).fit(train.X, train.y)
    return clf, time.perf_counter() - start


def dropped(clf: DLSAClassifier) -> int:
    return sum(
        row.get("dropped", False) for rnd in clf.selection_["rounds"] for row in rnd["candidates"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders with train.h5, test.h5")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--json", type=Path, default=None, help="append one record per run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| set | seed | reference | default | ratio | dropped | same choice | same predictions |"
    )
    print("|---|--:|--:|--:|--:|--:|---|---|")
    totals = [0.0, 0.0]
    for folder in args.sets:
        train, test = load_features(folder / "train.h5"), load_features(folder / "test.h5")
        for seed in (int(s) for s in args.seeds.split(",")):
            ref, t_ref = timed_fit(train, seed, reference=True)
            new, t_new = timed_fit(train, seed, reference=False)
            totals[0] += t_ref
            totals[1] += t_new
            same = ref.selection_["chosen"] == new.selection_["chosen"]
            pred = np.array_equal(ref.decision_function(test.X), new.decision_function(test.X))
            print(f"| {folder.name} | {seed} | {t_ref:.1f} s | {t_new:.1f} s | "
                  f"{t_ref / t_new:.2f}x | {dropped(new)} | {'yes' if same else 'no'} | "
                  f"{'yes' if pred else 'no'} |", flush=True)  # fmt: skip
            if args.json is not None:
                record = {"set": folder.name, "seed": seed, "reference_s": t_ref,
                          "default_s": t_new, "chosen_reference": ref.selection_["chosen"],
                          "chosen_default": new.selection_["chosen"], "same_predictions": pred,
                          "dropped": dropped(new)}  # fmt: skip
                with args.json.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
    print(
        f"| all | | {totals[0]:.0f} s | {totals[1]:.0f} s | {totals[0] / totals[1]:.2f}x | | | |"
    )


if __name__ == "__main__":
    main()
