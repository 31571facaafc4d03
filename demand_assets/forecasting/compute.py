"""Where data-parallel work inside one step runs: in this process, a local process pool, or a
Dask cluster.

One interface, `Executor.map(fn, items, args=...)`: `fn(item, *args)` for every item, results in
the items' order whatever the backend. Items travel in batches (about eight a worker, each many
series), so a task carries enough work to pay for its shipping, and progress is reported once a
batch (items done / total, elapsed, rate). `fn` must be a top-level function and items and args
picklable: they cross a process boundary on every backend but `InProcess`.

A failing item stops the map with `ItemFailed`, whose message names the item (a series) and the
original error, on every backend.

Dagster executors schedule steps; these parallelise inside one. `distributed` is imported only
when a Dask executor connects.

Dask workers need one setting of their own: Dask's nanny starts each worker with
`MALLOC_TRIM_THRESHOLD_=65536`, which also fixes glibc's mmap threshold at 128 KiB, so every
large array torch or numpy allocates is a fresh mmap whose pages fault in one by one. DeepAR's
sample paths then took 1.7 times as long (17.0 s a 1,024-series chunk against 10.0 s on a pool
worker, 8 s of it in the kernel). `DASK_WORKER_ENVIRON` is the environment the workers should
start with; `local_cluster` starts a LocalCluster with it, and a `DaskExecutor` warns, naming
the fix, when it connects to workers that run with Dask's default.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Literal

from demand_assets.forecasting.threads import cap_worker_threads

__all__ = ["BACKENDS", "DASK_WORKER_ENVIRON", "Backend", "DaskExecutor", "Executor", "InProcess", "ItemFailed", "ProcessPool", "local_cluster", "peak_rss_gb"]

log = logging.getLogger(__name__)

Backend = Literal["in_process", "processes", "dask"]
BACKENDS: tuple[Backend, ...] = ("in_process", "processes", "dask")
# Batches per worker: enough for balance (fits take uneven time) and progress lines, few enough
# that per-task overhead (pickling, a Dask scheduler round trip) stays small.
BATCHES_PER_WORKER = 8

# What a Dask worker's process should start with (Dask's `distributed.nanny.pre-spawn-environ`):
# Dask's one-thread caps for OpenMP and BLAS (a worker runs one task per thread), and glibc's
# allocator left to size its own mmap threshold (no MALLOC_TRIM_THRESHOLD_) with one arena (the
# task runs on a thread other than the main one, whose own arena cost another 15%). Measured on
# one 1,024-series chunk of DeepAR sample paths: 17.0 s with Dask's default, 11.8 s without the
# trim threshold, 10.1 s with one arena too, 10.0 s on a local pool worker.
DASK_WORKER_ENVIRON: dict[str, str | None] = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MALLOC_TRIM_THRESHOLD_": None,
    "MALLOC_ARENA_MAX": "1",
}
# The same for `dask worker` on a machine of its own, as shell variables. Dask reads config from
# DASK_* variables but lowercases their names, so the variable to unset goes inside a value.
DASK_WORKER_SHELL = """DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{'MALLOC_TRIM_THRESHOLD_': None}" MALLOC_ARENA_MAX=1"""


class ItemFailed(RuntimeError):
    """`fn` raised on one item; the message names the item and the original error."""


def _apply(fn: Callable[..., Any], items: Sequence[Any], labels: Sequence[str], args: tuple) -> list[Any]:
    """One batch, run where the backend puts it."""
    out = []
    for item, label in zip(items, labels):
        try:
            out.append(fn(item, *args))
        except Exception as error:
            raise ItemFailed(f"{label} failed: {type(error).__name__}: {error}") from error
    return out


