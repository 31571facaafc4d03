"""Model assets: the registered champion, refitted from the backtest (domains/backtest.py).

The backtest records the settings it ran with (`backtest_settings`); champion_model refits
with exactly those, so what is registered is what was backtested.
"""

import datetime as dt
import json
import os
import socket
import time
from dataclasses import dataclass

import dagster as dg
import mlflow
import polars as pl

from contracts import Table
from demand_assets.domains.backtest import MODEL_TRAINING_POOL, ForecastingConfig, model_backtest
from demand_assets.domains.drift import write_drift_reference
from demand_assets.domains.raw import product_demand_truth
from demand_assets.domains.reads import backtest_record
from demand_assets.domains.training import training_dataset
from demand_assets.forecasting.compute import peak_rss_gb
from demand_assets.forecasting.metrics import Regime
from demand_assets.forecasting.registry import CHAMPION_ALIAS, ForecasterPyfunc, choose_champion, forecast_request, predict_request
from demand_assets.forecasting.suite import BASELINE, UNCENSORED_SUFFIX, SuiteSettings, input_columns, model_factories
from demand_assets.monitoring.promotion import Incumbent, compare_with_incumbent
from resources import ComputeResource, DeltaStore, MlflowTracking, MonitoringSettings

__all__ = ["MODEL_TRAINING_POOL", "ForecastingConfig", "champion_model", "model_backtest"]


def _incumbent(tracking: MlflowTracking) -> Incumbent | None:
    version = tracking.champion_version(CHAMPION_ALIAS)
    if version is None:
        return None
    tags = tracking.version_tags(version)
    return Incumbent(tags.get("model", "unknown"), version, dt.date.fromisoformat(tags["trained_until"]))


@dataclass(frozen=True)
class RefitPlan:
    """What every refit unit and the promotion agree on: the backtest's settings and one
    version of the training window."""

    models: tuple[str, ...]
    candidates: tuple[str, ...]
    history_days: int
    regime: Regime
    suite_json: str
    window_start: dt.date
    window_end: dt.date
    dataset_version: int
    tags: dict[str, str]

    def read(self, store: DeltaStore, model: str | None = None) -> pl.DataFrame:
        """The window at the plan's version: every column, or only those `model` reads (`input_columns`)."""
        columns = None if model is None else input_columns(model, store.scan(Table.TRAINING_DATASET, version=self.dataset_version).collect_schema().names())
        end = self.window_end + dt.timedelta(days=1)
        return store.read_window(Table.TRAINING_DATASET, self.window_start, end, columns, version=self.dataset_version)


@dataclass(frozen=True)
class Refit:
    model: str
    version: str
    seconds: float
    host: str
    pid: int


@dg.op(
    ins={"model_backtest": dg.In(dg.Nothing), "training_dataset": dg.In(dg.Nothing), "product_demand_truth": dg.In(dg.Nothing)},
    out={"plan": dg.Out(RefitPlan), "models": dg.DynamicOut(str)},
    tags={"kind": "plan"},
)
def plan_refit(context: dg.OpExecutionContext, store: DeltaStore):
    """The models to refit (every backtested model but the uncensored-training references) on
    the newest window of the training dataset, pinned to its current version."""
    models, history_days, regime, suite = backtest_record(store)
    candidates = tuple(name for name in models if not name.endswith(UNCENSORED_SUFFIX))  # references are never registered
    version = store.version(Table.TRAINING_DATASET)
    if version is None:
        raise dg.Failure(description="no training_dataset yet: materialize training_dataset first", allow_retries=False)
    end = store.scan(Table.TRAINING_DATASET, version=version).select(pl.col("DATE").max()).collect().item()
    start = end - dt.timedelta(days=history_days - 1)
    tags = {"partition_range": f"{start}...{end}", "delta_version.training_dataset": str(version)}
    plan = RefitPlan(tuple(models), candidates, history_days, regime, suite.to_json(), start, end, version, tags)
    context.log.info(f"refitting {list(candidates)} on {start}..{end} (training_dataset v{version})")
    yield dg.Output(plan, "plan")
    for name in candidates:
        yield dg.DynamicOutput(name, output_name="models", mapping_key=name)


