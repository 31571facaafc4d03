"""Shared fixtures: a small synthetic world and helpers to materialize it into a temp store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import polars as pl
import pytest

from demand_assets.definitions import ALL_ASSETS, DATA_ASSETS
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource
from resources import ComputeResource, ContractSettings, DeltaStore, DemandSourceResource, EconomicsSettings, MlflowTracking, MonitoringSettings

SMALL = {"seed": 11, "n_countries": 2, "n_products": 12, "n_channels": 3}


@pytest.fixture(scope="session")
def small_source() -> SyntheticDemandSource:
    return SyntheticDemandSource(SyntheticConfig(**SMALL))


def read_all(source, domain, start: dt.date, end: dt.date) -> pl.DataFrame:
    return pl.concat(list(source.read(domain, start, end)))


def small_resources(delta_root, source: DemandSourceResource | None = None, tolerance: float = 0.01) -> dict:
    mlflow_dir = delta_root.parent / f"{delta_root.name}_mlflow"
    return {
        "source": source or DemandSourceResource(**SMALL),
        "store": DeltaStore(root_uri=str(delta_root)),
        "contract_settings": ContractSettings(reconcile_tolerance=tolerance),
        "monitoring": MonitoringSettings(),
        "economics": EconomicsSettings(),
        "compute": ComputeResource(),
        "mlflow_tracking": MlflowTracking(tracking_uri=f"sqlite:///{mlflow_dir}.db", artifact_location=(mlflow_dir / "artifacts").as_uri()),
    }


def materialize_range(
    resources: dict,
    start: str,
    end: str,
    *,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """One single-run backfill of [start, end] (inclusive partition keys), in process; by default
    of the data assets (the model assets are exercised in their own tests)."""
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        selection=selection or DATA_ASSETS,
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def materialized_store(tmp_path_factory):
    """The whole graph for 2024-01-01..2024-02-29 in a fresh store (shared within a module)."""
    root = tmp_path_factory.mktemp("delta")
    result = materialize_range(small_resources(root), "2024-01-01", "2024-02-29")
    assert result.success, "the small graph should materialize cleanly"
    return DeltaStore(root_uri=str(root))


# The longest tests (real server processes, waits on the clock) go first, so that pytest-xdist
# starts them early and the other worker fills the time, instead of one of them ending the run.
LONG_FIRST = (
    "test_production_layout.py",
    "test_keeps_current.py",
    "test_postgres.py",
    "test_backfills.py",
    "test_backtest_units.py",
    "test_concurrent_runs.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: 0 if item.path.name in LONG_FIRST else 1)
