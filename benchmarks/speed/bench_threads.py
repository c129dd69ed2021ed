"""Seconds of a stage-1 workload (ResNet-8 training steps on 28 x 28 images, as in
``dlsa demo``) at each torch thread count, beside 0, 1, ... busy processes that this
script starts, and the thread count ``--threads auto`` (:func:`dlsa.engine.threads.
free_threads`) picks under each load. The reference of each row is torch's default
thread count, measured in the same run.

Usage::

    python -m benchmarks.speed.bench_threads [--busy 0,1] [--steps 60]

Run it on an otherwise idle machine: the busy processes are the load it studies.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
import torch.nn.functional as F

from dlsa.backbones.resnet import ResNet
from dlsa.engine.threads import busy_cores, free_threads


def spin(stop) -> None:  # a process that keeps one core busy
    while not stop.is_set():
        pass


def workload(threads: int, steps: int) -> float:
    """Seconds of ``steps`` SGD steps of ResNet-8 on batches of 128 one-channel 28 x 28
    images at ``threads`` torch threads."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    model = ResNet(in_channels=1, n_classes=20, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(128, 1, 28, 28, generator=gen)
    y = torch.randint(0, 20, (128,), generator=gen)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", default="0,1", help="busy processes to start, per row")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    default = torch.get_num_threads()
    counts = list(range(1, default + 1))
    print(f"idle machine check: {busy_cores(0.5):.2f} cores busy before the runs")
    head = " | ".join(f"{t} thread{'s' * (t > 1)}" for t in counts)
    print(f"| busy processes | {head} | auto picks | auto / default |")
    print("|--:|" + "--:|" * len(counts) + "--:|--:|")
    for k in (int(v) for v in args.busy.split(",")):
        stop = mp.Event()
        spinners = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(k)]
        for p in spinners:
            p.start()
        time.sleep(1.0)
        picked = free_threads(0.5)
        seconds = {t: workload(t, args.steps) for t in counts}
        stop.set()
        for p in spinners:
            p.join()
        cells = " | ".join(f"{seconds[t]:.1f} s" for t in counts)
        ratio = seconds[picked] / seconds[default]
        print(f"| {k} | {cells} | {picked} | {ratio:.2f}x |", flush=True)
    torch.set_num_threads(default)


if __name__ == "__main__":
    main()