@dg.op(pool=MODEL_TRAINING_POOL, retry_policy=dg.RetryPolicy(max_retries=1, delay=5), tags={"kind": "train"})
def refit_model(
    context: dg.OpExecutionContext, plan: RefitPlan, name: str, store: DeltaStore, mlflow_tracking: MlflowTracking, compute: ComputeResource
) -> Refit:
    """Refit one model with the settings it was backtested with, log it as an MLflow pyfunc
    and register it as a version of the `demand_forecast` model (without an alias)."""
    started = time.perf_counter()
    dataset = plan.read(store, name)
    with compute.training_step(progress=context.log.info) as executor:
        model = model_factories(SuiteSettings.from_json(plan.suite_json), executor)[name]().fit(dataset)
    context.log.info(f"refitted {name} on {dataset.height:,} rows in {time.perf_counter() - started:.1f}s")
    wape_row = store.read_all(Table.BACKTEST_METRICS).filter((pl.col("FOLD") == -1) & (pl.col("MODEL") == name) & (pl.col("REGIME") == plan.regime))["WAPE"]
    tags = plan.tags | {"model": name}
    with mlflow_tracking.run(f"train/{name}", tags=tags | {"stage": "train"}) as run:
        mlflow.log_param("model", name)
        if not wape_row.is_empty():
            mlflow.log_metric(f"backtest_{plan.regime}_wape", float(wape_row[0]))
        version = mlflow_tracking.log_and_register(
            ForecasterPyfunc(model, name), name, tags | {"trained_until": str(plan.window_end), "mlflow_run": run.info.run_id}
        )
    seconds = time.perf_counter() - started
    context.log.info(f"registered {name} as version {version}")
    context.add_output_metadata(
        {"version": version, "host": socket.gethostname(), "pid": os.getpid(), "seconds": round(seconds, 2), "peak_rss_gb": peak_rss_gb()}
    )
    return Refit(name, version, seconds, socket.gethostname(), os.getpid())


