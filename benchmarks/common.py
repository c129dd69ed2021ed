"""Helpers shared by more than one benchmark script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
"""The ``src`` folder of this tree (the default ``--src`` of the scripts that compare it
with a reference tree)."""


def in_process(script: str, src: Path, *args: str) -> dict:
    """Run ``script`` with the dlsa in ``src`` in a new process on one torch thread; the
    JSON object it prints last."""
    env = os.environ | {"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{src} {' '.join(args)}: the fit failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def set_files(folder: Path) -> dict[str, Path]:
    """train / test / val feature files of a set folder, by split: ``<split>.h5`` (dlsa's
    naming) or ``feature_<split>.h5`` (the original release's)."""
    out = {}
    for split in ("train", "test", "val"):
        for name in (f"{split}.h5", f"feature_{split}.h5"):
            if (folder / name).is_file():
                out[split] = folder / name
    return out


def simulated_classes(profile: tuple[int, int, int]) -> tuple[Any, Any]:
    """Labels y (N,) of a simulated long-tailed set of ``profile`` = (classes, largest,
    smallest count) on the exponential profile, and the reference's accuracy on each
    class (C,): 0.5 on the smallest class up to 0.95 on the largest, linear in log
    count (the selection studies' simulation)."""
    import numpy as np

    n_classes, n_max, n_min = profile
    counts = np.round(n_max * (n_min / n_max) ** (np.arange(n_classes) / (n_classes - 1)))
    y = np.repeat(np.arange(n_classes), counts.astype(int))
    return y, 0.5 + 0.45 * np.log(counts / n_min) / np.log(n_max / n_min)


def as_candidates(hits: list[Any], y: Any, n_classes: int) -> list[Any]:
    """Selection candidates ``c0, c1, ...`` whose predictions are right where ``hits``
    (each (N,) bool) says and the next class elsewhere."""
    import numpy as np

    from dlsa.selection.rule import Candidate

    return [
        Candidate(f"c{j}", {}, np.where(h, y, (y + 1) % n_classes)) for j, h in enumerate(hits)
    ]
