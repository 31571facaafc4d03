"""The `compute` resource: where data-parallel work inside a step runs (per-series ETS fits).

In this process, a local process pool (the default) or a Dask cluster at DEMAND_DASK_ADDRESS;
the executors themselves are pure code (`demand_assets.forecasting.compute`). Dagster's
executor decides where steps run; this decides where one step's per-series work runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import dagster as dg
from pydantic import Field

from demand_assets.forecasting.compute import DaskExecutor, Executor, InProcess, ProcessPool

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

    def executor(self, progress: Callable[[str], None] | None = None) -> Executor:
        """A fresh executor for one step; use it in a `with` block so a Dask client is closed at
        the end. `progress` receives the per-batch progress lines (e.g. `context.log.info`)."""
        if self.backend == "in_process":
            return InProcess(progress=progress)
        if self.backend == "processes":
            return ProcessPool(self.max_workers, progress=progress)
        if not self.dask_address:
            raise ValueError(
                "the dask compute backend (DEMAND_COMPUTE=dask) needs DEMAND_DASK_ADDRESS, the scheduler's address, e.g. tcp://dask-scheduler:8786"
            )
        return DaskExecutor(self.dask_address, timeout_s=self.connect_timeout_s, setting="DEMAND_DASK_ADDRESS", progress=progress)
