"""Marketing assets: response curves per country x channel, daily spend ROI, and the budget
allocation that maximises incremental revenue."""

import dataclasses
import datetime as dt
from typing import Optional

import dagster as dg
import mlflow
import numpy as np
import polars as pl

from contracts import ContractContext
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions, lookback
from demand_assets.domains.publishing import (
    blocking_check_spec,
    contract_check,
    not_provided,
    not_provided_result,
    partition_dates,
    publish_window,
    require_days,
)
from demand_assets.domains.raw import channel_spend_response, product_demand
from demand_assets.marketing.allocation import AllocationProblem, BudgetInfeasible, optimise_allocation, window_revenue
from demand_assets.marketing.curves import CurveFitSettings, curves_from_frame, fit_channel_curves
from demand_assets.marketing.roi import ROI_WINDOW_DAYS, attribute_spend, unit_revenue
from demand_assets.marketing.scenario import bau_spend_plan, media_delta, scenario_forecast, scenario_spend_plan
from demand_assets.reporting import figure_to_markdown, frame_to_markdown, line_chart_markdown, metric_comparison_figure, response_curve_figure
from demand_assets.sources import Domain
from resources import DeltaStore, DemandSourceResource, MissingTableError, MlflowTracking

__all__ = [
    "BudgetConfig",
    "RESPONSE_CURVES_TABLE",
    "SPEND_ROI_CONTRACT",
    "ScenarioConfig",
    "SpendResponseConfig",
    "budget_allocation",
    "spend_response_model",
    "spend_roi",
    "spend_scenario",
]

RESPONSE_CURVES_TABLE = "response_curves"
SPEND_ROI_CONTRACT = "spend_roi_contract"
MAX_CARRY_OVER_DAYS = 21  # the longest adstock lag spend_roi reads history for
# What a source without the channel domain (M5, a transaction log) lacks for these assets.
_NO_SPEND = "marketing spend, which the marketing assets are built on"


def _lacks_spend(source: DemandSourceResource) -> str | None:
    """The source's name when it has no channel spend (the marketing assets then record that), else None."""
    src = source.open()
    return None if Domain.CHANNEL_SPEND_RESPONSE in src.provides else src.name


class SpendResponseConfig(dg.Config):
    fit_days: int = 365  # the newest days of spend and measured response the curves are fitted on
    n_bootstrap: int = 100  # moving-block bootstrap replicates for the bands
    block_days: int = 14
    max_lags: list[int] = [3, 7, 14, 21]  # candidate adstock lengths (days); the best fit wins
    seed: int = 0


def _revenue_per_unit(store: DeltaStore, start: dt.date, end: dt.date) -> pl.DataFrame:
    window = store.scan("product_demand").filter(pl.col("DATE").is_between(start, end, closed="left"))
    return unit_revenue(window.select("DATE", "COUNTRY", "PRICE", "PRODUCT_DEMAND"))


def _curve_summary(spend: pl.DataFrame, curves: dict, revenue: pl.DataFrame, fit_start: dt.date, end: dt.date) -> pl.DataFrame:
    """Per country x channel over the fit window: ROI with its band, current spend, marginal ROI."""
    attributed = attribute_spend(spend, curves, revenue, fit_start, end, roi_window=(end - fit_start).days)
    last = attributed.filter(pl.col("DATE") == attributed["DATE"].max())
    recent = attributed.filter(pl.col("DATE") > end - dt.timedelta(days=ROI_WINDOW_DAYS + 1))
    current = recent.group_by("COUNTRY", "CHANNEL").agg(pl.col("SPEND").mean().alias("CURRENT_DAILY_SPEND"), pl.col("UNIT_REVENUE").mean())
    summary = last.select(
        "COUNTRY", "CHANNEL", pl.col("ROI_28D").alias("ROI"), pl.col("ROI_28D_P10").alias("ROI_P10"), pl.col("ROI_28D_P90").alias("ROI_P90")
    ).join(current, on=["COUNTRY", "CHANNEL"])
    totals = attributed.group_by("COUNTRY", "CHANNEL").agg(pl.col("SPEND").sum().alias("SPEND"), pl.col("INCREMENTAL_UNITS").sum().alias("INCREMENTAL_UNITS"))
    rows = []
    for row in summary.join(totals, on=["COUNTRY", "CHANNEL"]).iter_rows(named=True):
        point = curves[(row["COUNTRY"], row["CHANNEL"])][0]
        rows.append(row | {
            "MARGINAL_ROI": float(point.marginal(row["CURRENT_DAILY_SPEND"]) * row["UNIT_REVENUE"]),
            "DECAY": point.decay, "MAX_LAG": point.max_lag, "HALF_SATURATION": point.half_saturation, "SLOPE": point.slope, "CAP": point.cap,
        })
    return pl.DataFrame(rows).sort("COUNTRY", "CHANNEL")


