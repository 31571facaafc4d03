"""How many threads one training step may use, and a block that holds its libraries to it.

LightGBM (OpenMP), numpy/scipy (BLAS) and torch each start as many threads as the machine has
cores. Two training steps side by side (two units of the fanned-out backtest) then run twice as
many busy threads as cores; OpenMP's spinning threads make that far worse than sharing: on the
2-core development machine a LightGBM unit took 568 s beside another against 113 s alone. A step
that holds its libraries to `cores / steps at once` threads shares the machine instead.

`thread_limit(n)` caps every OpenMP and BLAS library loaded in the process (threadpoolctl) and
torch's intra-op threads for the block, and restores them after. A library first loaded inside
the block is not capped, so callers import their models before entering it (the suite does).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

__all__ = ["available_cores", "cap_worker_threads", "thread_limit", "threads_per_step"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which container limits often set),
    else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_step(steps_at_once: int, *, threads: int = 0, cores: int | None = None) -> int:
    """Threads one step may use: `threads` when set (> 0), else the cores shared evenly by the
    steps that may run at once (at least 1)."""
    if threads > 0:
        return threads
    return max(1, (cores or available_cores()) // max(1, steps_at_once))


@contextmanager
def thread_limit(n: int) -> Iterator[int]:
    """Cap OpenMP, BLAS and torch at `n` threads inside the block."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch is not None and before is not None:
                torch.set_num_threads(before)


_WORKER_LIMITS: list[object] = []


def cap_worker_threads(n: int) -> None:
    """For a pool worker process: cap its OpenMP and BLAS libraries at `n` threads for its life
    (the process-pool initializer), so `w` workers use `w x n` threads, not `w x cores`."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)  # for libraries loaded later in the worker
    _WORKER_LIMITS.append(threadpool_limits(limits=n))
