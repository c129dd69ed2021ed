"""Are predictions bit-identical between this tree and another? (For refactors.)

Fits each configuration on each set once with this tree's ``dlsa`` and once with the
``src`` folder of another checkout (``--reference-src``, e.g. a ``git worktree`` of an
older commit), each in its own process with one thread, and compares ``predict_proba``
on the test features bit for bit.

Usage::

    git worktree add --detach /tmp/dlsa-ref <commit>
    python -m benchmarks.protocol.same_predictions --reference-src /tmp/dlsa-ref/src \\
        --sets runs/panel/fm-digits ../shared/cases/fa20 --configs default small
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import SRC, in_process

FIT = r"""
import dataclasses, sys
from pathlib import Path
import numpy as np
from dlsa import DLSAClassifier
from dlsa.config import DLSAConfig, get_preset
from dlsa.io.features import load_features
folder, config, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def first(*names):
    return next(folder / n for n in names if (folder / n).is_file())
train = load_features(first("train.h5", "feature_train.h5"))
test = load_features(first("test.h5", "feature_test.h5"))
classes = np.unique(train.y)
cfg = DLSAConfig() if config == "default" else get_preset(config)
cfg = dataclasses.replace(cfg, random_state=0)
clf = DLSAClassifier(**cfg.estimator_params()).fit(train.X, np.searchsorted(classes, train.y))
np.save(out, clf.predict_proba(test.X))
print("{}")
"""


def predictions(src: Path, folder: Path, config: str, out: Path) -> np.ndarray:
    """``predict_proba`` (M, C) of ``config`` fitted on ``folder`` by the dlsa in ``src``
    (its own process, one thread). The fit script finds the files itself: it runs
    against another tree's ``dlsa`` and imports nothing of this one."""
    in_process(FIT, src, str(folder), config, str(out))
    return np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-src", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=["default"], help="default or presets")
    args = parser.parse_args()
    print("| set | config | bit-identical | max abs difference |\n|---|---|---|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.sets:
            for config in args.configs:
                ref = predictions(args.reference_src, folder, config, Path(tmp) / "ref.npy")
                new = predictions(SRC, folder, config, Path(tmp) / "new.npy")
                same = ref.shape == new.shape and np.array_equal(ref, new)
                diff = float(np.abs(ref - new).max()) if ref.shape == new.shape else float("nan")
                print(f"| {folder.name} | {config} | {'yes' if same else 'NO'} | {diff:g} |")


if __name__ == "__main__":
    main()