def _recovery(store: DeltaStore, summary: pl.DataFrame, spend: pl.DataFrame, revenue: pl.DataFrame, fit_start: dt.date, end: dt.date) -> Optional[pl.DataFrame]:
    """Synthetic sources only: fitted ROI and parameters against the generator's truth."""
    if not store.exists("channel_response_truth"):
        return None
    truth = store.read_window("channel_response_truth", fit_start, end)
    if truth.is_empty():
        return None
    joined = truth.join(spend.select("DATE", "COUNTRY", "CHANNEL", "SPEND"), on=["DATE", "COUNTRY", "CHANNEL"]).join(revenue, on=["DATE", "COUNTRY"], how="left")
    true = joined.group_by("COUNTRY", "CHANNEL").agg(
        ((pl.col("TRUE_RESPONSE") * pl.col("UNIT_REVENUE")).sum() / pl.col("SPEND").sum()).alias("TRUE_ROI"),
        pl.col("TRUE_DECAY").first(), pl.col("TRUE_MAX_LAG").first(), pl.col("TRUE_HALF_SATURATION").first(), pl.col("TRUE_HILL_SLOPE").first(),
        pl.col("TRUE_RESPONSE_CAP").mean(),
    )
    return summary.select("COUNTRY", "CHANNEL", "ROI", "ROI_P10", "ROI_P90", "DECAY", "MAX_LAG", "HALF_SATURATION", "SLOPE", "CAP").join(
        true, on=["COUNTRY", "CHANNEL"]
    ).with_columns(
        (pl.col("ROI") / pl.col("TRUE_ROI") - 1).alias("ROI_ERROR"),
        ((pl.col("ROI_P10") <= pl.col("TRUE_ROI")) & (pl.col("TRUE_ROI") <= pl.col("ROI_P90"))).alias("TRUE_ROI_IN_BAND"),
    ).sort("COUNTRY", "CHANNEL")


def _curve_panels(curves: dict, summary: pl.DataFrame) -> list[dict]:
    panels = []
    for channel in summary["CHANNEL"].unique(maintain_order=True).to_list():
        lines = []
        for row in summary.filter(pl.col("CHANNEL") == channel).iter_rows(named=True):
            draws = curves[(row["COUNTRY"], channel)]
            grid = np.linspace(0.0, max(3.0 * row["CURRENT_DAILY_SPEND"], 1e-6), 60)
            values = np.stack([c.steady_state(grid) for c in draws]) * row["UNIT_REVENUE"]
            band = values[1:] if len(draws) > 1 else values
            lines.append({
                "label": row["COUNTRY"], "spend": grid, "p50": values[0], "p10": np.percentile(band, 10, axis=0), "p90": np.percentile(band, 90, axis=0),
                "current_spend": row["CURRENT_DAILY_SPEND"], "current_value": float(draws[0].steady_state(row["CURRENT_DAILY_SPEND"]) * row["UNIT_REVENUE"]),
            })
        panels.append({"channel": channel, "lines": lines})
    return panels


