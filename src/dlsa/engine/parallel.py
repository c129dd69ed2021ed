"""Independent fits in worker processes (``n_jobs``, joblib's loky backend), or on a Dask
or Ray cluster (:func:`cluster`).

The selection's fold fits, the safeguard's folds and ``dlsa compare``'s seeds are
independent of each other and draw only from their own seeds, so running them in other
processes or on other machines changes how fast, not what they learn: with the same
number of torch threads per fit the results are bit-identical. Locally each worker gets
``cores // workers`` torch threads and the features are memory-mapped by joblib; on a
cluster every job runs with one torch thread (scale with the number of workers) and
joblib's Dask / Ray backend ships the arrays.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv6Address
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dlsa.errors import DLSAInputError

__all__ = ["BACKENDS", "check_address", "cluster", "run_jobs", "worker_count"]

BACKENDS = ("loky", "dask", "ray")
"""Where jobs run: local processes, a Dask cluster, a Ray cluster."""
_active: list[str] = []  # the cluster backend in use, innermost last

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


def run_jobs(
    fn: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    n_jobs: int | None,
    on_done: Callable[[int], None] | None = None,
) -> list[T]:
    """``[fn(*job) for job in jobs]``, in this process (one worker), in a pool of
    :func:`worker_count` processes, or, inside :func:`cluster`, on the cluster's workers
    (every job at once, whatever ``n_jobs`` says); results in the order of ``jobs``.
    ``on_done(i)`` is called here as job ``i``'s result arrives (in the order of
    ``jobs``; on a cluster, once all have), e.g. to report progress."""
    from joblib import Parallel, delayed, parallel_config

    if _active and len(jobs) > 1:
        tasks = (delayed(_in_worker)(fn, 1, job) for job in jobs)
        # Ray's pool refuses more processes than the cluster has CPUs: -1 takes them all
        n = -1 if _active[-1] == "ray" else len(jobs)
        with parallel_config(backend=_active[-1]):  # registers joblib's Dask / Ray backend
            return _collect(list(Parallel(n_jobs=n)(tasks)), on_done)
    workers = max(1, min(worker_count(n_jobs), len(jobs)))
    if workers == 1:
        return _collect((fn(*job) for job in jobs), on_done)
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = (delayed(_in_worker)(fn, threads, job) for job in jobs)
    pool = Parallel(n_jobs=workers, backend="loky", return_as="generator")
    return _collect(pool(tasks), on_done)


def _collect(results: Iterable[T], on_done: Callable[[int], None] | None) -> list[T]:
    """The results as a list, with ``on_done(i)`` after the i-th arrives."""
    out = []
    for i, result in enumerate(results):
        out.append(result)
        if on_done is not None:
            on_done(i)
    return out


@contextmanager
def cluster(backend: str = "loky", address: str | None = None) -> Iterator[None]:
    """Run the independent fits of the code inside on a cluster.

    Args:
        backend: "loky" (local processes, ``n_jobs``; nothing changes), "dask" (needs
            ``distributed``) or "ray" (needs ``ray``).
        address: the scheduler's address (Dask: ``tcp://host:8786``, e.g. of a
            dask-jobqueue ``SLURMCluster``; Ray: ``ray://host:10001`` or ``auto``); None
            starts a local cluster of 2 worker processes (Dask) or a local Ray.

    Raises:
        DLSAInputError: for an unknown backend, or one whose package is not installed;
            for an address that is malformed or given without a cluster backend
            (:func:`check_address`, before anything is imported or run). An address
            nothing answers at is an ``OSError`` of the backend's client.

    Example:
        >>> with cluster("loky"):
        ...     run_jobs(divmod, [(7, 2), (9, 4)], n_jobs=None)
        [(3, 1), (2, 1)]
    """
    if backend not in BACKENDS:
        raise DLSAInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_address(backend, address)
    if backend == "loky":
        yield
        return
    with _connected(backend, address):
        _active.append(backend)
        try:
            yield
        finally:
            _active.pop()


SCHEMES = {"dask": ("tcp", "tls", "ws", "wss", "ucx"), "ray": ("ray",)}
"""The address schemes of each cluster backend (an address may also omit its scheme)."""
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def check_address(backend: str, address: str | None) -> None:
    """Refuse a scheduler address that cannot be one, before anything is imported.

    Accepted: ``[SCHEME://]HOST[:PORT]`` with a scheme of the backend's
    (:data:`SCHEMES`), a host name, an IPv4 address or a bracketed IPv6 address, and a
    port from 1 to 65535; for Ray also ``auto`` and ``local``.

    Raises:
        DLSAInputError: naming ``--scheduler`` and what is wrong, also for an address
            given with the local backend ``loky`` (it would be ignored).

    Example:
        >>> check_address("dask", "tcp://[::1]:8786")
        >>> try:
        ...     check_address("dask", "tcp://head:port")
        ... except DLSAInputError as err:
        ...     print(str(err)[:60])
        --scheduler tcp://head:port: not an address of a dask schedu
    """
    if address is None:
        return
    if backend not in SCHEMES:
        raise DLSAInputError(
            f"--scheduler {address}: a scheduler needs --backend dask or ray (with "
            f"--backend {backend} the fits run in local processes)"
        )
    if backend == "ray" and address in ("auto", "local"):
        return
    schemes = SCHEMES[backend]
    usage = f"[{'|'.join(schemes)}://]HOST[:PORT]"
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        port, host = parts.port, parts.hostname or ""
        if parts.scheme and parts.scheme not in schemes:
            raise ValueError(f"unknown scheme {parts.scheme!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("only a host and a port")
        if port == 0:
            raise ValueError("port 0")
        if "[" in parts.netloc:
            IPv6Address(host)
        elif not _HOST.match(host):
            raise ValueError(f"host {host!r}")
    except ValueError as err:
        raise DLSAInputError(
            f"--scheduler {address}: not an address of a {backend} scheduler ({err}); "
            f"expected {usage}"
        ) from None


@contextmanager
def _connected(backend: str, address: str | None) -> Iterator[None]:
    """A client of the Dask scheduler / the Ray runtime, for the time of the block."""
    try:
        if backend == "dask":
            from distributed import Client, LocalCluster
        else:
            import ray
            from ray.util.joblib import register_ray
    except ImportError as err:
        extra = "distributed" if backend == "dask" else "ray"
        raise DLSAInputError(
            f"--backend {backend} needs the {extra} package (pip install 'dlsa[{extra}]')"
        ) from err
    if backend == "dask":
        local = None if address else LocalCluster(n_workers=2, threads_per_worker=1)
        try:
            with _unreachable(address):
                client = Client(address or local)
            with client:
                yield
        finally:
            if local is not None:
                local.close()
        return
    register_ray()
    with _unreachable(address):
        ray.init(address=address, ignore_reinit_error=True)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _unreachable(address: str | None) -> Iterator[None]:
    """An ``OSError`` while connecting to ``address`` (nothing answers there, a time-out)
    as a :class:`DLSAInputError` naming ``--scheduler``."""
    try:
        yield
    except OSError as err:
        if address is None:
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DLSAInputError(f"--scheduler {address}: cannot connect ({reason})") from err


def _in_worker(fn: Callable[..., T], threads: int, job: tuple[Any, ...]) -> T:
    import torch

    torch.set_num_threads(threads)
    return fn(*job)
