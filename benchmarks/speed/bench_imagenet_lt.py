"""Stage 2 at ImageNet-LT's shape on this machine: one Balanced Softmax fit, the paper's
stage 2 (the ``imagenet-lt`` preset) and the default with and without a validation
split, each timed in its own process with its peak memory.

Features: :func:`dlsa.datasets.synthetic.make_imagenet_lt_like` (ImageNet-LT's shot
groups and 115,846 training rows, 20 validation and 50 test rows per class, 1,000
classes, embedding-like structure) at D = 2048 (ResNet-50) or 512 / 768 (CLIP). They are
drawn once per (D, seed) and kept under ``--out``. Each part runs in a new process
(``OMP_NUM_THREADS`` as set, default 2) and prints a JSON line; the table gives seconds
of the fit, the peak resident memory of the process (``ru_maxrss``: the features, the
model and what the fit allocates), test accuracy (overall, many / medium / few shots)
and the chosen model::

    OMP_NUM_THREADS=2 python -m benchmarks.speed.bench_imagenet_lt --out runs/ilt \\
        [--dim 2048] [--parts bsm,preset,default-val,default] [--json runs/ilt.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import SRC

PARTS = {
    "bsm": "one Balanced Softmax fit (default head)",
    "preset": "the paper's stage 2 (`imagenet-lt` preset)",
    "default-val": "the default, selection on the validation split",
    "default": "the default, selection out of fold",
}

FIT = """
import json, resource, sys, time
import numpy as np
from dlsa import DLSAClassifier
from dlsa.config import get_preset
folder, part, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = {k: np.load(f"{folder}/{k}.npy") for k in ("X", "y", "X_val", "y_val", "X_test", "y_test")}
if part == "bsm":
    clf = DLSAClassifier(depth=0, base="balsoftmax", selection=None, random_state=seed)
elif part == "preset":
    clf = DLSAClassifier(**get_preset("imagenet-lt").estimator_params() | {"random_state": seed})
else:
    clf = DLSAClassifier(random_state=seed)
val = {"X_val": d["X_val"], "y_val": d["y_val"]} if part == "default-val" else {}
start = time.perf_counter()
clf.fit(d["X"], d["y"], **val)
seconds = time.perf_counter() - start
hit = clf.predict(d["X_test"]) == d["y_test"]
n = np.bincount(d["y"])[d["y_test"]]
groups = {"many": n > 100, "medium": (n >= 20) & (n <= 100), "few": n < 20}
print(json.dumps({
    "seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "accuracy": float(hit.mean()), **{k: float(hit[m].mean()) for k, m in groups.items()},
    "chosen": clf.selection_["chosen"] if clf.selection_ else part,
}))
"""


def features(out: Path, dim: int, seed: int) -> Path:
    """The folder of the (dim, seed) features, drawn on first use."""
    folder = out / f"d{dim}-s{seed}"
    if (folder / "y_test.npy").exists():
        return folder
    from dlsa.datasets.synthetic import make_imagenet_lt_like

    split, X_val, y_val = make_imagenet_lt_like(n_features=dim, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"X": split.X_train, "y": split.y_train, "X_val": X_val, "y_val": y_val,
              "X_test": split.X_test, "y_test": split.y_test}  # fmt: skip
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return folder


def run(folder: Path, part: str, seed: int) -> dict:
    """One part in a new process; its JSON record."""
    env = os.environ | {
        "PYTHONPATH": str(SRC),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    done = subprocess.run(
        [sys.executable, "-c", FIT, str(folder), part, str(seed)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{part}: the fit failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the features")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--json", type=Path, default=None, help="append one record per part")
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    folder = features(args.out, args.dim, args.seed)
    print(f"ImageNet-LT shape, D = {args.dim}, seed {args.seed}, "
          f"{os.environ.get('OMP_NUM_THREADS', '2')} threads")  # fmt: skip
    print("| part | seconds | peak memory | accuracy | many | medium | few | chosen |")
    print("|---|--:|--:|--:|--:|--:|--:|---|")
    for part in parts:
        r = run(folder, part, args.seed)
        cells = [PARTS[part], f"{r['seconds']:.0f}", f"{r['peak_gb']:.1f} GB"] + [
            f"{100 * r[k]:.2f}" for k in ("accuracy", "many", "medium", "few")
        ] + [r["chosen"]]  # fmt: skip
        print("| " + " | ".join(cells) + " |", flush=True)
        if args.json is not None:
            with args.json.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"part": part, "dim": args.dim, "seed": args.seed} | r) + "\n")


if __name__ == "__main__":
    main()
