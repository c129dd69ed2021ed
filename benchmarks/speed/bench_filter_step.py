"""Cost of one flow-filter training step against a bare flow + head step, and against the
original release's (B, K, D) head, measured in the same run on one device.

Per shape (D, K, B) the table gives milliseconds per SGD step (forward, backward, update)
of:

* ``bare``: our MAF + :class:`~dlsa.stage2.mixture.GaussianMixtureLatent`, loss = mean negative
  log-likelihood, over the same number of rows as the real step (the batch plus the
  purity pairs, ``B + 2P``). The reference of the ratios.
* ``real``: ``FilterTrainer.step_loss`` (weighted likelihood, balancedness with the
  momentum estimator, purity of freshly drawn class-uniform pairs), the step the filter
  trains with.
* ``real, tf32`` / ``real, bf16 autocast``: the real step at ``FilterConfig.precision``
  "tf32" (TF32 matmuls, CUDA only: on the CPU the same as ``real``) and "bf16".
* ``real, table per step``: the same with the per-class table of the pair sampler rebuilt
  every step (``torch.unique`` + ``argsort`` over all N labels: what the step did before
  the tables were built once per level).
* ``real, flow torch.compile'd`` (``--compile``): the real step with the MAF compiled by
  ``torch.compile`` (the time to compile is in the row's name).
* ``real, features in host memory``: the real step with x in host memory
  (``features_on="host"``): each batch and its purity pairs are gathered there and
  copied to the device.
* ``original head``: the bare step with the release's head, which forms the (rows, K, D)
  difference tensor (rebuilt from the paper's description; its memory is shown on CUDA).

Goal (the stage-2 speed target on GPU): ``real`` within 1.3x of ``bare``.

Usage::

    python -m benchmarks.speed.bench_filter_step                          # CPU, smaller shapes
    python -m benchmarks.speed.bench_filter_step --device cuda --shapes 512,500,256 \\
        2048,500,128 2048,500,1024
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from dlsa.config import FilterConfig, MixtureConfig
from dlsa.engine.precision import step_precision
from dlsa.engine.rows import HostRows
from dlsa.engine.sampling import PurityPairSampler
from dlsa.stage2.filter import FlowFilter
from dlsa.stage2.filter_training import FilterReport, FilterTrainer
from dlsa.stage2.mixture import GaussianMixtureLatent


class OriginalHeadLatent(GaussianMixtureLatent):
    """The release's head: squared distances through a (rows, K, D) difference tensor."""

    def component_log_prob(self, z: Tensor) -> Tensor:
        sq = (z[:, None, :] - self.means[None, :, :]).square().sum(-1)
        return -0.5 * sq - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    """Median milliseconds of ``step`` over ``steps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def _peak_mb(step: Callable[[], None], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def measure(
    d: int,
    k: int,
    b: int,
    n: int,
    device: torch.device,
    warmup: int,
    n_steps: int,
    compile_flow: bool = False,
):
    """Rows of the table for one shape: (name, ms, peak MB or None)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    counts = torch.clamp((2000 * torch.arange(1, 201.0) ** -1.2).long(), min=2)
    y = torch.repeat_interleave(torch.arange(200), counts)[:n]
    y = y[torch.randint(0, y.numel(), (n,), generator=g)].to(device)
    cfg = FilterConfig(mixture=MixtureConfig(n_components=k), batch_size=b, lr=0.01, epochs=1)
    flt = FlowFilter(d, 200, cfg, generator=g).to(device)
    trainer = FilterTrainer(flt, x, y, g, FilterReport(n_samples=n, n_classes=200))
    opt = torch.optim.SGD(flt.flow.parameters(), lr=0.01)
    rows = b + 2 * trainer.n_pairs
    flt.train()

    def update(loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def idx() -> Tensor:
        return torch.randint(0, n, (b,), generator=g).to(device)

    def bare() -> None:
        _, log_prob, _ = flt(x[torch.randint(0, n, (rows,), generator=g).to(device)])
        update(-log_prob.mean())

    def real() -> None:
        update(trainer.step_loss(idx()))

    def real_at(precision: str) -> Callable[[], None]:
        def step() -> None:
            with step_precision(precision, device):
                loss = trainer.step_loss(idx()).float()
            update(loss)

        return step

    report = FilterReport(n_samples=n, n_classes=200)
    host = FilterTrainer(flt, HostRows(x.cpu(), device), y, g, report)

    def real_host() -> None:
        update(host.step_loss(idx()))

    def real_rebuilt() -> None:
        trainer.pairs = PurityPairSampler(y)
        update(trainer.step_loss(idx()))

    original = OriginalHeadLatent(flt.latent.means).to(device)

    def original_head() -> None:
        z, ladj = flt.flow(x[torch.randint(0, n, (rows,), generator=g).to(device)])
        log_prob_z, _ = original(z)
        update(-(log_prob_z + ladj).mean())

    steps = [
        ("bare", bare),
        ("real", real),
        ("real, tf32 (CUDA only)", real_at("tf32")),
        ("real, bf16 autocast", real_at("bf16")),
        ("real, table per step", real_rebuilt),
        ("real, features in host memory", real_host),
        ("original head", original_head),
    ]
    if compile_flow:
        start = time.perf_counter()
        flt.flow = torch.compile(flt.flow, dynamic=False)
        real()
        seconds = time.perf_counter() - start
        steps.append((f"real, flow torch.compile'd ({seconds:.0f} s to compile)", real))
    out = []
    for name, step in steps:
        ms = _time(step, device, warmup, n_steps)
        out.append((name, ms, _peak_mb(step, device)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--shapes", nargs="+", default=["64,100,256", "512,500,256"], help="D,K,B triples"
    )
    parser.add_argument("--n", type=int, default=20000, help="samples of the level")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument(
        "--compile", action="store_true", help="add the real step with torch.compile'd flow"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    print(f"device: {name} (torch {torch.__version__}, {threads} CPU threads)\n")
    print("| D | K | B | step | ms / step | x bare | peak MB |")
    print("|--:|--:|--:|---|--:|--:|--:|")
    for shape in args.shapes:
        d, k, b = (int(v) for v in shape.split(","))
        rows = measure(d, k, b, args.n, device, args.warmup, args.steps, args.compile)
        ref = rows[0][1]
        for step, ms, peak in rows:
            mb = "-" if peak is None else f"{peak:.0f}"
            print(f"| {d} | {k} | {b} | {step} | {ms:.2f} | {ms / ref:.2f} | {mb} |", flush=True)


if __name__ == "__main__":
    main()
