"""Helpers shared by more than one benchmark script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
