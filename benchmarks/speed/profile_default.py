"""Where the default's time goes: seconds of every fold fit of the selection, by round
and configuration, and of the final fit, against one Balanced Softmax fit measured in
the same process.

The selection's fold fits (``dlsa.selection.folds._fit_fold``) and the final
``fit_cascade`` are wrapped with timers; everything runs in this process (``n_jobs``
None), so the seconds add up to the fit's wall time less the rule's bookkeeping::

    OMP_NUM_THREADS=2 python -m benchmarks.speed.profile_default runs/panel/fm-digits \\
        [--seed 0] [--val] [--json runs/profile.json]

A set is a folder with ``train.h5`` and ``test.h5`` (and ``val.h5`` for ``--val``), or
a folder of ``bench_imagenet_lt`` (``X.npy``, ``y.npy``, ``X_val.npy`` ...). Progress
lines of every phase go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

import dlsa.estimator.final_fit as final_fit
import dlsa.selection.folds as folds
from dlsa import DLSAClassifier
from dlsa.cascade import CascadeSpec
from dlsa.engine.progress import PROGRESS_LOGGER
from dlsa.io.features import load_features
from dlsa.selection.rule import describe
from dlsa.stage2.bases import base_params, make_base


def _timed(records: list[dict[str, Any]], label: str, fn: Any) -> Any:
    """``fn`` wrapped: each call appends its seconds under ``label(args)``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            records.append({"what": label, "args": args, "seconds": time.perf_counter() - start})

    return wrapper


def _fold_name(spec: CascadeSpec) -> str:
    """The name of a fold fit's configuration (:func:`describe`, with the base's
    hyper-parameters that differ from its defaults), e.g. ``"logreg (inner_folds=0)"``."""
    default = base_params(make_base(spec.base.name))
    own = {k: v for k, v in base_params(spec.base).items() if v != default[k]}
    params = {"base": spec.base.name, "base_params": own, "depth": spec.depth}
    return describe(params | {"routed_share": spec.routed_share})


def _sets(folder: Path, val: bool) -> tuple[Any, Any, Any]:
    """(train, test, val or None) of a set folder: ``train.h5``, ``test.h5``, ``val.h5``,
    or the ``X.npy``, ``y.npy``, ``X_test.npy`` ... of ``bench_imagenet_lt``."""
    if not (folder / "X.npy").exists():
        names = ["train", "test"] + (["val"] if val else [])
        sets = [load_features(folder / f"{name}.h5") for name in names]
        return sets[0], sets[1], sets[2] if val else None
    sets = [
        SimpleNamespace(X=np.load(folder / f"X{end}.npy"), y=np.load(folder / f"y{end}.npy"))
        for end in ("", "_test", "_val")
    ]
    return sets[0], sets[1], sets[2] if val else None


def profile(folder: Path, seed: int, val: bool) -> dict[str, Any]:
    """Seconds of one Balanced Softmax fit, of the default's fit and of each of its
    parts on the set in ``folder``."""
    train, test, evidence = _sets(folder, val)
    start = time.perf_counter()
    bsm = DLSAClassifier(depth=0, base="balsoftmax", selection=None, random_state=seed)
    bsm.fit(train.X, train.y)
    one = time.perf_counter() - start
    records: list[dict[str, Any]] = []
    fit_fold, fit_cascade = folds._fit_fold, final_fit.fit_cascade
    folds._fit_fold = _timed(records, "fold", fit_fold)
    final_fit.fit_cascade = _timed(records, "final", fit_cascade)
    try:
        clf = DLSAClassifier(random_state=seed)
        start = time.perf_counter()
        if evidence is None:
            clf.fit(train.X, train.y)
        else:
            clf.fit(train.X, train.y, X_val=evidence.X, y_val=evidence.y)
        total = time.perf_counter() - start
    finally:
        folds._fit_fold, final_fit.fit_cascade = fit_fold, fit_cascade
    parts: dict[str, float] = defaultdict(float)
    fits: dict[str, int] = defaultdict(int)
    for rec in records:
        name = rec["what"]
        if name == "fold":
            name = _fold_name(rec["args"][0])
        parts[name] += rec["seconds"]
        fits[name] += 1
    accuracy = float((clf.predict(test.X) == test.y).mean())
    return {
        "set": folder.name, "seed": seed, "val": val, "one_bsm_fit": one,
        "default": total, "ratio": total / one, "chosen": clf.selection_["chosen"],
        "accuracy": accuracy,
        "parts": sorted(
            ({"what": k, "fits": fits[k], "seconds": v} for k, v in parts.items()),
            key=lambda r: -r["seconds"],
        ),
    }  # fmt: skip


def show(result: dict[str, Any]) -> None:
    """Print the profile as a table."""
    print(
        f"{result['set']} seed {result['seed']}{' --val' if result['val'] else ''}: "
        f"default {result['default']:.1f} s = {result['ratio']:.0f} x one Balanced Softmax "
        f"fit ({result['one_bsm_fit']:.2f} s); chosen {result['chosen']}"
    )
    print("| part | fits | seconds | share |\n|---|--:|--:|--:|")
    for part in result["parts"]:
        share = part["seconds"] / result["default"]
        print(f"| {part['what']} | {part['fits']} | {part['seconds']:.1f} | {share:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val", action="store_true", help="use the set's val.h5")
    parser.add_argument("--json", type=Path, help="append each profile as a JSON line")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)
    for folder in args.sets:
        result = profile(folder, args.seed, args.val)
        show(result)
        if args.json:
            with args.json.open("a", encoding="utf-8") as f:
                f.write(json.dumps(result, default=np.asarray) + "\n")


if __name__ == "__main__":
    main()
