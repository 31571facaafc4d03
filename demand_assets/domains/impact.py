"""Business-impact assets: what forecast error costs in money, per model, and what being in
stock is worth, per country x product."""

import datetime as dt

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field

from contracts import Table
from demand_assets.domains.forecasts import demand_forecast
from demand_assets.domains.models import model_backtest
from demand_assets.domains.raw import product_demand
from demand_assets.domains.reads import forecast_as_of
from demand_assets.domains.training import training_dataset
from demand_assets.impact.forecast_cost import forecast_error_cost as cost_table
from demand_assets.impact.forecast_cost import price_forecasts
from demand_assets.impact.instock import InstockSettings, stockout_profile
from demand_assets.impact.instock import instock_value as simulate_instock_value
from demand_assets.reporting import figure_to_markdown, frame_to_markdown, metric_comparison_figure, ranked_bar_figure
from resources import DeltaStore, EconomicsSettings, MlflowTracking

__all__ = ["InstockConfig", "forecast_error_cost", "instock_value"]


@dg.asset(group_name="impact", kinds={"deltalake", "mlflow"}, deps=[model_backtest, training_dataset])
def forecast_error_cost(context: dg.AssetExecutionContext, store: DeltaStore, economics: EconomicsSettings, mlflow_tracking: MlflowTracking):
    """The money cost of every backtested model's forecast errors: over-forecast units x holding
    cost, under-forecast units x lost margin (shares of each day's price, overridable per
    category or product). Stocking the newsvendor's critical-ratio quantile,
    margin / (margin + holding), instead of P50 is what the asymmetry asks for; SAVING is the money
    that saves. Scored on in-stock days against sales and, on synthetic data, against true demand."""
    forecasts = store.read_all(Table.BACKTEST_FORECASTS)
    start, end = forecasts["DATE"].min(), forecasts["DATE"].max()
    prices = (
        store.scan(Table.TRAINING_DATASET).filter(pl.col("DATE").is_between(start, end)).select("DATE", "COUNTRY", "PRODUCT", "PRICE", "CATEGORY").collect()
    )
    try:
        priced = price_forecasts(forecasts, prices)
        table = cost_table(priced, economics.economics(), economics.overrides())
    except ValueError as err:
        raise dg.Failure(description=f"forecast_error_cost was not written: {err}") from err
    written = store.overwrite(Table.FORECAST_ERROR_COST, table)
    context.log.info(f"costed {priced.height:,} backtest rows of {table['MODEL'].n_unique()} models")
    regime = "true_demand" if "true_demand" in table["REGIME"].to_list() else "in_stock"
    shown = table.filter(pl.col("REGIME") == regime)
    bars = pl.concat(
        [
            shown.select("MODEL", pl.lit("stock P50").alias("POLICY"), pl.col("COST_P50").alias("COST")),
            shown.select("MODEL", pl.lit("stock critical quantile").alias("POLICY"), pl.col("COST_CRITICAL").alias("COST")),
        ]
    )
    figure = metric_comparison_figure(bars, "COST", "MODEL", "POLICY", f"Money cost of forecast error ({regime.replace('_', ' ')})")
    with mlflow_tracking.run(
        "forecast_error_cost", tags={"stage": "impact", "delta_version.backtest_forecasts": str(store.version(Table.BACKTEST_FORECASTS))}
    ) as run:
        mlflow.log_params({"margin_rate": economics.margin_rate, "holding_rate": economics.holding_rate, "overrides": economics.overrides_csv or ""})
        for row in table.iter_rows(named=True):
            mlflow.log_metrics({f"cost_critical_{row['MODEL']}_{row['REGIME']}": row["COST_CRITICAL"], f"saving_{row['MODEL']}_{row['REGIME']}": row["SAVING"]})
        mlflow.log_figure(figure, "forecast_error_cost.png")
        run_url = mlflow_tracking.run_url(run.info.run_id)
    best = shown.sort("COST_CRITICAL").row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "delta_version": written.version,
            "cheapest_model": best["MODEL"],
            "cheapest_cost": best["COST_CRITICAL"],
            "critical_ratio": best["CRITICAL_RATIO"],
            "costs": dg.MetadataValue.md(frame_to_markdown(table, max_rows=40)),
            "cost_by_model": dg.MetadataValue.md(figure_to_markdown(figure, "cost by model")),
            "mlflow_run": dg.MetadataValue.url(run_url),
        }
    )