@dg.op(ins={"plan": dg.In(RefitPlan), "refits": dg.In(list)}, tags={"kind": "publish"})
def promote_champion(
    context: dg.OpExecutionContext, plan: RefitPlan, refits: list, store: DeltaStore, mlflow_tracking: MlflowTracking, monitoring: MonitoringSettings
):
    """The challenger (lowest backtest WAPE on the champion regime's days that also beats
    seasonal naive) takes the alias `champion` only if it also beats the current champion on the
    same backtest days; a new champion's training window becomes the drift reference."""
    versions = {refit.model: refit.version for refit in sorted(refits, key=lambda r: plan.candidates.index(r.model))}
    missing = [name for name in plan.candidates if name not in versions]
    if missing:
        raise dg.Failure(description=f"models without a refit: {missing}", allow_retries=False)
    overall = store.read_all(Table.BACKTEST_METRICS).filter(pl.col("FOLD") == -1)
    challenger, challenger_reason = choose_champion(overall, baseline=BASELINE, regime=plan.regime, candidates=list(plan.candidates))
    dataset = plan.read(store)
    incumbent = _incumbent(mlflow_tracking)
    if challenger is None and incumbent is None and BASELINE in versions:
        # Nothing beat the baseline and nothing is served yet: the baseline is a forecast too,
        # and demand_forecast needs a champion. A later model that beats it replaces it.
        challenger, challenger_reason = BASELINE, f"{challenger_reason}; with no champion yet, the baseline {BASELINE} serves the forecasts"
    frozen = None
    if incumbent is not None:
        loaded = mlflow_tracking.load(incumbent.version)
        frozen = lambda origin, horizon: predict_request(loaded, forecast_request(dataset, origin, horizon, history_days=400))  # noqa: E731
    decision = compare_with_incumbent(
        overall=overall,
        forecasts=store.read_all(Table.BACKTEST_FORECASTS),
        challenger=challenger,
        challenger_reason=challenger_reason,
        regime=plan.regime,
        incumbent=incumbent,
        frozen_forecast=frozen,
        progress=context.log.info,
    )
    previous = incumbent.version if incumbent is not None else None
    context.log.info(f"promotion decision: {decision.reason}")
    trained_until = str(plan.window_end)
    reference_version = None
    if decision.promote and challenger is not None:
        mlflow_tracking.set_champion(versions[challenger], CHAMPION_ALIAS)
        reference_version = write_drift_reference(store, dataset, rows=monitoring.reference_rows, model_version=versions[challenger])
        context.log.info(f"{challenger} v{versions[challenger]} is the champion; its training window is the new drift reference")
    champion = mlflow_tracking.champion_version(CHAMPION_ALIAS)
    numbers = {k: v for k, v in decision.as_dict().items() if isinstance(v, float)}
    with mlflow_tracking.run("champion_selection", tags=plan.tags | {"stage": "promotion"}):
        mlflow.log_params(
            {
                "challenger": challenger or "none",
                "incumbent": decision.incumbent or "none",
                "promoted": decision.promote,
                "previous_champion_version": previous or "none",
                "champion_version": champion or "none",
            }
        )
        mlflow.log_metrics(numbers)
        mlflow.set_tag("decision", decision.reason)
        mlflow.set_tag("compared_on", decision.compared_on)
    return dg.Output(
        None,
        metadata={
            "decision": decision.reason,
            "promoted": decision.promote,
            "challenger": challenger or "none",
            "incumbent": decision.incumbent or "none",
            "compared_on": decision.compared_on,
            **{k: dg.MetadataValue.float(v) for k, v in numbers.items()},
            "champion_model": (challenger if decision.promote else decision.incumbent) or "none",
            "champion_version": champion or "none",
            "previous_champion_version": previous or "none",
            "trained_until": trained_until,
            "refit_settings": dg.MetadataValue.json(json.loads(plan.suite_json)),
            "drift_reference_version": reference_version if reference_version is not None else "unchanged",
            "registered_versions": dg.MetadataValue.json(versions),
            "refit_seconds": dg.MetadataValue.json({r.model: round(r.seconds, 1) for r in refits}),
            "processes": len({r.pid for r in refits}),
            "registered_model": mlflow_tracking.registered_model,
            **{f"lineage/{k}": v for k, v in plan.tags.items()},
        },
    )


@dg.graph_asset(
    group_name="models",
    kinds={"mlflow", "deltalake"},
    ins={
        "model_backtest": dg.AssetIn(model_backtest.key, dagster_type=dg.Nothing),
        "training_dataset": dg.AssetIn(training_dataset.key, dagster_type=dg.Nothing),
        "product_demand_truth": dg.AssetIn(product_demand_truth.key, dagster_type=dg.Nothing),
    },
)
def champion_model(model_backtest, training_dataset, product_demand_truth):
    """Every backtested model, refitted with the settings it was backtested with (from
    backtest_settings) on the newest training window, one step per model (in the
    `model_training` pool), each logged as an MLflow pyfunc and registered as a version of the
    `demand_forecast` model. The challenger is the model with the lowest backtest WAPE on in-stock
    days that also beats seasonal naive; it takes the alias `champion` only if it also beats the
    current champion on the same backtest days (the frozen champion on folds after its training
    window). The decision and its numbers go to MLflow and to this asset's metadata; a new
    champion's training window becomes the drift reference."""
    plan, models = plan_refit(model_backtest=model_backtest, training_dataset=training_dataset, product_demand_truth=product_demand_truth)
    refits = models.map(lambda name: refit_model(plan, name))
    return promote_champion(plan, refits.collect())
