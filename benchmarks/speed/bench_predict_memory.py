"""Peak memory and time of predicting a feature file: whole in memory vs streamed.

Writes an HDF5 feature file of N x D float32 (class means plus noise, C classes), fits a
small DLSA model on its first rows, then runs each way of predicting in a fresh
subprocess and reads its peak resident memory (``VmHWM`` of ``/proc/self/status``; not
``ru_maxrss``, which on Linux keeps the high-water mark of the parent it was forked from):

* ``baseline``: imports and model loading only (the fixed part of both);
* ``in-memory``: ``load_features`` + ``predict_proba_and_route`` + the CSV writer, what
  ``dlsa predict`` does today;
* ``streamed``: :func:`dlsa.analysis.streaming.predict_file` with ``--chunk-rows`` rows a chunk.

Smoke run (200k x 512, ~400 MB file, about a minute)::

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_predict_memory

Larger than this machine's free memory allows comfortably (2M x 2048, 16 GB file;
``--memory-limit-gb`` caps the address space of the in-memory run, so it fails with a
MemoryError instead of waking the kernel's OOM killer on a shared machine)::

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_predict_memory --rows 2000000 \\
        --dim 2048 --depth 0 --folder /tmp/bench_predict_2m --memory-limit-gb 12

``--depth 0`` (the base classifier alone) keeps that run I/O-bound (minutes); the depth-1
cascade scores ~1,500 rows/s at D = 2048 on one core, ~22 min for 2M rows.

The feature file and model are kept in ``--folder`` and reused when they exist.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WRITE_BLOCK = 65536


def write_features(path: Path, n_rows: int, dim: int, n_classes: int, seed: int) -> None:
    """An HDF5 file of ``n_rows`` x ``dim`` float32 features and int64 labels, written
    block by block (never all in memory)."""
    import h5py

    from dlsa.io.atomic import write_atomic

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, n_classes + 1)  # long-tailed class frequencies

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as fp:
            X = fp.create_dataset("features", (n_rows, dim), dtype=np.float32)
            y = fp.create_dataset("labels", (n_rows,), dtype=np.int64)
            for start in range(0, n_rows, WRITE_BLOCK):
                n = min(WRITE_BLOCK, n_rows - start)
                labels = rng.choice(n_classes, size=n, p=weights / weights.sum())
                noise = rng.standard_normal((n, dim), dtype=np.float32)
                X[start : start + n] = means[labels] + 2.0 * noise
                y[start : start + n] = labels

    write_atomic(path, write)


def fit_model(features: Path, folder: Path, n_fit: int, depth: int, seed: int) -> None:
    """A DLSA model of ``depth`` levels on the first ``n_fit`` rows, saved to ``folder``."""
    import h5py

    from dlsa import DLSAClassifier
    from dlsa.config import FilterConfig, HeadConfig, MixtureConfig

    with h5py.File(features, "r") as fp:
        X, y = fp["features"][:n_fit], fp["labels"][:n_fit]
    model = DLSAClassifier(
        depth=depth,
        flow_filter=FilterConfig(mixture=MixtureConfig(16, sigma=0.5), epochs=2),
        head=HeadConfig(epochs=3),
        selection=None,
        base="balsoftmax",
        random_state=seed,
    ).fit(X, y)
    model.save(folder)


def child(mode: str, model_dir: str, features: str, out: str, chunk_rows: int) -> None:
    """Run one way of predicting and print its time and peak memory as JSON."""
    from dlsa import DLSAClassifier

    model = DLSAClassifier.load(model_dir)
    start = time.perf_counter()
    if mode == "in-memory":
        from dlsa.cli.common import write_csv
        from dlsa.io.atomic import write_atomic
        from dlsa.io.features import load_features

        data = load_features(features, require_labels=False)
        proba, stage = model.predict_proba_and_route(data.X)
        pred = model.classes_[proba.argmax(1)]
        write_atomic(Path(out), lambda p: write_csv(p, pred, proba, stage))
    elif mode == "streamed":
        from dlsa.analysis.streaming import predict_file

        predict_file(model, features, out, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb()}))


def _peak_mb() -> float:
    """Peak resident memory of this process since its exec, in MiB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """Peak memory and time of ``mode`` in a fresh interpreter (``error`` if it failed)."""
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder)]
    command += ["--chunk-rows", str(args.chunk_rows), "--depth", str(args.depth)]
    if mode == "in-memory" and args.memory_limit_gb:
        command += ["--memory-limit-gb", str(args.memory_limit_gb)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["?"])[-1]
        return {"mode": mode, "error": last}
    return {"mode": mode} | json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--fit-rows", type=int, default=20_000)
    parser.add_argument("--chunk-rows", type=int, default=16384)
    parser.add_argument("--folder", default="runs/bench_predict_memory")
    parser.add_argument("--memory-limit-gb", type=float, default=0.0)
    parser.add_argument("--depth", type=int, default=1, help="DLSA levels of the model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["baseline", "in-memory", "streamed"])
    args = parser.parse_args()
    folder = Path(args.folder)
    features, model_dir = folder / "features.h5", folder / f"model-depth{args.depth}"
    if args.child:
        if args.memory_limit_gb:
            limit = int(args.memory_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        out = folder / f"pred-{args.child}-depth{args.depth}.csv"
        child(args.child, str(model_dir), str(features), str(out), args.chunk_rows)
        return
    start = time.perf_counter()
    if not features.exists():
        write_features(features, args.rows, args.dim, args.classes, args.seed)
    print(f"features: {features} ({features.stat().st_size / 2**30:.2f} GiB), "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if not model_dir.exists():
        start = time.perf_counter()
        fit_model(features, model_dir, args.fit_rows, args.depth, args.seed)
        print(f"model: {model_dir}, fitted in {time.perf_counter() - start:.0f} s")
    rows = [measure(mode, args, folder) for mode in ("baseline", "in-memory", "streamed")]
    print(f"\n{args.rows} x {args.dim}, depth {args.depth}, chunk_rows={args.chunk_rows}")
    print(f"{'mode':<10} {'peak RSS (MB)':>14} {'time (s)':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['mode']:<10} failed: {row['error']}")
        else:
            print(f"{row['mode']:<10} {row['peak_mb']:>14.0f} {row['seconds']:>9.1f}")
    same = all("error" not in r for r in rows[1:])
    if same:
        a, b = (folder / f"pred-{m}-depth{args.depth}.csv" for m in ("in-memory", "streamed"))
        ratio = rows[1]["peak_mb"] / rows[2]["peak_mb"]  # type: ignore[operator]
        print(f"in-memory / streamed peak: {ratio:.1f}x; CSVs identical: {_same(a, b)}")


def _same(a: Path, b: Path) -> bool:
    """Whether two files have the same bytes, compared block by block."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block_a, block_b = fa.read(1 << 20), fb.read(1 << 20)
            if block_a != block_b:
                return False
            if not block_a:
                return True


if __name__ == "__main__":
    main()