class InstockConfig(dg.Config):
    as_of: str | None = Field(default=None, description="YYYY-MM-DD: the forecast origin; empty: the newest demand_forecast day")
    history_days: int = Field(default=180, ge=28, description="days of stock history that set each series' stockout rate")
    n_samples: int = Field(default=500, ge=10, description="Monte Carlo paths per series")
    top_n: int = Field(default=20, ge=1, description="rows of the ranking shown in the metadata")


@dg.asset(group_name="impact", kinds={"deltalake"}, deps=[demand_forecast, product_demand])
def instock_value(context: dg.AssetExecutionContext, config: InstockConfig, store: DeltaStore, economics: EconomicsSettings):
    """Per country x product, the extra units, revenue and margin the forecast horizon would
    bring if the series never ran out of stock (counterfactual: always in stock) against running
    out as it recently has, with P10/P50/P90 from Monte Carlo over the forecast distribution and
    the stockout process. Ranked: where improving availability is worth most."""
    as_of, forecast = forecast_as_of(store, dt.date.fromisoformat(config.as_of) if config.as_of else None)
    history = store.read_window(
        Table.PRODUCT_DEMAND,
        as_of - dt.timedelta(days=config.history_days - 1),
        as_of + dt.timedelta(days=1),
        columns=["DATE", "COUNTRY", "PRODUCT", "PRODUCT_DEMAND", "IN_STOCK", "PRICE"],
    )
    settings = InstockSettings(n_samples=config.n_samples)
    profile = stockout_profile(history, settings)
    prices = history.filter(pl.col("DATE") == history["DATE"].max()).select("COUNTRY", "PRODUCT", "PRICE")
    try:
        table = simulate_instock_value(forecast, profile, prices, economics.margin_rate, settings)
    except ValueError as err:
        raise dg.Failure(description=f"instock_value was not written: {err}") from err
    table = table.with_columns(pl.lit(as_of).alias("AS_OF"), pl.lit(forecast["MODEL"][0]).alias("MODEL"))
    written = store.overwrite(Table.INSTOCK_VALUE, table)
    top = table.head(config.top_n)
    context.log.info(f"instock value as of {as_of}: {table['EXTRA_UNITS'].sum():,.0f} extra units over {table['HORIZON_DAYS'][0]} days")
    figure = ranked_bar_figure(
        top.with_columns((pl.col("COUNTRY") + " " + pl.col("PRODUCT")).alias("SERIES")),
        "SERIES",
        "EXTRA_MARGIN",
        "EXTRA_MARGIN_P10",
        "EXTRA_MARGIN_P90",
        f"Margin from never running out, next {table['HORIZON_DAYS'][0]} days (P10-P90)",
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "delta_version": written.version,
            "as_of": str(as_of),
            "extra_units_total": float(table["EXTRA_UNITS"].sum()),
            "extra_margin_total": float(table["EXTRA_MARGIN"].sum()),
            "forecast_units_total": float(table["FORECAST_UNITS"].sum()),
            "top": dg.MetadataValue.md(
                frame_to_markdown(
                    top.select(
                        "RANK",
                        "COUNTRY",
                        "PRODUCT",
                        "EXTRA_UNITS",
                        "EXTRA_UNITS_P10",
                        "EXTRA_UNITS_P90",
                        "EXTRA_MARGIN",
                        "EXTRA_MARGIN_P10",
                        "EXTRA_MARGIN_P90",
                        "STOCKOUT_START_RATE",
                        "OUT_NOW",
                    ),
                    max_rows=config.top_n,
                )
            ),
            "top_chart": dg.MetadataValue.md(figure_to_markdown(figure, "value of instock")),
        }
    )