class Executor:
    """Runs `fn` over items somewhere; subclasses say where (`_run`) and with how many workers."""

    name = "executor"
    # Where progress lines go when `map` is given none (an orchestrator's logger, say).
    progress: Callable[[str], None] | None = None

    def workers(self) -> int:
        return 1

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        args: tuple = (),
        labels: Sequence[str] | None = None,
        what: str = "items",
        min_per_worker: int = 1,
        progress: Callable[[str], None] | None = None,
    ) -> list[Any]:
        """`[fn(item, *args) for item in items]`, spread over the backend's workers.

        `labels` name the items in errors (default: `what` and the index). `min_per_worker`: below
        this many items a worker, use fewer workers (a local pool then stays in this process).
        `progress` gets one line a batch (default: the executor's `progress`, else this module's
        logger)."""
        items = list(items)
        if not items:
            return []
        names = list(labels) if labels is not None else [f"{what} {i}" for i in range(len(items))]
        if len(names) != len(items):
            raise ValueError(f"{len(names)} labels for {len(items)} items")
        workers = max(1, min(self.workers(), len(items) // max(min_per_worker, 1)))
        size = math.ceil(len(items) / min(len(items), workers * BATCHES_PER_WORKER))
        batches = [(i, min(i + size, len(items))) for i in range(0, len(items), size)]
        report = progress or self.progress or log.info
        where = self._where(workers)
        results: list[list[Any] | None] = [None] * len(batches)
        done, started = 0, time.perf_counter()
        for index, part in self._run(fn, items, names, args, batches, workers):
            results[index] = part
            done += len(part)
            elapsed = time.perf_counter() - started
            report(f"{what}: {done}/{len(items)} done in {elapsed:.1f}s ({done / max(elapsed, 1e-9):.1f}/s, {where})")
        return [r for part in results for r in part or ()]

    def _where(self, workers: int) -> str:
        return f"{self.name}, {workers} workers"

    def _run(
        self, fn: Callable[..., Any], items: list[Any], labels: list[str], args: tuple, batches: list[tuple[int, int]], workers: int
    ) -> Iterator[tuple[int, list[Any]]]:
        for index, (a, b) in enumerate(batches):
            yield index, _apply(fn, items[a:b], labels[a:b], args)

    def close(self) -> None:
        """Release what the executor holds (a Dask client); a closed executor can be used again."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcess(Executor):
    """Every batch in this process, one after another: the reference the others must match."""

    name = "in_process"

    def _where(self, workers: int) -> str:
        return "in process"

    def __init__(self, *, progress: Callable[[str], None] | None = None) -> None:
        self.progress = progress


class ProcessPool(Executor):
    """A pool of local worker processes (spawn), one per CPU unless `max_workers` says otherwise.
    With one worker's worth of items or fewer it runs in this process, as starting interpreters
    would cost more than it saves."""

    name = "processes"

    def __init__(self, max_workers: int | None = None, *, progress: Callable[[str], None] | None = None) -> None:
        self.max_workers = max_workers
        self.progress = progress

    def workers(self) -> int:
        return self.max_workers or os.cpu_count() or 1

    def _where(self, workers: int) -> str:
        return f"{workers} processes" if workers > 1 else "in process (too few items for a pool)"

    def _run(
        self, fn: Callable[..., Any], items: list[Any], labels: list[str], args: tuple, batches: list[tuple[int, int]], workers: int
    ) -> Iterator[tuple[int, list[Any]]]:
        if workers <= 1:
            yield from super()._run(fn, items, labels, args, batches, workers)
            return
        # spawn, not fork: the parent may hold torch/LightGBM thread pools that a fork would copy.
        # Each worker runs one thread of OpenMP/BLAS: `workers` processes then use `workers` cores.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=cap_worker_threads, initargs=(1,)) as pool:
            futures = {pool.submit(_apply, fn, items[a:b], labels[a:b], args): i for i, (a, b) in enumerate(batches)}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


class DaskExecutor(Executor):
    """Batches as tasks on a Dask cluster (`distributed`), reached at `address`. The client
    connects on first use and is closed by `close()` (or the `with` block). `setting` names where
    the address came from, for the error when the scheduler cannot be reached within
    `timeout_s`."""

    name = "dask"

    def __init__(
        self, address: str, *, timeout_s: float = 10.0, setting: str = "the Dask scheduler address", progress: Callable[[str], None] | None = None
    ) -> None:
        self.address = address
        self.progress = progress
        self.timeout_s = timeout_s
        self.setting = setting
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from distributed import Client

            try:
                self._client = Client(self.address, timeout=f"{self.timeout_s}s", set_as_default=False)
            except Exception as error:
                raise ConnectionError(
                    f"cannot reach the Dask scheduler at {self.setting}={self.address!r} within {self.timeout_s:g}s "
                    f"({type(error).__name__}: {error}); start one (`dask scheduler`, then `dask worker <address>`) "
                    "or choose another compute backend"
                ) from None
            self._check_workers()
        return self._client

    def _check_workers(self) -> None:
        """Warn (once a client) when workers run with a trim threshold: the work is right but slow."""
        found = self._client.run(_allocator_environ)
        trimmed = sorted({env["MALLOC_TRIM_THRESHOLD_"] for env in found.values() if env.get("MALLOC_TRIM_THRESHOLD_") is not None})
        if trimmed:
            count = sum(env.get("MALLOC_TRIM_THRESHOLD_") is not None for env in found.values())
            (self.progress or log.warning)(
                f"warning: {count} of {len(found)} Dask workers at {self.address} run with MALLOC_TRIM_THRESHOLD_={', '.join(trimmed)} "
                "(Dask's default for its workers): every large array is then a fresh mmap, and DeepAR's sample paths took 1.7 "
                f"times as long; start the workers with {DASK_WORKER_SHELL} (docs/scaling.md)"
            )

    def workers(self) -> int:
        return max(1, sum(self.client().nthreads().values()))

    def _where(self, workers: int) -> str:
        # Every batch is a task the scheduler places, so the whole cluster works on them.
        return f"dask at {self.address}, {self.workers()} worker threads"

    def _run(
        self, fn: Callable[..., Any], items: list[Any], labels: list[str], args: tuple, batches: list[tuple[int, int]], workers: int
    ) -> Iterator[tuple[int, list[Any]]]:
        from distributed import as_completed as dask_as_completed

        client = self.client()
        futures = [client.submit(_apply, fn, items[a:b], labels[a:b], args, pure=False) for a, b in batches]
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in dask_as_completed(futures, loop=client.loop):
                yield index[future.key], future.result()
        finally:
            client.cancel(futures)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (a step's own peak where each step is a
    process: the multiprocess and Kubernetes executors)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)  # kilobytes on Linux


def _allocator_environ() -> dict[str, str | None]:
    """Run on each Dask worker: its allocator settings."""
    return {name: os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")}


@contextmanager
def local_cluster(n_workers: int = 2, **kwargs: Any) -> Iterator[Any]:
    """A `distributed.LocalCluster` of `n_workers` single-threaded worker processes started with
    `DASK_WORKER_ENVIRON`, for tests, benchmarks and a laptop. Its nannies live in this process
    and set the workers' variables in `os.environ` before starting them; this process's
    environment is put back once they have started, so what it starts later (a pool, a
    `dg launch`) does not inherit one-thread caps."""
    import dask
    import distributed

    saved = dict(os.environ)
    for name, value in DASK_WORKER_ENVIRON.items():
        if value is None:
            os.environ.pop(name, None)  # a value here would reach the workers whatever the config says
    options = {"processes": True, "threads_per_worker": 1, "dashboard_address": ":0", "silence_logs": logging.WARNING} | kwargs
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": {k: v for k, v in DASK_WORKER_ENVIRON.items() if v is not None}}):
            cluster = distributed.LocalCluster(n_workers=n_workers, **options)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with cluster:
        yield cluster
