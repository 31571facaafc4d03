"""Budget planning assets: the allocation of a planning window's budget across channels and
countries, and spend scenarios turned into demand forecasts.

Thin wrappers over `marketing.planning` (bounds, stock), `marketing.allocation` (the optimiser)
and `marketing.scenario` (the closed loop from a spend plan to demand).
"""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from contracts import Table
from demand_assets.domains.forecasts import demand_forecast
from demand_assets.domains.marketing import spend_response_model
from demand_assets.domains.publishing import not_provided_result
from demand_assets.domains.raw import channel_spend_response, product_demand
from demand_assets.domains.reads import NO_SPEND, forecast_as_of, lacks_spend, read_curves, revenue_per_unit
from demand_assets.marketing.planning import PlanningSettings, plan_budget, spare_stock_by_country, stock_from_cover, stock_from_csv, stock_window
from demand_assets.marketing.scenario import bau_spend_plan, media_delta, scenario_forecast, scenario_spend_plan, summarise_scenario
from demand_assets.reporting import figure_to_markdown, frame_to_markdown, line_chart_markdown, metric_comparison_figure
from resources import DeltaStore, DemandSourceResource

__all__ = ["BudgetConfig", "ScenarioConfig", "budget_allocation", "spend_scenario"]


class BudgetConfig(dg.Config):
    total_budget: float | None = Field(default=None, ge=0, description="budget over the planning window; empty: what the last planning_days spent")
    planning_days: int = Field(default=28, ge=1, le=366, description="length of the planning window in days")
    min_ratio: float = Field(default=0.5, ge=0, description="per country x channel, daily spend >= min_ratio x its current spend")
    max_ratio: float = Field(default=2.0, ge=0, description="and <= max_ratio x its current spend")
    channel_bounds: dict[str, list[float]] = Field(
        default={}, description="CHANNEL -> [min, max] daily spend per country; overrides the ratios for that channel"
    )
    fixed_country_totals: bool = Field(default=False, description="move money between channels only, never between countries")
    grid_units: int = Field(default=200, ge=10, description="resolution of the global grid search before the local polish")
    # Respect stock: media-driven units are credited only up to what the shelves can serve in the
    # window (needs a demand_forecast made as of the last stored day).
    stock_cover_days: float | None = Field(default=None, ge=0, description="stock per series = this many days of its recent sales; empty: unlimited stock")
    stock_csv: str | None = Field(default=None, description="or a CSV with COUNTRY, PRODUCT, STOCK_UNITS for the planning window")

    def planning(self) -> PlanningSettings:
        return PlanningSettings(
            planning_days=self.planning_days,
            min_ratio=self.min_ratio,
            max_ratio=self.max_ratio,
            channel_bounds={k: tuple(v) for k, v in self.channel_bounds.items()},
            grid_units=self.grid_units,
        )


def _stock_units(store: DeltaStore, as_of: dt.date, cover_days: float | None, stock_csv: str | None) -> pl.DataFrame | None:
    """COUNTRY, PRODUCT, STOCK_UNITS from the CSV or from days of cover; None: unlimited stock."""
    if stock_csv:
        return stock_from_csv(stock_csv)
    if cover_days is None:
        return None
    start, end = stock_window(as_of)
    recent = store.read_window(Table.PRODUCT_DEMAND, start, end, columns=["DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK"])
    return stock_from_cover(recent, cover_days)


def _spare_stock(store: DeltaStore, as_of: dt.date, config: BudgetConfig) -> dict | None:
    """Country -> stock left after the forecast's demand over the planning window, or None."""
    stock = _stock_units(store, as_of, config.stock_cover_days, config.stock_csv)
    if stock is None:
        return None
    _, forecast = forecast_as_of(store, as_of)
    return spare_stock_by_country(forecast, stock, config.planning_days)


