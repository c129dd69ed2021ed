"""Estimating the deployment prior under label shift (``--test-prior estimate``).

A depth-0 Balanced Softmax model is fitted on a long-tailed synthetic training set (one
Gaussian mode per class, so a linear head is well specified) and calibrated out of fold
(which also gives BBSE its held-out confusion matrix and EM its bias-corrected
temperature scaling and the null of its no-shift test). Test priors are drawn from a
symmetric Dirichlet at two concentrations; for each, a test set is resampled from a
large balanced pool and the prior is set to uniform / train / EM (on BCTS posteriors,
used when its no-shift test rejects: ``estimate``; always used: ``estimate-ungated``;
on the temperature alone, the model's BCTS set aside, tested against Wilks' chi-square:
``estimate-t-only``) / BBSE / the oracle (the drawn prior). Printed: mean L1 error of
the prior, mean accuracy (%) and the share of draws whose shift EM's test detected;
then, on the whole balanced pool, each estimate's L1 distance from uniform and the
accuracy change (points) against the uniform prior. With ``--seeds``, the Dirichlet
means over the seeds and the pool's numbers seed by seed (docs/method.md: ``--seeds
$(seq 0 11)``, about 2 minutes).

    PYTHONPATH=src OMP_NUM_THREADS=1 python -m benchmarks.studies.prior_estimate
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from dlsa import DLSAClassifier
from dlsa.config import HeadConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.estimator.prior_estimate import set_estimated_prior

SETTINGS = (
    "uniform", "train", "estimate", "estimate-ungated", "estimate-t-only", "estimate-bbse",
    "oracle",
)  # fmt: skip
ESTIMATES = ("estimate", "estimate-ungated", "estimate-t-only", "estimate-bbse")


def fitted_model(data: Any, epochs: int) -> DLSAClassifier:
    """The calibrated depth-0 Balanced Softmax model of the benchmark."""
    head = HeadConfig(epochs=epochs)
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, head=head)
    clf.fit(data.X_train, data.y_train)
    return clf.calibrate_out_of_fold(data.X_train, data.y_train)


def resample(
    y_pool: np.ndarray, prior: np.ndarray, n_rows: int, rng: np.random.Generator
) -> np.ndarray:
    """Row indices (n_rows,) of the pool with labels y_pool (P,) drawn with class
    frequencies ``prior`` (C,) (with replacement)."""
    per_class = rng.multinomial(n_rows, prior)
    return np.concatenate([
        rng.choice(np.flatnonzero(y_pool == c), size=k, replace=True)
        for c, k in enumerate(per_class) if k
    ])  # fmt: skip


def set_prior(clf: DLSAClassifier, setting: str, X: np.ndarray, truth: np.ndarray) -> None:
    """Set the test prior of ``setting`` (``truth`` (C,) for the oracle) on the rows X."""
    if setting == "oracle":
        clf.set_test_prior(truth)
    elif setting == "estimate-ungated":
        set_estimated_prior(clf, [X], "estimate", level=None)
    elif setting == "estimate-t-only":
        bcts, clf.bcts_ = clf.bcts_, None
        try:
            clf.set_test_prior("estimate", X)
        finally:
            clf.bcts_ = bcts
    else:
        clf.set_test_prior(setting, X)


def detected(clf: DLSAClassifier) -> float:
    """1 if the estimate just set passed its no-shift test (or was not tested), else 0."""
    test = (clf.test_prior_estimate_ or {}).get("shift_test") or {}
    return float(test.get("shift_detected", True))


def evaluate_draw(
    clf: DLSAClassifier, X: np.ndarray, y: np.ndarray, truth: np.ndarray
) -> dict[str, tuple[float, float, float]]:
    """Per setting, (L1 error of the prior (C,), accuracy, :func:`detected`) on the test
    rows X (N, D), y (N,) whose class frequencies are ``truth``."""
    out = {}
    n = len(clf.classes_)
    for setting in SETTINGS:
        set_prior(clf, setting, X, truth)
        prior = np.full(n, 1.0 / n) if clf.test_prior_ is None else clf.test_prior_
        l1, accuracy = float(np.abs(prior - truth).sum()), float((clf.predict(X) == y).mean())
        out[setting] = (l1, accuracy, detected(clf))
    clf.set_test_prior(None)
    return out


def balanced_pool(clf: DLSAClassifier, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per estimate, (L1 from uniform, accuracy change against the uniform prior,
    :func:`detected`) on the balanced rows X (N, D), y (N,)."""
    n = len(clf.classes_)
    plain = float((clf.set_test_prior(None).predict(X) == y).mean())
    out = {}
    for setting in ESTIMATES:
        set_prior(clf, setting, X, np.full(n, 1.0 / n))
        accuracy = float((clf.predict(X) == y).mean())
        l1 = np.abs(clf.test_prior_ - 1.0 / n).sum()
        out[setting] = np.array([l1, accuracy - plain, detected(clf)])
    clf.set_test_prior(None)
    return out


