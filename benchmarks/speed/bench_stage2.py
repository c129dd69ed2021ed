"""Whole stage 2 at the paper's data shapes: the base method alone vs base + DLSA with a
paper preset, on one device, in the same run.

Features are synthetic (``make_embedding_like_features``) with the shape of a paper set:
``imagenet-lt`` 1,000 classes x 2048-d, 640 ... 5 training samples per class (~130k rows,
as the original measurement of the stage-2 cost), ``inat18`` 8,142 classes x 2048-d,
1,000 ... 2 per class and 437,513 rows as iNaturalist 2018 (a power-law profile fitted to
those four numbers: the exponential profile from 1,000 to 2 would give 1.3M rows).
``--scale`` multiplies the per-class counts (and divides nothing else), for a smoke run on
the CPU.

Prints seconds of each fit, the DLSA overhead ratio, and peak GPU memory on CUDA.

Usage::

    python -m benchmarks.speed.bench_stage2 --device cuda --shape imagenet-lt \\
        --precision fp32 tf32 bf16
    python -m benchmarks.speed.bench_stage2 --device cuda --shape inat18
    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_stage2 --shape imagenet-lt --scale 0.2 \\
        --classes 200 --dim 256     # CPU smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from dlsa import DLSAClassifier
from dlsa.config import get_preset
from dlsa.datasets.synthetic import make_embedding_like_features

SHAPES = {
    "imagenet-lt": {"n_classes": 1000, "n_max": 640, "imbalance": 128.0, "preset": "imagenet-lt"},
    "inat18": {
        "n_classes": 8142,
        "n_max": 1000,
        "imbalance": 500.0,
        "n_rows": 437_513,
        "preset": "inat18",
    },
}


def power_law_counts(n_classes: int, n_rows: int, n_max: int, n_min: int) -> np.ndarray:
    """Per-class counts ``n_max * (1 + c / s) ** -a`` (C,), with ``a`` set so the last
    class has ``n_min`` and ``s`` found by bisection so the counts sum to ``n_rows``
    (small ``s``: a steep power law; large ``s``: the exponential profile)."""
    c = np.arange(n_classes, dtype=np.float64)

    def counts(s: float) -> np.ndarray:
        a = np.log(n_max / n_min) / np.log1p((n_classes - 1) / s)
        return np.maximum(np.round(n_max * (1 + c / s) ** -a), n_min).astype(np.int64)

    lo, hi = 1e-3, 1e7
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if counts(mid).sum() < n_rows else (lo, mid)
    return counts(hi)


def fit_seconds(params: dict, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    DLSAClassifier(**params).fit(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="imagenet-lt")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies class sizes")
    parser.add_argument("--classes", type=int, default=None, help="override the class count")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        help="training-step precisions to time DLSA at (fp32 tf32 bf16)",
    )
    parser.add_argument(
        "--features-on",
        nargs="+",
        default=["device"],
        help="where training keeps the features (device host); host is timed at fp32",
    )
    args = parser.parse_args()
    spec = SHAPES[args.shape]
    device = torch.device(args.device)
    n_classes = args.classes or spec["n_classes"]
    n_max = max(2, int(spec["n_max"] * args.scale))
    counts = None
    if "n_rows" in spec:
        n_min = max(1, round(n_max / spec["imbalance"]))
        rows = int(spec["n_rows"] * args.scale * n_classes / spec["n_classes"])
        counts = power_law_counts(n_classes, max(rows, n_classes * n_min), n_max, n_min)
    data = make_embedding_like_features(
        n_classes=n_classes,
        n_features=args.dim,
        n_max=n_max,
        imbalance=spec["imbalance"] * min(1.0, args.scale),
        n_test_per_class=1,
        seed=0,
        counts=counts,
    )
    x, y = data.X_train.astype(np.float32), data.y_train
    preset = dataclasses.replace(get_preset(spec["preset"]), random_state=0, device=args.device)
    params = preset.estimator_params()
    base_only = params | {"depth": 0}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.shape}-shaped features: {x.shape[0]} x {x.shape[1]}, {n_classes} classes")
    print(f"device: {name} (torch {torch.__version__})\n")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = fit_seconds(base_only, x, y, device)
    full = {}
    for precision in args.precision:
        flt = dataclasses.replace(preset.flow_filter, precision=precision)
        head = dataclasses.replace(preset.head, precision=precision)
        full[precision] = fit_seconds(params | {"flow_filter": flt, "head": head}, x, y, device)
    host = {}
    if "host" in args.features_on:
        host["fp32"] = fit_seconds(params | {"features_on": "host"}, x, y, device)
    peak = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GB"
        if device.type == "cuda"
        else "-"
    )
    print("| fit | seconds | x base alone |\n|---|--:|--:|")
    print(f"| {preset.base} alone | {base:.1f} | 1.0 |")
    for precision, seconds in full.items():
        name = f"{preset.base} + DLSA (`{spec['preset']}` preset, {precision})"
        print(f"| {name} | {seconds:.1f} | {seconds / base:.1f} |")
    for precision, seconds in host.items():
        name = f"{preset.base} + DLSA (`{spec['preset']}`, {precision}, features in host memory)"
        print(f"| {name} | {seconds:.1f} | {seconds / base:.1f} |")
    print(f"\npeak GPU memory: {peak}")


if __name__ == "__main__":
    main()
