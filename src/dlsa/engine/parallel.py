"""Independent fits in worker processes (``n_jobs``), with joblib's loky backend.

The selection's fold fits and ``dlsa compare``'s seeds are independent of each other and
draw only from their own seeds, so running them in other processes changes how fast,
not what they learn: with the same number of torch threads per fit the results are
bit-identical. Each worker gets ``cores // workers`` torch threads; the features are
memory-mapped by joblib, not copied per job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["run_jobs", "worker_count"]

T = TypeVar("T")


def worker_count(n_jobs: int | None) -> int:
    """Processes ``n_jobs`` asks for: None or 1 -> 1 (no pool), -1 -> every core, -k ->
    all cores but k - 1 (joblib's convention).

    Example:
        >>> worker_count(None), worker_count(3)
        (1, 3)
    """
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def run_jobs(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], n_jobs: int | None) -> list[T]:
    """``[fn(*job) for job in jobs]``, in this process (one worker) or in a pool of
    :func:`worker_count` processes, results in the order of ``jobs``."""
    workers = max(1, min(worker_count(n_jobs), len(jobs)))
    if workers == 1:
        return [fn(*job) for job in jobs]
    from joblib import Parallel, delayed

    threads = max(1, (os.cpu_count() or 1) // workers)
    return list(
        Parallel(n_jobs=workers, backend="loky")(
            delayed(_in_worker)(fn, threads, job) for job in jobs
        )
    )


def _in_worker(fn: Callable[..., T], threads: int, job: tuple[Any, ...]) -> T:
    import torch

    torch.set_num_threads(threads)
    return fn(*job)