@dg.asset(group_name="marketing", kinds={"scipy", "deltalake"}, deps=[spend_response_model, channel_spend_response, product_demand, demand_forecast])
def budget_allocation(context: dg.AssetExecutionContext, config: BudgetConfig, source: DemandSourceResource, store: DeltaStore):
    """The split of a planning window's budget across channels and countries that maximises the
    expected incremental revenue inside the window, within per-channel bounds, with the carry-over
    of recent spend in the adstock. The expected uplift against keeping the current split comes
    with a P10-P90 band over the response curves' bootstrap replicates."""
    if lacking := lacks_spend(source):
        return not_provided_result(context, lacking, NO_SPEND)
    try:
        settings = config.planning()
    except ValueError as err:
        raise dg.Failure(description=str(err)) from err
    curves = read_curves(store)
    end = store.last_date(Table.CHANNEL_SPEND_RESPONSE) + dt.timedelta(days=1)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    spend = store.read_window(
        Table.CHANNEL_SPEND_RESPONSE, end - dt.timedelta(days=max(config.planning_days, max_lag + 1)), end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"]
    )
    revenue_rows = revenue_per_unit(store, end - dt.timedelta(days=config.planning_days), end).group_by("COUNTRY").agg(pl.col("UNIT_REVENUE").mean())
    revenue = dict(revenue_rows.iter_rows())
    try:
        spare_stock = _spare_stock(store, end - dt.timedelta(days=1), config)
        plan = plan_budget(
            spend, curves, revenue, settings, total_budget=config.total_budget, fixed_country_totals=config.fixed_country_totals, spare_stock=spare_stock
        )
    except ValueError as err:  # an infeasible budget, or stock the plan cannot use
        raise dg.Failure(description=f"budget_allocation was not written: {err}") from err
    for note in plan.notes:
        context.log.info(note)
    table = plan.table.with_columns(
        pl.lit(end).alias("PLAN_START"),
        pl.lit(end + dt.timedelta(days=config.planning_days - 1)).alias("PLAN_END"),
        (pl.col("OPTIMAL_DAILY_SPEND") * config.planning_days).alias("OPTIMAL_WINDOW_SPEND"),
    )
    budget, uplift, total_uplift = plan.budget, plan.uplift, plan.uplift_draws
    written = store.overwrite(Table.BUDGET_ALLOCATION, table)
    bars = pl.concat(
        [
            table.select(
                (pl.col("COUNTRY") + " " + pl.col("CHANNEL")).alias("KEY"), pl.lit("current").alias("PLAN"), pl.col("CURRENT_DAILY_SPEND").alias("DAILY_SPEND")
            ),
            table.select(
                (pl.col("COUNTRY") + " " + pl.col("CHANNEL")).alias("KEY"), pl.lit("optimal").alias("PLAN"), pl.col("OPTIMAL_DAILY_SPEND").alias("DAILY_SPEND")
            ),
        ]
    )
    figure = metric_comparison_figure(bars, "DAILY_SPEND", "KEY", "PLAN", f"Daily spend, current vs optimal, {end} + {config.planning_days} days")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "delta_version": written.version,
            "budget": float(budget),
            "planning_window": f"[{end}, {end + dt.timedelta(days=config.planning_days)})",
            "expected_uplift": uplift,
            "respects_stock": spare_stock is not None,
            "expected_uplift_share": uplift / max(float(table["CURRENT_REVENUE"].sum()), 1e-9),
            "uplift_p10": float(np.percentile(total_uplift, 10)),
            "uplift_p50": float(np.percentile(total_uplift, 50)),
            "uplift_p90": float(np.percentile(total_uplift, 90)),
            "allocation": dg.MetadataValue.md(frame_to_markdown(table.drop("PLAN_START", "PLAN_END"), max_rows=40)),
            "current_vs_optimal": dg.MetadataValue.md(figure_to_markdown(figure, "current vs optimal")),
        }
    )


class ScenarioConfig(dg.Config):
    name: str = Field(default="scenario", description="the scenario's name in the tables and charts")
    channel_daily_spend: dict[str, float] = Field(default={}, description="CHANNEL -> spend per country and day")
    channel_multipliers: dict[str, float] = Field(default={}, description="CHANNEL -> factor on the business-as-usual plan")
    use_budget_allocation: bool = Field(default=False, description="spend the optimal daily amounts of budget_allocation")
    stock_cover_days: float | None = Field(default=None, ge=0, description="stock per series = this many days of recent sales; empty: unlimited")
    stock_csv: str | None = Field(default=None, description="or a CSV with COUNTRY, PRODUCT, STOCK_UNITS for the horizon")
    as_of: str | None = Field(default=None, description="YYYY-MM-DD: the demand_forecast day to start from; empty: the newest")
    n_samples: int = Field(default=500, ge=10, description="Monte Carlo samples per series for the quantiles and stockout probabilities")


