"""Flow-filter training speed and peak memory: our matmul mixture head vs a reference
head that builds the (batch, K, D) tensor, measured in the same run.

Each configuration runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own; the table reports the peak *increase* over the memory held
right before training (data and model already built).

The batch of each step also carries ``purity_pairs * batch`` pairs (two rows each), so a
batch of 512 puts 768 rows through the head.

Usage:
    python -m benchmarks.speed.bench_mixture_head            # D=512 and D=2048, K=500
    python -m benchmarks.speed.bench_mixture_head --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import time

import torch
from torch import Tensor

from dlsa.config import FilterConfig, MixtureConfig
from dlsa.stage2.filter import FlowFilter
from dlsa.stage2.mixture import GaussianMixtureLatent


class BroadcastMixtureLatent(GaussianMixtureLatent):
    """Reference head: distances through a (N, K, D) difference tensor (the original
    release's way)."""

    def component_log_prob(self, z: Tensor) -> Tensor:
        d = z.shape[-1]
        sq = (z[:, None, :] - self.means[None, :, :]).square().sum(-1)
        return -0.5 * sq - 0.5 * d * math.log(2 * math.pi)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _measure(head: str, d: int, k: int, n: int, batch: int, epochs: int, queue: mp.Queue) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, 50, (n,), generator=g)
    cfg = FilterConfig(
        mixture=MixtureConfig(n_components=k),
        batch_size=batch,
        eval_batch_size=batch,
        epochs=epochs,
        lr=0.01,
    )
    flt = FlowFilter(d, 50, cfg, generator=g)
    if head == "broadcast (N,K,D)":
        flt.latent = BroadcastMixtureLatent(flt.latent.means)
    before = _rss_mb()
    start = time.perf_counter()
    flt.fit(x, y, generator=g)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        {"seconds": elapsed, "samples_per_s": n * epochs / elapsed, "peak_mb": peak - before}
    )


def run(head: str, d: int, k: int, n: int, batch: int, epochs: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(head, d, k, n, batch, epochs, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        why = "killed: out of memory" if proc.exitcode == -9 else f"exit code {proc.exitcode}"
        nan = float("nan")
        return {"seconds": nan, "samples_per_s": nan, "peak_mb": nan, "failed": why}
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    k = 500
    grid = [(128, 256)] if args.quick else [(512, 512), (2048, 512), (2048, 128)]
    n, epochs = (2048, 1) if args.quick else (4096, 1)
    rows = []
    print(f"K={k}, N={n} train samples, {epochs} epoch(s), threads {torch.get_num_threads()}")
    print("| D | batch | head | samples/s | peak extra memory (MB) |")
    print("|--:|--:|---|--:|--:|")
    for d, batch in grid:
        res = {}
        for head in ("matmul (ours)", "broadcast (N,K,D)"):
            res[head] = r = run(head, d, k, n, batch, epochs)
            speed = r.get("failed") or f"{r['samples_per_s']:.0f}"
            print(f"| {d} | {batch} | {head} | {speed} | {r['peak_mb']:.0f} |", flush=True)
            rows.append({"D": d, "batch": batch, "head": head, **r})
        ours, ref = res["matmul (ours)"], res["broadcast (N,K,D)"]
        if "failed" not in ref:
            print(
                f"| {d} | {batch} | ratio ours/ref | "
                f"{ours['samples_per_s'] / ref['samples_per_s']:.2f}x | "
                f"{ours['peak_mb'] / ref['peak_mb']:.3f}x |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
