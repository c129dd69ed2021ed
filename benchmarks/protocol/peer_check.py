"""The default against Balanced Softmax alone and a tuned scikit-learn peer, per set and
seed, with and without a validation split.

The peer is what a user would write in ten lines: ``StandardScaler`` +
``LogisticRegressionCV(Cs=[1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1], cv=3,
class_weight="balanced", scoring="balanced_accuracy")``, C chosen on the training data
only. Each model is fitted on ``train.h5`` (or ``feature_train.h5``) and evaluated once on
the test file; ``--val`` runs also decide on ``val.h5`` where the set has one. Records are
cached per (set, model, seed) under ``--out``; an interrupted run resumes.

The default runs as ``dlsa fit`` runs it: ``selection.train_features`` follows the
training file's recorded provenance (``backbone_trained_on``; "unknown" when absent).

The table's checks: the default never below Balanced Softmax by more than 0.1 overall
or 1.0 few-shot on any seed; its mean at or above the peer's.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.protocol.peer_check --sets runs/panel/fmd-tail-s0 \\
        ../shared/cases/fa20 --seeds 0,1,2 --out runs/peer
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import set_files
from dlsa import DLSAClassifier
from dlsa.analysis.peer import fit_peer
from dlsa.cli.evidence import train_features_from
from dlsa.config import DLSAConfig, SelectionConfig
from dlsa.io.features import load_features
from dlsa.metrics.accuracy import shot_accuracy

MODELS = ("balsoftmax", "default", "default-val", "peer")


def _peer(X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, dict]:
    model = fit_peer(X, y)
    return model.predict(X_test), {"C": float(np.ravel(model[-1].C_)[0])}


def run_one(folder: Path, model: str, seed: int) -> dict | None:
    files = set_files(folder)
    if model == "default-val" and "val" not in files:
        return None
    train, test = load_features(files["train"]), load_features(files["test"])
    classes = np.unique(train.y)
    y, y_test = np.searchsorted(classes, train.y), np.searchsorted(classes, test.y)
    start = time.perf_counter()
    extra: dict = {}
    if model == "peer":
        pred, extra = _peer(train.X, y, test.X)
    else:  # as `dlsa fit`: the training file's provenance decides the evidence's guard
        sel = SelectionConfig(train_features=train_features_from(train.provenance))
        cfg = DLSAConfig(random_state=seed, selection=sel)
        if model == "balsoftmax":
            cfg = DLSAConfig(depth=0, base="balsoftmax", selection=None, random_state=seed)
        fit_kw = {}
        if model == "default-val":
            val = load_features(files["val"])
            fit_kw = {"X_val": val.X, "y_val": np.searchsorted(classes, val.y)}
        clf = DLSAClassifier(**cfg.estimator_params()).fit(train.X, y, **fit_kw)
        pred = clf.predict(test.X)
        extra = {"chosen": (clf.selection_ or {}).get("chosen")}
    seconds = time.perf_counter() - start
    counts = np.bincount(y, minlength=len(classes))
    return {"metrics": shot_accuracy(pred, y_test, counts), "seconds": seconds, **extra}


def cached(out: Path, folder: Path, model: str, seed: int) -> dict | None:
    path = out / folder.name / f"{model}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    record = run_one(folder, model, seed)
    if record is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"{folder.name} {model} s{seed}: {100 * record['metrics']['overall']:.2f} "
          f"({record['seconds']:.0f} s) {record.get('chosen') or ''}", flush=True)  # fmt: skip
    return record


def _delta(runs: list[dict], refs: list[dict], key: str) -> list[float]:
    return [100 * (r["metrics"][key] - b["metrics"][key])
            for r, b in zip(runs, refs, strict=True) if r["metrics"][key] is not None]  # fmt: skip


def row(out: Path, folder: Path, seeds: list[int]) -> list[str]:
    rec = {m: [cached(out, folder, m, s) for s in seeds] for m in MODELS}
    bsm, peer = rec["balsoftmax"], rec["peer"][0]  # the peer does not depend on the seed
    cells = [folder.name, f"{100 * np.mean([r['metrics']['overall'] for r in bsm]):.2f}",
             f"{100 * peer['metrics']['overall']:.2f} (C {peer['C']:g})"]  # fmt: skip
    for model in ("default", "default-val"):
        runs = rec[model]
        if any(r is None for r in runs):
            cells += ["-", "-", "-"]
            continue
        mean = 100 * np.mean([r["metrics"]["overall"] for r in runs])
        gain, few = _delta(runs, bsm, "overall"), _delta(runs, bsm, "few")
        worst = f"{min(gain):+.2f} / {min(few):+.1f}" if few else f"{min(gain):+.2f} / -"
        chosen = "; ".join(str(r["chosen"]) for r in runs)
        cells += [f"{mean:.2f} ({mean - 100 * peer['metrics']['overall']:+.2f})", worst, chosen]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True, help="set folders")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/peer")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    header = ["set", "BSM", "peer", "default (- peer)", "worst vs BSM: overall / few",
              "default chose", "with --val (- peer)", "worst vs BSM", "--val chose"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for folder in map(Path, args.sets):
        lines.append("| " + " | ".join(row(Path(args.out), folder, seeds)) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
