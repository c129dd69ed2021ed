"""Torch threads that leave busy cores alone.

torch starts one intra-op thread per physical core. When other processes keep some of
those cores busy, its threads wait on each other at every operation: 40 ResNet-8 steps
of ``dlsa demo``'s stage 1 took 13.1 s with two threads against 6.5 s with one beside
one busy process on two cores, and 4.1 s against 6.2 s on the idle machine
(``benchmarks/speed/bench_threads.py``). :func:`free_threads` measures,
over a tenth of a second, how many cores other processes use (``/proc/stat``, Linux)
and returns torch's default minus those, at least one. The CLI applies it at start
(``--threads auto``, the default) unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

__all__ = ["busy_cores", "free_threads"]

_STAT = Path("/proc/stat")


def _cpu_times(stat: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from the ``cpu`` line of ``/proc/stat``
    (idle and iowait are not busy), or None where it cannot be read."""
    try:
        first = stat.read_text(encoding="ascii", errors="replace").split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 5:
        return None
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return sum(ticks) - idle, sum(ticks)


def busy_cores(window: float = 0.1, stat: Path = _STAT) -> float | None:
    """Cores kept busy by all running processes over the next ``window`` seconds, or
    None where ``/proc/stat`` cannot be read (not Linux)."""
    before = _cpu_times(stat)
    time.sleep(window)
    after = _cpu_times(stat)
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def free_threads(window: float = 0.1, stat: Path = _STAT) -> int:
    """torch's default thread count minus the cores other processes keep busy (rounded),
    at least 1; the default where the load cannot be measured.

    Example:
        >>> 1 <= free_threads(window=0.01) <= torch.get_num_threads()
        True
    """
    default = torch.get_num_threads()
    busy = busy_cores(window, stat)
    if busy is None:
        return default
    free = (os.cpu_count() or 1) - round(busy)
    return max(1, min(default, free))
