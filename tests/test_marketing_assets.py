"""The marketing assets end to end in a temporary store: curves, daily ROI, budget allocation."""

import dagster as dg
import polars as pl
import pytest

from demand_assets.definitions import ALL_ASSETS
from demand_assets.domains.marketing import SpendResponseConfig
from demand_assets.domains.planning import BudgetConfig
from tests.conftest import materialize_range, small_resources

pytestmark = pytest.mark.slow  # materializes eight months of the graph and fits curves

CURVES = SpendResponseConfig(fit_days=150, n_bootstrap=5, max_lags=[3, 7, 14])


def _materialize(resources, selection, run_config=None, **kwargs):
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        selection=selection,
        run_config=run_config or dg.RunConfig(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def marketing(tmp_path_factory):
    root = tmp_path_factory.mktemp("marketing") / "delta"
    resources = small_resources(root)
    assert materialize_range(resources, "2023-08-01", "2024-01-31").success
    result = _materialize(resources, ["spend_response_model"], dg.RunConfig(ops={"spend_response_model": CURVES}))
    assert result.success
    return resources, result


def test_curves_table_has_a_point_estimate_and_replicates_per_channel(marketing):
    resources, result = marketing
    curves = resources["store"].read_all("response_curves")
    assert curves.group_by("COUNTRY", "CHANNEL").agg(pl.len())["len"].to_list() == [1 + CURVES.n_bootstrap] * 6
    point = curves.filter(pl.col("DRAW") == 0)
    # Steady channels vary little beyond the 20% measurement noise, so their R2 is modest;
    # flighted DISPLAY switches on and off and is explained well.
    assert point["R2"].min() > 0.2
    assert point.filter(pl.col("CHANNEL") == "DISPLAY")["R2"].min() > 0.8
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "data:image/png;base64" in metadata["response_curves"].value
    assert metadata["roi_abs_error_mean"].value < 0.15  # against the generator's truth
    assert "TRUE_ROI" in metadata["recovery_vs_truth"].value


def test_spend_roi_partitions_and_contract(marketing):
    resources, _ = marketing
    result = _materialize(
        resources, ["spend_roi"], tags={"dagster/asset_partition_range_start": "2024-01-20", "dagster/asset_partition_range_end": "2024-01-31"}
    )
    assert result.success
    roi = resources["store"].read_all("spend_roi")
    assert roi["DATE"].n_unique() == 12 and roi.height == 12 * 6
    assert (roi["INCREMENTAL_UNITS_P10"] <= roi["INCREMENTAL_UNITS_P90"] + 1e-9).all()
    spent = roi.filter(pl.col("SPEND") > 0)
    assert (spent["ROI"] - spent["INCREMENTAL_REVENUE"] / spent["SPEND"]).abs().max() < 1e-9
    observation = next(e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION")
    assert "data:image/png;base64" in observation.event_specific_data.asset_observation.metadata["response_curves"].value
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    # Re-running a day replaces it instead of appending.
    assert _materialize(resources, ["spend_roi"], partition_key="2024-01-31").success
    assert resources["store"].read_all("spend_roi").height == roi.height


def test_budget_allocation_spends_the_budget_within_bounds(marketing):
    resources, _ = marketing
    config = BudgetConfig(total_budget=None, planning_days=14, min_ratio=0.5, max_ratio=1.5)
    result = _materialize(resources, ["budget_allocation"], dg.RunConfig(ops={"budget_allocation": config}))
    assert result.success
    table = resources["store"].read_all("budget_allocation")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert (table["OPTIMAL_DAILY_SPEND"].sum() * 14) == pytest.approx(metadata["budget"].value, rel=1e-6)
    assert (table["OPTIMAL_DAILY_SPEND"] >= table["LOWER"] - 1e-9).all() and (table["OPTIMAL_DAILY_SPEND"] <= table["UPPER"] + 1e-9).all()
    assert metadata["expected_uplift"].value >= -1e-6  # the current split is feasible, so never worse
    assert metadata["uplift_p10"].value <= metadata["uplift_p90"].value


def test_fixed_country_totals_keep_each_countrys_budget(marketing):
    resources, _ = marketing
    config = BudgetConfig(planning_days=14, fixed_country_totals=True)
    assert _materialize(resources, ["budget_allocation"], dg.RunConfig(ops={"budget_allocation": config})).success
    table = resources["store"].read_all("budget_allocation").group_by("COUNTRY").agg(pl.col("CURRENT_DAILY_SPEND").sum(), pl.col("OPTIMAL_DAILY_SPEND").sum())
    for row in table.iter_rows(named=True):
        assert row["OPTIMAL_DAILY_SPEND"] == pytest.approx(row["CURRENT_DAILY_SPEND"], rel=1e-6)


def test_an_infeasible_budget_fails_and_keeps_the_stored_allocation(marketing):
    resources, _ = marketing
    store = resources["store"]
    assert _materialize(resources, ["budget_allocation"], dg.RunConfig(ops={"budget_allocation": BudgetConfig(planning_days=14)})).success
    before = store.version("budget_allocation")
    result = _materialize(resources, ["budget_allocation"], dg.RunConfig(ops={"budget_allocation": BudgetConfig(planning_days=14, total_budget=1e9)}))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "budget within bounds" in failure.event_specific_data.error.message
    assert store.version("budget_allocation") == before


def test_spend_roi_without_curves_says_what_to_do(tmp_path):
    resources = small_resources(tmp_path / "delta")
    assert materialize_range(resources, "2024-01-01", "2024-01-10").success
    result = _materialize(resources, ["spend_roi"], partition_key="2024-01-10")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "materialize spend_response_model first" in str(failure.event_specific_data.error.message) + str(failure.event_specific_data.error.cause)
