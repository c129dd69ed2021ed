"""How often the selection rule departs from the reference when no candidate is better
in truth: simulated out-of-fold hits, the per-candidate rule and the max-t rule.

Each simulated training set has long-tailed classes; the reference's out-of-fold hit of a
sample is a Bernoulli draw with its class's accuracy (head classes 95%, the rarest 50%).
Every other candidate copies the reference's hit with probability ``rho`` and otherwise
draws its own with the same accuracy: equal in truth, correlated as models trained on the
same folds are. "departs" is the share of simulated sets where the rule chose anything
but the reference (target: <= 5%). "power" gives one candidate +2 points of accuracy on
every class and counts how often the rule departs (to it or to another).

Usage::

    python -m benchmarks.studies.selection_nulls --sets 300
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import as_candidates, simulated_classes
from dlsa.selection.rule import choose

PROFILES = {
    "20 classes, 2000 ... 10": (20, 2000, 10),
    "200 classes, 300 ... 3": (200, 300, 3),
    "10 classes, 5000 ... 50": (10, 5000, 50),
}


def simulate(profile, m: int, rho: float, better: float, rng: np.random.Generator):
    n_classes = profile[0]
    y, acc = simulated_classes(profile)
    p = acc[y]
    ref = rng.random(y.size) < p
    hits = [ref]
    for j in range(m):
        own = rng.random(y.size) < np.minimum(p + (better if j == 0 else 0.0), 1.0)
        copy = rng.random(y.size) < rho
        if j == 0 and better:  # a better candidate copies only the reference's hits
            copy &= ref
        hits.append(np.where(copy, ref, own))
    return as_candidates(hits, y, n_classes), y, n_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=300, help="simulated sets per cell")
    parser.add_argument("--candidates", type=int, default=16, help="departures m")
    args = parser.parse_args()
    rules = ("per-candidate", "max-t")
    print(f"m = {args.candidates} departures, {args.sets} simulated sets per cell\n")
    print("| classes | rho | " + " | ".join(f"{r}: departs | {r}: power" for r in rules) + " |")
    print("|---|--:|" + "--:|--:|" * len(rules))
    for name, profile in PROFILES.items():
        for rho in (0.3, 0.7):
            cells = []
            for rule in rules:
                rates = []
                for better in (0.0, 0.02):
                    rng = np.random.default_rng(0)
                    moved = 0
                    for _ in range(args.sets):
                        cands, y, c = simulate(profile, args.candidates, rho, better, rng)
                        idx, _, _ = choose(
                            cands, y, c, margin=2.0, min_gain=0.002, multiplicity=rule
                        )
                        moved += idx != 0
                    rates.append(f"{100 * moved / args.sets:.1f}%")
                cells += rates
            print(f"| {name} | {rho} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