@dg.asset(group_name="marketing", kinds={"deltalake"}, deps=[demand_forecast, spend_response_model, channel_spend_response, product_demand, budget_allocation])
def spend_scenario(context: dg.AssetExecutionContext, config: ScenarioConfig, source: DemandSourceResource, store: DeltaStore):
    """Closed loop: a spend plan (config) becomes a demand forecast with quantiles. The champion's
    forecast assumed business as usual (last week's spend repeated); the response curves turn the
    scenario's change of spend into incremental units per country and day, spread over products,
    with bands from the curves' bootstrap. With stock (days of cover or a CSV), only the units the
    shelves can serve are credited: spend that drives demand into a stockout earns nothing."""
    if lacking := lacks_spend(source):
        return not_provided_result(context, lacking, NO_SPEND)
    as_of, forecast = forecast_as_of(store, dt.date.fromisoformat(config.as_of) if config.as_of else None)
    horizon = int(forecast["HORIZON_DAY"].max())
    curves = read_curves(store)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    history = store.read_window(
        Table.CHANNEL_SPEND_RESPONSE,
        as_of - dt.timedelta(days=max(max_lag, 7) + 1),
        as_of + dt.timedelta(days=1),
        columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"],
    )
    per_key = None
    if config.use_budget_allocation:
        per_key = store.read_all(Table.BUDGET_ALLOCATION).select("COUNTRY", "CHANNEL", pl.col("OPTIMAL_DAILY_SPEND").alias("DAILY_SPEND"))
    try:
        bau = bau_spend_plan(history, as_of, horizon)
        plan = scenario_spend_plan(bau, config.channel_daily_spend, config.channel_multipliers, per_key)
        delta = media_delta(curves, history, bau, plan)
        stock = _stock_units(store, as_of, config.stock_cover_days, config.stock_csv)
        daily, series = scenario_forecast(forecast, delta, stock, n_samples=config.n_samples)
    except ValueError as err:
        raise dg.Failure(description=f"spend_scenario '{config.name}' was not written: {err}") from err
    prices = store.read_window(Table.PRODUCT_DEMAND, as_of, as_of + dt.timedelta(days=1), columns=["COUNTRY", "PRODUCT", "PRICE"])
    summary = summarise_scenario(plan, bau, daily, series, prices)
    series, spend_change, by_country = summary.series, summary.spend_change, summary.by_country
    written = store.overwrite(Table.SPEND_SCENARIO, daily.with_columns(pl.lit(config.name).alias("SCENARIO"), pl.lit(as_of).alias("DATE")))
    store.overwrite(Table.SPEND_SCENARIO_SERIES, series.with_columns(pl.lit(config.name).alias("SCENARIO"), pl.lit(as_of).alias("DATE")))
    context.log.info(
        f"scenario '{config.name}' as of {as_of}: {by_country['INCREMENTAL_UNITS'].sum():,.0f} incremental units, {by_country['CREDITED_INCREMENTAL_UNITS'].sum():,.0f} credited"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "delta_version": written.version,
            "scenario": config.name,
            "as_of": str(as_of),
            "incremental_units": float(by_country["INCREMENTAL_UNITS"].sum()),
            "credited_incremental_units": float(by_country["CREDITED_INCREMENTAL_UNITS"].sum()),
            "by_country": dg.MetadataValue.md(frame_to_markdown(by_country, max_rows=40)),
            "spend_plan": dg.MetadataValue.md(frame_to_markdown(spend_change, max_rows=60)),
            "forecast_bau_vs_scenario": dg.MetadataValue.md(
                line_chart_markdown(
                    summary.totals, "DATE", ["BAU_MEAN", "SCENARIO_MEAN"], title=f"Total daily demand forecast: business as usual vs '{config.name}'"
                )
            ),
        }
    )