def run(args: argparse.Namespace) -> dict[Any, dict[str, np.ndarray]]:
    """Mean (L1, accuracy) per concentration and setting; under "pool", what
    :func:`balanced_pool` measures on the whole pool."""
    data = make_long_tailed_features(
        n_classes=args.classes, n_features=args.features, n_max=args.n_max,
        imbalance=args.imbalance, n_test_per_class=args.pool_per_class, seed=args.seed,
        separation=args.separation, modes_per_class=1,
    )  # fmt: skip
    clf = fitted_model(data, args.epochs)
    rng = np.random.default_rng(args.seed + 1)
    table = {}
    for alpha in args.alphas:
        rows = []
        for _ in range(args.draws):
            truth = rng.dirichlet(np.full(args.classes, alpha))
            keep = resample(data.y_test, truth, args.rows, rng)
            truth = np.bincount(data.y_test[keep], minlength=args.classes) / len(keep)
            rows.append(evaluate_draw(clf, data.X_test[keep], data.y_test[keep], truth))
        table[alpha] = {s: np.mean([r[s] for r in rows], axis=0) for s in SETTINGS}
    table["pool"] = balanced_pool(clf, data.X_test, data.y_test)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--n-max", type=int, default=1000)
    parser.add_argument("--imbalance", type=float, default=20.0)
    parser.add_argument("--separation", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--pool-per-class", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=5000, help="test rows per draw")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", help="several seeds (overrides --seed)")
    args = parser.parse_args()
    seeds = args.seeds or [args.seed]
    tables = [run(argparse.Namespace(**{**vars(args), "seed": seed})) for seed in seeds]
    pools = [table.pop("pool") for table in tables]
    print(f"{args.draws} Dirichlet draws per concentration, {args.rows} test rows each", end="")
    print(f"; means over seeds {seeds}" if len(seeds) > 1 else "")
    print("| Dirichlet alpha | prior | mean L1 error | mean accuracy (%) | shift detected |")
    print("|---|---|---|---|---|")
    for alpha in tables[0]:
        for setting in SETTINGS:
            l1, acc, found = np.mean([table[alpha][setting] for table in tables], axis=0)
            shown = f"{found:.0%}" if setting in ("estimate", "estimate-t-only") else ""
            print(f"| {alpha:g} | {setting} | {l1:.3f} | {100 * acc:.2f} | {shown} |")
    print(f"\nthe whole balanced pool ({args.pool_per_class} a class): L1 from uniform, ", end="")
    print("accuracy change (points); * EM's test found a shift")
    print_pools(seeds, pools)


def print_pools(seeds: list[int], pools: list[dict[str, np.ndarray]]) -> None:
    """The pool's numbers per seed (:func:`balanced_pool`); with several seeds, the mean,
    the worst (largest L1, largest drop) and the seeds within the bar of 0.1 point."""
    print("| seed | " + " | ".join(ESTIMATES) + " |")
    print("|---" * (len(ESTIMATES) + 1) + "|")
    for seed, pool in zip(seeds, pools, strict=True):
        print(f"| {seed} | " + " | ".join(pool_cell(s, *pool[s]) for s in ESTIMATES) + " |")
    if len(seeds) < 2:
        return
    for name, far, low in (("mean", np.mean, np.mean), ("worst", np.max, np.min)):
        cells = []
        for setting in ESTIMATES:
            l1 = far([pool[setting][0] for pool in pools])
            change = low([pool[setting][1] for pool in pools])
            cells.append(f"{l1:.3f}, {100 * change:+.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    within = [sum(pool[s][1] >= -0.001 for pool in pools) for s in ESTIMATES]
    print("| within 0.1 point | " + " | ".join(f"{k} of {len(seeds)}" for k in within) + " |")


def pool_cell(setting: str, l1: float, change: float, found: float) -> str:
    """One pool cell: L1, change in points, a star if EM's no-shift test found a shift."""
    tested = setting in ("estimate", "estimate-t-only")
    return f"{l1:.3f}, {100 * change:+.2f}" + ("*" if tested and found else "")


if __name__ == "__main__":
    main()
