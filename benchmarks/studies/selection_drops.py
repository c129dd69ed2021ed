"""How often dropping candidates between folds (``selection.drop_behind``) changes the
selection's choice, on simulated out-of-fold hits.

The sets and candidates are those of ``benchmarks/studies/selection_nulls.py`` (long-tailed
classes, candidates correlated with the reference), with three random folds and a mix of
true gains: most candidates worse than the reference by 0 to 6 points, one better by
``--better`` points (0: none). The same hits are judged twice: every candidate on every
fold, and with candidates dropped after fold 1 and 2 by the drop rule
(:class:`dlsa.selection.rule.DropRule`; ``--rule futile``, the default: even the
``z``-standard-error upper bound of the predicted final gain is below the bar;
``--rule behind``: the gain or rarer-half gain is below ``-z`` standard errors); a
dropped candidate keeps the hits of its folds so far. "changed" is the share of sets where the
two choices differ; "dropped" the mean share of candidates dropped.

Usage::

    python -m benchmarks.studies.selection_drops --sets 300 [--rule behind]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from benchmarks.common import as_candidates, simulated_classes
from dlsa.selection.rule import Candidate, DropRule, choose, ruled_out

PROFILES = {
    "20 classes, 2000 ... 10": (20, 2000, 10),
    "200 classes, 300 ... 3": (200, 300, 3),
}


def simulate(profile, m: int, better: float, rng: np.random.Generator):
    """Labels, folds, candidates (the reference first) and each candidate's true balanced
    accuracy: candidate j's accuracy on each class is the reference's minus a gap drawn
    from 0 ... 6 points (candidate 1: plus ``better``), its hit a copy of the
    reference's with probability 0.3."""
    n_classes = profile[0]
    y, p_class = simulated_classes(profile)
    p = p_class[y]
    ref = rng.random(y.size) < p
    hits, shifts = [ref], [0.0]
    for j in range(1, m + 1):
        shift = better if (j == 1 and better) else -rng.uniform(0.0, 0.06)
        shifts.append(shift)
        own = rng.random(y.size) < np.clip(p + shift, 0.0, 1.0)
        copy = rng.random(y.size) < 0.3
        hits.append(np.where(copy & (ref if shift > 0 else True), ref, own))
    cands = as_candidates(hits, y, n_classes)
    folds = np.array_split(rng.permutation(y.size), 3)
    truth = np.array([np.clip(p_class + t, 0.0, 1.0).mean() for t in shifts])
    return cands, y, n_classes, folds, truth


def raced(cands, y, n_classes, folds, rule: DropRule) -> list[Candidate]:
    """The candidates as the folds-in-order selection leaves them."""
    seen = np.zeros(y.size, dtype=bool)
    out = list(cands)
    alive = set(range(1, len(cands)))
    for f in range(len(folds) - 1):
        seen[folds[f]] = True
        for j in sorted(alive):
            part = dataclasses.replace(cands[j], seen=seen.copy())
            if ruled_out([part], cands[0].pred, y, n_classes, rule):
                alive.discard(j)
                out[j] = part
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--z", type=float, default=2.0)
    parser.add_argument("--rule", choices=["futile", "behind"], default="futile")
    args = parser.parse_args()
    rule = DropRule(z=args.z, rule=args.rule, margin=2.0, min_gain=0.002)
    print(f"m = {args.candidates} departures, {args.sets} sets per cell, z = {args.z}, "
          f"rule {args.rule}\n")  # fmt: skip
    print("| classes | better candidate | departs (all folds) | changed | changed to a worse "
          "one | dropped |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|")
    rng = np.random.default_rng(0)
    for name, profile in PROFILES.items():
        for better in (0.0, 0.01, 0.02, 0.05):
            changed = worse = departs = 0
            dropped = []
            for _ in range(args.sets):
                cands, y, n_classes, folds, truth = simulate(profile, args.candidates, better, rng)
                kw = dict(margin=2.0, min_gain=0.002, multiplicity="max-t")
                full = choose(cands, y, n_classes, **kw)[0]
                left = raced(cands, y, n_classes, folds, rule)
                raced_choice = choose(left, y, n_classes, **kw)[0]
                changed += raced_choice != full
                worse += truth[raced_choice] < truth[full]
                departs += full != 0
                dropped.append(np.mean([c.seen is not None for c in left[1:]]))
            shares = [f"{k / args.sets:.1%}" for k in (departs, changed, worse)]
            cells = [name, f"{100 * better:+.0f} points", *shares, f"{np.mean(dropped):.0%}"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
