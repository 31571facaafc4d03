"""The `compute` resource: where data-parallel work inside a step runs (per-series ETS fits).

In this process, a local process pool (the default) or a Dask cluster at DEMAND_DASK_ADDRESS;
the executors themselves are pure code (`demand_assets.forecasting.compute`). Dagster's
executor decides where steps run; this decides where one step's per-series work runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import dagster as dg
from pydantic import Field

from demand_assets.forecasting.compute import DaskExecutor, Executor, InProcess, ProcessPool
from demand_assets.forecasting.threads import thread_limit, threads_per_step
from resources.settings import training_slots

__all__ = ["ComputeResource"]


class ComputeResource(dg.ConfigurableResource):
    backend: Literal["in_process", "processes", "dask"] = Field(
        default="processes",
        description="where per-series work inside a step runs: in_process (one process, for debugging), processes (a local pool of spawned "
        "worker processes) or dask (the Dask cluster at DEMAND_DASK_ADDRESS); results are the same on each",
    )
    max_workers: int | None = Field(default=None, ge=1, le=1024, description="worker processes of the processes backend; empty: one per CPU")
    dask_address: str | None = Field(default=None, description="the Dask scheduler of the dask backend, e.g. tcp://dask-scheduler:8786")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300, description="seconds to reach the Dask scheduler before the step fails")
    step_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="threads one training step may use (LightGBM, BLAS, torch, and the processes backend's workers); 0: this machine's "
        "cores shared by the training steps that may run at once (DEMAND_TRAINING_SLOTS). On Kubernetes set it to a step pod's CPUs",
    )

    def threads(self) -> int:
        """Threads a training step may use: `step_threads`, else cores / DEMAND_TRAINING_SLOTS."""
        return threads_per_step(training_slots(), threads=self.step_threads)

    @contextmanager
    def training_step(self, progress: Callable[[str], None] | None = None) -> Iterator[Executor]:
        """The block a training step runs in: OpenMP, BLAS and torch capped at `threads()`, and an
        executor whose local pool has at most that many workers, so steps that run side by side
        share the cores instead of each taking all of them."""
        n = self.threads()
        with thread_limit(n), self.executor(progress, max_workers=n) as executor:
            yield executor

    def executor(self, progress: Callable[[str], None] | None = None, *, max_workers: int | None = None) -> Executor:
        """A fresh executor for one step; use it in a `with` block so a Dask client is closed at
        the end. `progress` receives the per-batch progress lines (e.g. `context.log.info`);
        `max_workers` caps the local pool below the configured `max_workers`."""
        if self.backend == "in_process":
            return InProcess(progress=progress)
        if self.backend == "processes":
            caps = [w for w in (self.max_workers, max_workers) if w]
            return ProcessPool(min(caps) if caps else None, progress=progress)
        if not self.dask_address:
            raise ValueError(
                "the dask compute backend (DEMAND_COMPUTE=dask) needs DEMAND_DASK_ADDRESS, the scheduler's address, e.g. tcp://dask-scheduler:8786"
            )
        return DaskExecutor(self.dask_address, timeout_s=self.connect_timeout_s, setting="DEMAND_DASK_ADDRESS", progress=progress)
