"""Lineage tells the truth: every table an asset's code reads is a declared dependency.

The whole graph is materialized one asset at a time on a small world while every read through
the DeltaStore (scan, read_window, read_all, last_date, exists, version) is recorded; each
table read is mapped to the asset that writes it (the table registry) and compared with the
asset's declared deps.
"""

from __future__ import annotations

import collections

import dagster as dg
import pytest

from contracts import TABLES, Table
from demand_assets.definitions import ALL_ASSETS, defs
from demand_assets.domains.forecasts import DemandForecastConfig
from demand_assets.domains.marketing import SpendResponseConfig
from demand_assets.domains.models import ForecastingConfig
from demand_assets.domains.planning import ScenarioConfig
from demand_assets.domains.sku import SkuModelConfig
from resources import DeltaStore
from tests.conftest import small_resources

pytestmark = pytest.mark.slow  # materializes the whole graph asset by asset

START, END = "2023-09-01", "2024-02-29"
# Reads a declared dep cannot express: training_dataset's non-blocking drift checks compare the
# newest days with the champion's training window, which champion_model writes from
# training_dataset itself; declaring it would make a cycle.
CHECK_READS = {("training_dataset", Table.DRIFT_REFERENCE.value)}

# A step that materializes several assets together (a multi-asset) -> its asset keys.
STEP_KEYS = {"raw_domains": ("country_demand", "channel_spend_response", "product_demand", "product_engagement")}

# (asset, partition range or None, run config): the graph in dependency order.
STEPS = [
    *((name, (START, END), None) for name in ("raw_domains", "product_demand_truth", "channel_response_truth", "training_dataset")),
    ("model_backtest", None, ForecastingConfig(models=["seasonal_naive", "lightgbm"], n_folds=2, horizon=14, history_days=170, lgbm_rounds=100)),
    ("champion_model", None, None),
    ("demand_forecast", ("2024-02-29", "2024-02-29"), DemandForecastConfig(horizon=28, history_days=120)),
    ("forecast_accuracy", ("2024-02-29", "2024-02-29"), None),
    ("spend_response_model", None, SpendResponseConfig(fit_days=120, n_bootstrap=3, max_lags=[7])),
    ("spend_roi", ("2024-02-28", "2024-02-29"), None),
    ("budget_allocation", None, None),
    ("spend_scenario", None, ScenarioConfig(channel_multipliers={"SEARCH": 1.2}, n_samples=50)),
    ("forecast_error_cost", None, None),
    ("instock_value", None, None),
    ("sku_forecast_models", None, SkuModelConfig(frequencies=["weekly"], history_days=150, weekly_epochs=2, channels=8)),
    # The synthetic world has no sessions: both record "not provided" here (an event log's
    # reads, product_engagement's newest day, are a declared dep; tests/test_next_event.py).
    ("next_event_model", None, None),
    ("purchase_intent", ("2024-02-29", "2024-02-29"), None),
]


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    resources = small_resources(tmp_path_factory.mktemp("lineage") / "delta")
    recorded: dict[str, set[str]] = collections.defaultdict(set)
    current: list[str] = []
    patch = pytest.MonkeyPatch()
    for method in ("scan", "read_window", "read_all", "last_date", "exists", "version"):
        original = getattr(DeltaStore, method)

        def recording(self, table, *args, _original=original, **kwargs):
            if current:
                recorded[current[0]].add(str(table))
            return _original(self, table, *args, **kwargs)

        patch.setattr(DeltaStore, method, recording)
    instance = dg.DagsterInstance.ephemeral()
    try:
        for asset, window, config in STEPS:
            current[:] = [asset]
            tags = {"dagster/asset_partition_range_start": window[0], "dagster/asset_partition_range_end": window[1]} if window else None
            result = dg.materialize(
                ALL_ASSETS,
                resources=resources,
                selection=list(STEP_KEYS.get(asset, (asset,))),
                instance=instance,
                tags=tags,
                run_config=dg.RunConfig(ops={asset: config}) if config is not None else None,
                raise_on_error=False,
            )
            assert result.success, f"{asset} failed"
    finally:
        patch.undo()
    return recorded


def _declared(asset: str) -> set[str]:
    """The step's own assets and their declared parents."""
    graph = defs.resolve_asset_graph()
    own = set(STEP_KEYS.get(asset, (asset,)))
    return own | {k.to_user_string() for key in own for k in graph.get(dg.AssetKey(key)).parent_keys}


def test_every_asset_of_the_graph_is_exercised():
    exercised = {key for name, _, _ in STEPS for key in STEP_KEYS.get(name, (name,))}
    assert exercised == {k.to_user_string() for a in ALL_ASSETS for k in a.keys}


def test_every_table_an_asset_reads_is_a_declared_dependency(reads):
    undeclared = []
    for asset, tables in sorted(reads.items()):
        for table in sorted(tables):
            writer = TABLES[Table(table)].asset
            if writer != asset and writer not in _declared(asset) and (asset, table) not in CHECK_READS:
                undeclared.append(f"{asset} reads {table} (written by {writer}) but does not declare {writer}")
    assert not undeclared, "\n".join(undeclared)


def test_the_recorder_sees_the_reads_it_should(reads):
    """The check above could pass vacuously; these reads are known to happen."""
    assert Table.BACKTEST_SETTINGS.value in reads["champion_model"]
    assert Table.TRAINING_DATASET.value in reads["champion_model"]
    assert Table.BUDGET_ALLOCATION.value not in reads["spend_scenario"]  # only with use_budget_allocation
    assert Table.DEMAND_FORECAST.value in reads["instock_value"]
    assert Table.DRIFT_REFERENCE.value in reads["training_dataset"]
