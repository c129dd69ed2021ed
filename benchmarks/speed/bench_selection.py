"""Seconds of the default fit (selection + final fit) of this tree against the same fit
by a reference tree (the code before a change), in the same run, and whether the two
choose and predict the same.

Each fit runs in its own process on one torch thread, the reference and this tree one
after the other for every set and seed, so that the machine's load is alike for both.
The reference is any source folder of dlsa, e.g. a worktree of an older commit::

    git worktree add /tmp/dlsa-ref 84c42e0      # before the drop rule and shared phases
    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_selection runs/panel/fmd-tail-s0 \\
        runs/panel/fm-digits --reference-src /tmp/dlsa-ref/src --seeds 0,1,2 \\
        [--json runs/bench_selection.jsonl]

Each set is a folder with ``train.h5`` and ``test.h5`` (``benchmarks/protocol/panel.py`` writes
them under ``runs/panel``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import SRC, in_process

FIT = """
import json, sys, time
import numpy as np, torch
from dlsa import DLSAClassifier
try:
    from dlsa.io.features import load_features
except ImportError:  # a reference tree from before the layer folders
    from dlsa.features import load_features
torch.set_num_threads(1)
folder, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
train, test = load_features(folder + "/train.h5"), load_features(folder + "/test.h5")
start = time.perf_counter()
clf = DLSAClassifier(random_state=seed).fit(train.X, train.y)
seconds = time.perf_counter() - start
np.save(out, clf.decision_function(test.X))
rows = [row for rnd in clf.selection_["rounds"] for row in rnd["candidates"]]
print(json.dumps({"seconds": seconds, "chosen": clf.selection_["chosen"],
                  "dropped": sum(bool(row.get("dropped")) for row in rows)}))
"""


def fit(src: Path, folder: Path, seed: int, out: Path) -> dict:
    """The default fit of ``folder``'s train.h5 by the dlsa in ``src``, in a new process."""
    return in_process(FIT, src, str(folder), str(seed), str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders with train.h5, test.h5")
    parser.add_argument("--reference-src", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--json", type=Path, default=None, help="append one record per run")
    args = parser.parse_args()
    print(
        "| set | seed | reference | this tree | ratio | dropped | same choice | same predictions |"
    )
    print("|---|--:|--:|--:|--:|--:|---|---|")
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.sets:
            for seed in (int(s) for s in args.seeds.split(",")):
                ref = fit(args.reference_src, folder, seed, Path(tmp) / "ref.npy")
                new = fit(args.src, folder, seed, Path(tmp) / "new.npy")
                totals[0] += ref["seconds"]
                totals[1] += new["seconds"]
                pred = np.array_equal(
                    np.load(Path(tmp) / "ref.npy"), np.load(Path(tmp) / "new.npy")
                )
                same = ref["chosen"] == new["chosen"]
                t_ref, t_new = ref["seconds"], new["seconds"]
                cells = [folder.name, seed, f"{t_ref:.1f} s", f"{t_new:.1f} s",
                         f"{t_ref / t_new:.2f}x", new["dropped"], "yes" if same else "no",
                         "yes" if pred else "no"]  # fmt: skip
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
                if args.json is not None:
                    record = {"set": folder.name, "seed": seed, "reference": ref, "new": new,
                              "same_predictions": pred}  # fmt: skip
                    with args.json.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
    print(
        f"| all | | {totals[0]:.0f} s | {totals[1]:.0f} s | {totals[0] / totals[1]:.2f}x | | | |"
    )


if __name__ == "__main__":
    main()
