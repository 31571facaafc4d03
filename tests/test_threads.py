"""A training step's thread budget: the cores shared by the steps that may run at once, applied
to the libraries that would otherwise each take every core (OpenMP, BLAS, torch)."""

import lightgbm  # noqa: F401  (loads LightGBM's OpenMP, which the limit must reach)
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from demand_assets.forecasting.compute import ProcessPool
from demand_assets.forecasting.threads import available_cores, thread_limit, threads_per_step
from resources import ComputeResource, resources_from_env


def _pool_threads() -> dict[str, int]:
    return {f"{i['user_api']}:{i['filepath']}": i["num_threads"] for i in threadpool_info()}


def _threads_in_worker(item: int) -> int:
    """Runs in a pool worker: the most threads any of its OpenMP/BLAS libraries would start."""
    import numpy

    numpy.ones((4, 4)) @ numpy.ones((4, 4))
    return max(i["num_threads"] for i in threadpool_info())


@pytest.mark.parametrize(
    ("steps", "threads", "cores", "expected"),
    [(1, 0, 8, 8), (2, 0, 8, 4), (3, 0, 8, 2), (2, 0, 2, 1), (4, 0, 2, 1), (2, 3, 8, 3)],
)
def test_the_cores_are_shared_by_the_steps_that_may_run_at_once(steps, threads, cores, expected):
    assert threads_per_step(steps, threads=threads, cores=cores) == expected


def test_the_limit_caps_openmp_blas_and_torch_in_the_block_and_restores_them_after():
    before, torch_before = _pool_threads(), torch.get_num_threads()
    assert any(api.startswith("openmp") for api in before), before  # LightGBM's OpenMP is loaded
    with thread_limit(1) as n:
        assert n == 1
        inside = _pool_threads()
        assert set(inside) == set(before) and set(inside.values()) == {1}, inside
        assert torch.get_num_threads() == 1
        assert np.allclose(np.ones((64, 64)) @ np.ones((64, 64)), 64)
    assert _pool_threads() == before
    assert torch.get_num_threads() == torch_before


def test_a_process_pools_workers_run_one_thread_each():
    # Without the cap each spawned worker's OpenMP and BLAS would start one thread per core.
    assert ProcessPool(2).map(_threads_in_worker, list(range(4)), what="probes") == [1, 1, 1, 1]


def test_the_compute_resource_shares_the_cores_among_the_training_slots(monkeypatch):
    monkeypatch.setenv("DEMAND_TRAINING_SLOTS", "2")
    assert ComputeResource().threads() == max(1, available_cores() // 2)
    monkeypatch.setenv("DEMAND_STEP_THREADS", "3")
    compute = resources_from_env(resolve=True)["compute"]
    assert compute.step_threads == 3 and compute.threads() == 3
    with compute.training_step() as executor:
        assert torch.get_num_threads() == 3
        assert executor.workers() == 3  # the local pool stays inside the step's budget


def test_ets_fits_in_the_steps_process_use_one_blas_thread_whatever_the_steps_budget():
    # Each statsmodels fit is small matrices in Python: a second BLAS thread only spins (at M5 size
    # ETS in one process on 2 threads used 1.96 cores for one core's work).
    import datetime as dt

    import polars as pl

    from demand_assets.forecasting.compute import InProcess
    from demand_assets.forecasting.models.ets import ETSForecaster

    def blas_threads() -> int:
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    seen: list[int] = []
    executor = InProcess(progress=lambda line: seen.append(blas_threads()))
    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 4, 30), eager=True)
    rng = np.random.default_rng(0)
    train = pl.concat(
        pl.DataFrame({"DATE": days, "COUNTRY": "DE", "PRODUCT": f"P{k}", "PRODUCT_DEMAND": rng.poisson(3.0, len(days)).astype(float), "IN_STOCK": True})
        for k in range(3)
    )
    future = pl.DataFrame({"DATE": [dt.date(2024, 5, 1)] * 3, "COUNTRY": "DE", "PRODUCT": ["P0", "P1", "P2"]})
    with thread_limit(2):  # the step's budget on 2 cores with one training slot
        assert blas_threads() == 2
        forecast = ETSForecaster(history_days=90, executor=executor).fit(train).predict(train, future)
        assert blas_threads() == 2  # the step's budget is back for what follows
    assert forecast.height == 3 and seen and set(seen) == {1}, seen