@dg.asset(
    group_name="marketing",
    kinds={"scipy", "mlflow", "deltalake"},
    deps=[channel_spend_response, product_demand, "channel_response_truth"],
)
def spend_response_model(context: dg.AssetExecutionContext, config: SpendResponseConfig, source: DemandSourceResource, store: DeltaStore, mlflow_tracking: MlflowTracking):
    """Response curves per country x channel: geometric adstock (decay, maximum lag) and Hill
    saturation fitted by least squares to the measured CHANNEL_RESPONSE over the newest
    `fit_days`, with moving-block bootstrap replicates for uncertainty. Stored as the
    `response_curves` Delta table (DRAW 0 = point estimate); ROI, marginal ROI at current spend
    and response-curve plots in the metadata, and on synthetic data the recovery error against
    the generator's true parameters."""
    if lacking := _lacks_spend(source):
        return not_provided_result(context, lacking, _NO_SPEND)
    end = store.last_date("channel_spend_response") + dt.timedelta(days=1)
    fit_start = end - dt.timedelta(days=config.fit_days)
    warmup = max(config.max_lags)
    spend = store.read_window("channel_spend_response", fit_start - dt.timedelta(days=warmup), end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND", "CHANNEL_RESPONSE"])
    fit_start = max(fit_start, spend["DATE"].min() + dt.timedelta(days=min(warmup, config.fit_days // 4)))
    settings = CurveFitSettings(max_lags=tuple(config.max_lags), n_bootstrap=config.n_bootstrap, block_days=config.block_days, seed=config.seed)
    context.log.info(f"fitting response curves on [{fit_start}, {end}) with {config.n_bootstrap} bootstrap replicates each")

    def progress(i, n, country, channel, fit):
        context.log.info(f"curve {i}/{n}: {country} x {channel}: decay {fit.curve.decay:.2f}, max lag {fit.curve.max_lag}, R2 {fit.r2:.3f}")

    table = fit_channel_curves(spend, fit_start, settings=settings, progress=progress).with_columns(
        pl.lit(fit_start).alias("FIT_START"), pl.lit(end - dt.timedelta(days=1)).alias("FIT_END")
    )
    curves = curves_from_frame(table)
    revenue = _revenue_per_unit(store, fit_start - dt.timedelta(days=warmup), end)
    summary = _curve_summary(spend.select("DATE", "COUNTRY", "CHANNEL", "SPEND"), curves, revenue, fit_start, end)
    recovery = _recovery(store, summary, spend, revenue, fit_start, end)
    written = store.overwrite(RESPONSE_CURVES_TABLE, table)
    figure = response_curve_figure(_curve_panels(curves, summary), f"Response curves fitted on [{fit_start}, {end}) (band: bootstrap P10-P90; dot: current spend)")

    with mlflow_tracking.run("spend_response", tags={"stage": "marketing", "fit_window": f"{fit_start}...{end - dt.timedelta(days=1)}", "delta_version.channel_spend_response": str(store.version("channel_spend_response"))}) as run:
        mlflow.log_params({"fit_days": config.fit_days, "n_bootstrap": config.n_bootstrap, "block_days": config.block_days, "max_lags": ",".join(map(str, config.max_lags))})
        for row in summary.iter_rows(named=True):
            prefix = f"{row['COUNTRY']}_{row['CHANNEL']}"
            mlflow.log_metrics({f"roi_{prefix}": row["ROI"], f"marginal_roi_{prefix}": row["MARGINAL_ROI"]})
        if recovery is not None:
            mlflow.log_metric("roi_abs_error_mean", float(recovery["ROI_ERROR"].abs().mean()))
            mlflow.log_table(recovery.to_pandas(), "recovery.json")
        mlflow.log_table(summary.to_pandas(), "curves.json")
        mlflow.log_figure(figure, "response_curves.png")
        run_url = mlflow_tracking.run_url(run.info.run_id)

    metadata = {
        "dagster/row_count": written.rows,
        "delta_version": written.version,
        "fit_window": f"[{fit_start}, {end})",
        "curves": dg.MetadataValue.md(frame_to_markdown(summary.select("COUNTRY", "CHANNEL", "ROI", "ROI_P10", "ROI_P90", "MARGINAL_ROI", "CURRENT_DAILY_SPEND", "DECAY", "MAX_LAG", "HALF_SATURATION", "SLOPE", "CAP"), max_rows=40)),
        "response_curves": dg.MetadataValue.md(figure_to_markdown(figure, "response curves")),
        "mlflow_run": dg.MetadataValue.url(run_url),
    }
    if recovery is not None:
        metadata["recovery_vs_truth"] = dg.MetadataValue.md(
            frame_to_markdown(recovery.select("COUNTRY", "CHANNEL", "ROI", "TRUE_ROI", "ROI_ERROR", "TRUE_ROI_IN_BAND", "DECAY", "TRUE_DECAY", "SLOPE", "TRUE_HILL_SLOPE"), max_rows=40)
        )
        metadata["roi_abs_error_mean"] = float(recovery["ROI_ERROR"].abs().mean())
    return dg.MaterializeResult(metadata=metadata)


def _read_curves(store: DeltaStore) -> dict:
    try:
        return curves_from_frame(store.read_all(RESPONSE_CURVES_TABLE))
    except MissingTableError as err:
        raise dg.Failure(description="no response curves yet: materialize spend_response_model first") from err


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="marketing",
    automation_condition=DAILY_DOWNSTREAM,
    kinds={"deltalake", "pandera"},
    deps=[
        dg.AssetDep(channel_spend_response, partition_mapping=lookback(ROI_WINDOW_DAYS + MAX_CARRY_OVER_DAYS)),
        dg.AssetDep(product_demand, partition_mapping=lookback(ROI_WINDOW_DAYS)),
        spend_response_model,
    ],
    check_specs=[
        blocking_check_spec(SPEND_ROI_CONTRACT, "spend_roi", "Pandera contract SpendRoi: non-negative spend, units and ROI, positive unit revenue, P10 <= P90, unique keys, known countries and channels, dates in the partition."),
    ],
)
def spend_roi(context: dg.AssetExecutionContext, source: DemandSourceResource, store: DeltaStore):
    """Per day x country x channel: spend, the incremental units and revenue the fitted response
    curve credits it with (P10/P90 from the bootstrap), ROI that day and over the trailing 28
    days, and the marginal ROI of one more unit of daily spend at the current level."""
    if lacking := _lacks_spend(source):
        yield from not_provided(context, lacking, _NO_SPEND, [SPEND_ROI_CONTRACT])
        return
    start, end = partition_dates(context)
    curves = _read_curves(store)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    history = start - dt.timedelta(days=ROI_WINDOW_DAYS + max_lag)
    spend = store.read_window("channel_spend_response", history, end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"])
    require_days(spend, start, end, "channel_spend_response")
    revenue = _revenue_per_unit(store, history, end)
    frame = attribute_spend(spend, curves, revenue, start, end)
    ctx = ContractContext(start, end, {"COUNTRY": sorted({k[0] for k in curves}), "CHANNEL": sorted({k[1] for k in curves})})

    def summarize(chunk: pl.DataFrame) -> pl.DataFrame:
        return chunk.group_by("DATE", "CHANNEL").agg(
            pl.col("SPEND").sum(), pl.col("INCREMENTAL_REVENUE").sum(), pl.col("MARGINAL_ROI").mean()
        )

    def describe(summary: pl.DataFrame) -> dict:
        recent = frame.filter(pl.col("DATE") > frame["DATE"].max() - dt.timedelta(days=ROI_WINDOW_DAYS)).group_by("COUNTRY", "CHANNEL").agg(
            pl.col("SPEND").mean().alias("CURRENT_DAILY_SPEND"), pl.col("UNIT_REVENUE").mean()
        ).sort("COUNTRY", "CHANNEL")
        curves_figure = response_curve_figure(_curve_panels(curves, recent), "Response curves (band: bootstrap P10-P90; dot: the last 28 days' mean spend)")
        return {
            "response_curves": dg.MetadataValue.md(figure_to_markdown(curves_figure, "response curves")),
            "spend_and_revenue": dg.MetadataValue.md(line_chart_markdown(summary, "DATE", ["SPEND", "INCREMENTAL_REVENUE", "MARGINAL_ROI"], by="CHANNEL", title="Spend, credited incremental revenue and marginal ROI by channel (all countries)")),
            "latest_day": dg.MetadataValue.md(frame_to_markdown(frame.filter(pl.col("DATE") == frame["DATE"].max()).select("COUNTRY", "CHANNEL", "SPEND", "INCREMENTAL_REVENUE", "ROI_28D", "ROI_28D_P10", "ROI_28D_P90", "MARGINAL_ROI"), max_rows=40)),
        }

    yield from publish_window(context, store, "spend_roi", [frame], [contract_check("spend_roi", SPEND_ROI_CONTRACT, ctx)], summarize=summarize, describe=describe)


class BudgetConfig(dg.Config):
    total_budget: Optional[float] = None  # over the planning window; None: what the last `planning_days` spent
    planning_days: int = 28
    min_ratio: float = 0.5  # per country x channel, daily spend >= min_ratio x current
    max_ratio: float = 2.0  # and <= max_ratio x current
    channel_bounds: dict[str, list[float]] = {}  # CHANNEL -> [min, max] daily spend per country (overrides the ratios)
    fixed_country_totals: bool = False  # True: move money between channels only, never between countries
    grid_units: int = 200  # resolution of the global grid search before polishing
    # Respect stock: media-driven units are credited only up to what the shelves can serve in the
    # window (needs a demand_forecast made as of the last stored day). Stock per series is
    # `stock_cover_days` of its recent sales, or STOCK_UNITS from `stock_csv`; None: unlimited.
    stock_cover_days: Optional[float] = None
    stock_csv: Optional[str] = None


def _allocate(keys, curves, spend: dict, current: dict, revenue: dict, config: BudgetConfig, budget: float, spare_stock: Optional[dict] = None):
    """(allocation, problem) for `keys`; `spend` maps a key to its daily spend (oldest first),
    `current` to its mean daily spend over the last planning_days."""
    history, lower, upper = [], [], []
    for country, channel in keys:
        now = current[(country, channel)]
        history.append(spend[(country, channel)][-curves[(country, channel)][0].max_lag - 1:])
        if channel in config.channel_bounds:
            lo, hi = config.channel_bounds[channel]
        else:
            lo, hi = config.min_ratio * now, config.max_ratio * now
        lower.append(lo)
        upper.append(hi)
    problem = AllocationProblem(
        keys=tuple(keys), curves=tuple(curves[k] for k in keys), history=tuple(history),
        unit_revenue=np.array([revenue[k[0]] for k in keys]), current=np.array([current[k] for k in keys]),
        lower=np.array(lower), upper=np.array(upper), budget=budget, days=config.planning_days,
    )
    if spare_stock is not None:
        # Media-driven units the shelves can serve: what the current plan already drives (it is in
        # the forecast) plus the stock left over after the forecast.
        media_now = window_revenue(problem, problem.current) / problem.unit_revenue
        caps = {c: float(spare_stock.get(c, 0.0) + sum(media_now[i] for i, k in enumerate(keys) if k[0] == c)) for c in {k[0] for k in keys}}
        problem = dataclasses.replace(problem, unit_caps=caps)
    return optimise_allocation(problem, grid_units=config.grid_units), problem


def _spare_stock(store: DeltaStore, as_of: dt.date, config: BudgetConfig) -> Optional[dict]:
    """Country -> stock left after the forecast's demand over the planning window, or None."""
    stock = _stock_units(store, as_of, config.stock_cover_days, config.stock_csv)
    if stock is None:
        return None
    forecast = store.read_window("demand_forecast", as_of, as_of + dt.timedelta(days=1)) if store.exists("demand_forecast") else pl.DataFrame()
    if forecast.is_empty():
        raise dg.Failure(description=f"respecting stock needs a demand_forecast made as of {as_of}: materialize that partition first")
    if int(forecast["HORIZON_DAY"].max()) < config.planning_days:
        raise dg.Failure(description=f"rule 'forecast covers the window': the forecast has {forecast['HORIZON_DAY'].max()} days, planning_days is {config.planning_days}")
    demand = forecast.filter(pl.col("HORIZON_DAY") <= config.planning_days).group_by("COUNTRY", "PRODUCT").agg(pl.col("MEAN").sum().alias("DEMAND"))
    spare = demand.join(stock, on=["COUNTRY", "PRODUCT"], how="left").with_columns(
        (pl.col("STOCK_UNITS").fill_null(0.0) - pl.col("DEMAND")).clip(lower_bound=0.0).alias("SPARE")
    )
    return dict(spare.group_by("COUNTRY").agg(pl.col("SPARE").sum()).iter_rows())


@dg.asset(group_name="marketing", kinds={"scipy", "deltalake"}, deps=[spend_response_model, channel_spend_response, product_demand, "demand_forecast"])
def budget_allocation(context: dg.AssetExecutionContext, config: BudgetConfig, source: DemandSourceResource, store: DeltaStore):
    """The split of a planning window's budget across channels and countries that maximises the
    expected incremental revenue inside the window, within per-channel bounds, with the carry-over
    of recent spend in the adstock. The expected uplift against keeping the current split comes
    with a P10-P90 band over the response curves' bootstrap replicates."""
    if lacking := _lacks_spend(source):
        return not_provided_result(context, lacking, _NO_SPEND)
    if config.planning_days < 1 or config.min_ratio < 0 or config.max_ratio < config.min_ratio:
        raise dg.Failure(description="rule 'planning window and ratios': planning_days >= 1 and 0 <= min_ratio <= max_ratio")
    curves = _read_curves(store)
    end = store.last_date("channel_spend_response") + dt.timedelta(days=1)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    spend = store.read_window("channel_spend_response", end - dt.timedelta(days=max(config.planning_days, max_lag + 1)), end, columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"])
    revenue_rows = _revenue_per_unit(store, end - dt.timedelta(days=config.planning_days), end).group_by("COUNTRY").agg(pl.col("UNIT_REVENUE").mean())
    revenue = dict(revenue_rows.iter_rows())
    keys = sorted(k for k in curves if k[0] in revenue)
    series = {key: part.sort("DATE")["SPEND"].to_numpy().astype(np.float64) for key, part in spend.partition_by("COUNTRY", "CHANNEL", as_dict=True).items()}
    current = {key: float(series[key][-config.planning_days:].mean()) for key in keys}
    current_total = sum(current.values()) * config.planning_days
    budget = config.total_budget if config.total_budget is not None else current_total
    groups = [[k for k in keys if k[0] == country] for country in sorted({k[0] for k in keys})] if config.fixed_country_totals else [keys]
    spare_stock = _spare_stock(store, end - dt.timedelta(days=1), config)
    rows, uplift_draws, credited_uplift = [], [], []
    try:
        for group in groups:
            share = sum(current[k] for k in group) * config.planning_days / current_total
            allocation, problem = _allocate(group, curves, series, current, revenue, config, budget * share if config.fixed_country_totals else budget, spare_stock)
            context.log.info(f"allocated {problem.budget:,.0f} over {len(group)} country x channel ({allocation.method}); uplift {allocation.uplift:,.0f}")
            uplift_draws.append(allocation.uplift_draws)
            credited_uplift.append(allocation.uplift)
            for i, (country, channel) in enumerate(group):
                point = problem.curves[i][0]
                rows.append({
                    "COUNTRY": country, "CHANNEL": channel,
                    "CURRENT_DAILY_SPEND": float(problem.current[i]), "OPTIMAL_DAILY_SPEND": float(allocation.daily_spend[i]),
                    "LOWER": float(problem.lower[i]), "UPPER": float(problem.upper[i]),
                    "CURRENT_REVENUE": float(allocation.current_revenue[i]), "OPTIMAL_REVENUE": float(allocation.revenue[i]),
                    "MARGINAL_ROI_CURRENT": float(point.marginal(problem.current[i]) * problem.unit_revenue[i]),
                    "MARGINAL_ROI_OPTIMAL": float(point.marginal(allocation.daily_spend[i]) * problem.unit_revenue[i]),
                })
    except BudgetInfeasible as err:
        raise dg.Failure(description=f"budget_allocation was not written: {err}") from err
    table = pl.DataFrame(rows).with_columns(
        pl.lit(end).alias("PLAN_START"), pl.lit(end + dt.timedelta(days=config.planning_days - 1)).alias("PLAN_END"),
        (pl.col("OPTIMAL_DAILY_SPEND") * config.planning_days).alias("OPTIMAL_WINDOW_SPEND"),
    )
    total_uplift = np.sum(uplift_draws, axis=0) if uplift_draws and len(uplift_draws[0]) else np.zeros(1)
    uplift = float(sum(credited_uplift))
    written = store.overwrite("budget_allocation", table)
    bars = pl.concat([
        table.select((pl.col("COUNTRY") + " " + pl.col("CHANNEL")).alias("KEY"), pl.lit("current").alias("PLAN"), pl.col("CURRENT_DAILY_SPEND").alias("DAILY_SPEND")),
        table.select((pl.col("COUNTRY") + " " + pl.col("CHANNEL")).alias("KEY"), pl.lit("optimal").alias("PLAN"), pl.col("OPTIMAL_DAILY_SPEND").alias("DAILY_SPEND")),
    ])
    figure = metric_comparison_figure(bars, "DAILY_SPEND", "KEY", "PLAN", f"Daily spend, current vs optimal, {end} + {config.planning_days} days")
    return dg.MaterializeResult(metadata={
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
    })


def _stock_units(store: DeltaStore, as_of: dt.date, cover_days: Optional[float], stock_csv: Optional[str]) -> Optional[pl.DataFrame]:
    """COUNTRY, PRODUCT, STOCK_UNITS for the planning window: from a CSV, or `cover_days` of
    each series' recent in-stock daily sales; None when neither is set (unlimited stock)."""
    if stock_csv:
        frame = pl.read_csv(stock_csv)
        missing = {"COUNTRY", "PRODUCT", "STOCK_UNITS"} - set(frame.columns)
        if missing:
            raise dg.Failure(description=f"rule 'stock columns': {stock_csv} lacks {sorted(missing)}")
        negative = frame.filter(pl.col("STOCK_UNITS") < 0)
        if negative.height:
            raise dg.Failure(description=f"rule 'STOCK_UNITS >= 0' on column STOCK_UNITS: {negative.height} row(s), e.g. {negative.head(5).to_dicts()}")
        return frame.select("COUNTRY", "PRODUCT", pl.col("STOCK_UNITS").cast(pl.Float64))
    if cover_days is None:
        return None
    if cover_days < 0:
        raise dg.Failure(description=f"rule 'stock_cover_days >= 0': got {cover_days}")
    recent = store.read_window("product_demand", as_of - dt.timedelta(days=27), as_of + dt.timedelta(days=1), columns=["DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK"])
    return recent.filter(pl.col("IN_STOCK")).group_by("COUNTRY", "PRODUCT").agg((pl.col("PRODUCT_DEMAND").mean() * cover_days).alias("STOCK_UNITS"))


class ScenarioConfig(dg.Config):
    name: str = "scenario"
    channel_daily_spend: dict[str, float] = {}  # CHANNEL -> spend per country and day
    channel_multipliers: dict[str, float] = {}  # CHANNEL -> factor on the business-as-usual plan
    use_budget_allocation: bool = False  # spend the optimal daily amounts of budget_allocation
    stock_cover_days: Optional[float] = None  # stock per series = this many days of recent sales; None: unlimited
    stock_csv: Optional[str] = None  # or a CSV with COUNTRY, PRODUCT, STOCK_UNITS for the horizon
    as_of: Optional[str] = None  # the demand_forecast day to start from; default the newest
    n_samples: int = 500


@dg.asset(group_name="marketing", kinds={"deltalake"}, deps=["demand_forecast", spend_response_model, channel_spend_response, product_demand])
def spend_scenario(context: dg.AssetExecutionContext, config: ScenarioConfig, source: DemandSourceResource, store: DeltaStore):
    """Closed loop: a spend plan (config) becomes a demand forecast with quantiles. The champion's
    forecast assumed business as usual (last week's spend repeated); the response curves turn the
    scenario's change of spend into incremental units per country and day, spread over products,
    with bands from the curves' bootstrap. With stock (days of cover or a CSV), only the units the
    shelves can serve are credited: spend that drives demand into a stockout earns nothing."""
    if lacking := _lacks_spend(source):
        return not_provided_result(context, lacking, _NO_SPEND)
    as_of = dt.date.fromisoformat(config.as_of) if config.as_of else store.last_date("demand_forecast")
    forecast = store.read_window("demand_forecast", as_of, as_of + dt.timedelta(days=1))
    if forecast.is_empty():
        raise dg.Failure(description=f"demand_forecast has no forecast made as of {as_of}: materialize that partition first")
    horizon = int(forecast["HORIZON_DAY"].max())
    curves = _read_curves(store)
    max_lag = max(draws[0].max_lag for draws in curves.values())
    history = store.read_window("channel_spend_response", as_of - dt.timedelta(days=max(max_lag, 7) + 1), as_of + dt.timedelta(days=1), columns=["DATE", "COUNTRY", "CHANNEL", "SPEND"])
    per_key = None
    if config.use_budget_allocation:
        per_key = store.read_all("budget_allocation").select("COUNTRY", "CHANNEL", pl.col("OPTIMAL_DAILY_SPEND").alias("DAILY_SPEND"))
    try:
        bau = bau_spend_plan(history, as_of, horizon)
        plan = scenario_spend_plan(bau, config.channel_daily_spend, config.channel_multipliers, per_key)
        delta = media_delta(curves, history, bau, plan)
        stock = _stock_units(store, as_of, config.stock_cover_days, config.stock_csv)
        daily, series = scenario_forecast(forecast, delta, stock, n_samples=config.n_samples)
    except ValueError as err:
        raise dg.Failure(description=f"spend_scenario '{config.name}' was not written: {err}") from err
    prices = store.read_window("product_demand", as_of, as_of + dt.timedelta(days=1), columns=["COUNTRY", "PRODUCT", "PRICE"])
    series = series.join(prices, on=["COUNTRY", "PRODUCT"], how="left").with_columns(
        (pl.col("INCREMENTAL_UNITS") * pl.col("PRICE")).alias("INCREMENTAL_REVENUE"),
        (pl.col("CREDITED_INCREMENTAL_UNITS") * pl.col("PRICE")).alias("CREDITED_INCREMENTAL_REVENUE"),
    )
    spend_change = plan.join(bau.rename({"SPEND": "BAU_SPEND"}), on=["DATE", "COUNTRY", "CHANNEL"]).group_by("COUNTRY", "CHANNEL").agg(
        pl.col("BAU_SPEND").sum(), pl.col("SPEND").sum().alias("SCENARIO_SPEND")
    ).sort("COUNTRY", "CHANNEL")
    by_country = series.group_by("COUNTRY").agg(
        pl.col("BAU_UNITS").sum(), pl.col("SCENARIO_UNITS").sum(), pl.col("INCREMENTAL_UNITS").sum(), pl.col("CREDITED_INCREMENTAL_UNITS").sum(),
        pl.col("INCREMENTAL_REVENUE").sum(), pl.col("CREDITED_INCREMENTAL_REVENUE").sum(), pl.col("STOCKOUT_PROBABILITY_SCENARIO").mean().alias("MEAN_STOCKOUT_PROBABILITY"),
    ).join(spend_change.group_by("COUNTRY").agg(pl.col("BAU_SPEND").sum(), pl.col("SCENARIO_SPEND").sum()), on="COUNTRY").with_columns(
        ((pl.col("CREDITED_INCREMENTAL_REVENUE")) / (pl.col("SCENARIO_SPEND") - pl.col("BAU_SPEND"))).alias("CREDITED_REVENUE_PER_EXTRA_SPEND")
    ).sort("COUNTRY")
    written = store.overwrite("spend_scenario", daily.with_columns(pl.lit(config.name).alias("SCENARIO"), pl.lit(as_of).alias("DATE")))
    store.overwrite("spend_scenario_series", series.with_columns(pl.lit(config.name).alias("SCENARIO"), pl.lit(as_of).alias("DATE")))
    totals = daily.group_by("TARGET_DATE").agg(pl.col("BAU_MEAN").sum(), pl.col("SCENARIO_MEAN").sum(), pl.col("BAU_P50").sum(), pl.col("SCENARIO_P50").sum()).rename({"TARGET_DATE": "DATE"})
    context.log.info(f"scenario '{config.name}' as of {as_of}: {by_country['INCREMENTAL_UNITS'].sum():,.0f} incremental units, {by_country['CREDITED_INCREMENTAL_UNITS'].sum():,.0f} credited")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": written.rows,
        "delta_version": written.version,
        "scenario": config.name,
        "as_of": str(as_of),
        "incremental_units": float(by_country["INCREMENTAL_UNITS"].sum()),
        "credited_incremental_units": float(by_country["CREDITED_INCREMENTAL_UNITS"].sum()),
        "by_country": dg.MetadataValue.md(frame_to_markdown(by_country, max_rows=40)),
        "spend_plan": dg.MetadataValue.md(frame_to_markdown(spend_change, max_rows=60)),
        "forecast_bau_vs_scenario": dg.MetadataValue.md(line_chart_markdown(totals.sort("DATE"), "DATE", ["BAU_MEAN", "SCENARIO_MEAN"], title=f"Total daily demand forecast: business as usual vs '{config.name}'")),
    })
