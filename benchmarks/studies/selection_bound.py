"""How far the default's cost can fall without changing its fits: the default fit of a
reference tree (the code before the selection-cost work) and of this tree, beside an oracle
that knows the answer and fits only the reference base and the chosen candidate (three
folds each, then the final fit).

No elimination rule, however clever, can cost less than the oracle while keeping the
same folds and the same training of each fit: the winner has to be fitted on every fold
to be chosen, and the chosen model on all the data. If the oracle's time is above a
third of the reference's, a third can only be reached by changing the fits themselves
(fewer folds, shorter or lower-precision training), i.e. the evidence and the model.

Each fit runs in its own process on one torch thread, one after the other::

    git worktree add /tmp/dlsa-ref 9188b45     # the tree before the selection-cost work
    OMP_NUM_THREADS=1 python -m benchmarks.studies.selection_bound runs/panel/fmd-tail-s0 \\
        --reference-src /tmp/dlsa-ref/src [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from benchmarks.common import SRC, in_process

FIT = """
import json, sys, time
import torch
from dlsa import DLSAClassifier
from dlsa.config import DLSAConfig
try:
    from dlsa.io.features import load_features
except ImportError:  # a reference tree from before the layer folders
    from dlsa.features import load_features
torch.set_num_threads(1)
folder, seed, only = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
train = load_features(folder + "/train.h5")
selection, depth = "default", 1
if only is not None:  # the oracle: the reference and the chosen candidate alone
    import dataclasses
    cfg = DLSAConfig().selection
    selection = dataclasses.replace(cfg, bases=tuple(only["bases"]),
                                    proportions=tuple(only["proportions"]) or cfg.proportions)
    depth = only["depth"]
start = time.perf_counter()
clf = DLSAClassifier(random_state=seed, selection=selection, depth=depth).fit(train.X, train.y)
print(json.dumps({"seconds": time.perf_counter() - start, "chosen": clf.selection_["chosen"]}))
"""


def fit(src: Path, folder: Path, seed: int, only: dict | None = None) -> dict:
    """The fit of ``folder``'s train.h5 by the dlsa in ``src``, in a new process."""
    return in_process(FIT, src, str(folder), str(seed), json.dumps(only))


def oracle(chosen: str, reference: str = "balsoftmax") -> dict:
    """The selection that fits only ``reference`` and the chosen candidate, from the
    chosen candidate's name (e.g. ``"ride + DLSA (depth 1, 30% routed)"``)."""
    base = re.split(r" \(| \+ ", chosen, maxsplit=1)[0]
    share = re.search(r"DLSA \(depth (\d+), (\d+)% routed\)", chosen)
    return {
        "bases": list(dict.fromkeys([reference, base])),
        "proportions": [] if share is None else [int(share[2]) / 100],
        "depth": 0 if share is None else int(share[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders with train.h5")
    parser.add_argument("--reference-src", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    print("| set | seed | chosen | same as the reference's | reference | this tree | oracle "
          "| this / ref | oracle / ref |")  # fmt: skip
    print("|---|--:|---|---|--:|--:|--:|--:|--:|")
    for folder in args.sets:
        for seed in (int(s) for s in args.seeds.split(",")):
            ref = fit(args.reference_src, folder, seed)
            new = fit(args.src, folder, seed)
            bound = fit(args.src, folder, seed, oracle(new["chosen"]))
            if bound["chosen"] != new["chosen"]:
                raise SystemExit(f"{folder}: the oracle chose {bound['chosen']!r}")
            t_ref, t_new, t_bound = ref["seconds"], new["seconds"], bound["seconds"]
            times = [f"{t:.1f} s" for t in (t_ref, t_new, t_bound)]
            ratios = [f"{t_new / t_ref:.2f}", f"{t_bound / t_ref:.2f}"]
            same = "yes" if ref["chosen"] == new["chosen"] else f"no: {ref['chosen']}"
            cells = [folder.name, seed, new["chosen"], same, *times, *ratios]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
