"""Next-event prediction from an event log's sessions (issue 21): the model, the day's purchase
intent with its at-risk flag, and the drift check that feeds the retraining sensor.

Both assets read the log itself (DEMAND_EVENTS_PATH), by the reader's rules; other sources have
no sessions and record them as not provided.
"""

import datetime as dt
import math
from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
from pydantic import Field, field_validator

from contracts import ContractContext, SourceFormatError, Table
from demand_assets.domains.models import MODEL_TRAINING_POOL
from demand_assets.domains.partitions import BACKFILL_POLICY, DAILY_DOWNSTREAM, daily_partitions
from demand_assets.domains.publishing import blocking_check_spec, contract_check, not_provided, not_provided_result, partition_dates, publish_window
from demand_assets.domains.raw import product_engagement
from demand_assets.next_event.evaluation import confusion_figure, next_event_scores, purchase_scores, reliability_figure
from demand_assets.next_event.registry import NEXT_EVENT_REGISTERED_MODEL, NextEventPyfunc
from demand_assets.next_event.sequences import SequenceReference, session_events, time_split
from demand_assets.next_event.suite import BAYES, MODEL_NAMES, at_cart, at_risk_threshold, choose_champion, compare_models, flag_scores, truth_probabilities
from demand_assets.reporting import figure_to_markdown, frame_to_markdown
from demand_assets.sources.events.reader import read_events
from resources import ComputeResource, DeltaStore, DemandSourceResource, MlflowTracking, MonitoringSettings

__all__ = ["NEXT_EVENT_DRIFT", "NextEventConfig", "PurchaseIntentConfig", "next_event_model", "purchase_intent"]

NEXT_EVENT_DRIFT = "next_event_drift"
PURCHASE_INTENT_CONTRACT = "purchase_intent_contract"
_SHOWN = ("MODEL", "ACCURACY", "MACRO_F1", "LOG_LOSS", "ECE", "PURCHASE_K3_ROC_AUC", "PURCHASE_AT_CART_ROC_AUC", "FIT_SECONDS", "SECONDS_PER_EPOCH")


class NextEventConfig(dg.Config):
    train_days: int = Field(default=28, ge=1, description="days of sessions the models learn from (sessions that start in them)")
    test_days: int = Field(default=7, ge=1, description="the newest days of sessions the models are scored on (no session in both)")
    models: list[str] = Field(default=list(MODEL_NAMES), min_length=1, description="next-event models to fit: " + ", ".join(MODEL_NAMES))
    epochs: int = Field(default=6, ge=1, description="training epochs of the GRU and the CNN + BiGRU (the best on validation is kept)")
    lgbm_rounds: int = Field(default=400, ge=10, description="most boosting rounds of the LightGBM models (stopped early on validation)")
    threshold: float | None = Field(
        default=None, gt=0, lt=1, description="P(purchase) below which a carted session is at risk; default the largest Youden's J of the flag on the test days"
    )

    @field_validator("models")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"rule 'next-event models are among {', '.join(MODEL_NAMES)}': got {unknown}")
        if "markov" not in value:
            raise ValueError("rule 'the Markov chain is fitted': the champion must beat it, so models must include markov")
        return value


def _log_path(source: DemandSourceResource) -> str | None:
    return source.events_path if source.kind == "events" else None


def _truth(path: str, sessions: pl.Series) -> pl.DataFrame | None:
    """The generator's next-event truth of `sessions`, beside a log written by demand-event-files, if any."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    file = folder / "truth" / "next_event.parquet"
    if not file.exists():
        return None
    return pl.scan_parquet(file).filter(pl.col("user_session").is_in(sessions.unique().implode())).collect()


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


@dg.asset(group_name="next_event", kinds={"pytorch", "lightgbm", "mlflow", "deltalake"}, deps=[product_engagement], pool=MODEL_TRAINING_POOL)
def next_event_model(
    context: dg.AssetExecutionContext,
    config: NextEventConfig,
    source: DemandSourceResource,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    compute: ComputeResource,
):
    """Shoppers' next action (view, cart, remove from cart, purchase, or the session's end) and
    whether the session still buys, from the events of its prefix. Sessions of the newest
    `train_days + test_days` days of the log, split by time; the majority class, a first-order
    Markov chain, LightGBM on prefix features, a GRU and a hybrid CNN + BiGRU (which reads only
    the prefix) are fitted on the earlier days and scored on the later ones; on a generated log
    the truth's Bayes-optimal scores are the noise floor. Each model is an MLflow run (params,
    metrics, confusion matrix, reliability diagram) and a version of `next_event`; the lowest
    log loss that beats the Markov chain gets the alias `champion`."""
    path = _log_path(source)
    if path is None:
        return not_provided_result(context, source.kind, "event sessions")
    if not store.exists(Table.PRODUCT_ENGAGEMENT):
        raise dg.Failure(description="next_event_model reads the event log up to product_engagement's newest day: materialize product_engagement first")
    end = store.last_date(Table.PRODUCT_ENGAGEMENT) + dt.timedelta(days=1)
    cut = end - dt.timedelta(days=config.test_days)
    start = cut - dt.timedelta(days=config.train_days)
    try:
        events = read_events(path, start, end, timezone=source.events_timezone, progress=context.log.info)
    except SourceFormatError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    train_events, test_events = time_split(events, cut)
    if train_events.is_empty() or test_events.is_empty():
        raise dg.Failure(description=f"the event log has no sessions in [{start}, {cut}) or [{cut}, {end}): widen train_days/test_days")
    reference = SequenceReference.fit(train_events)
    train, test = session_events(train_events, reference), session_events(test_events, reference)
    context.log.info(
        f"{train.sessions:,} training sessions ({train.rows:,} events, {start}..{cut - dt.timedelta(days=1)}); {test.sessions:,} test sessions ({test.rows:,} events)"
    )
    truth = _truth(path, test.frame["user_session"])
    truth_probs = truth_probabilities(test, truth) if truth is not None else None
    with compute.training_step(progress=context.log.info):
        comparison = compare_models(
            train,
            test,
            list(config.models),
            truth=truth_probs,
            epochs=config.epochs,
            rounds=config.lgbm_rounds,
            threads=compute.threads(),
            progress=context.log.info,
        )
    metrics = comparison.metrics
    champion, reason = choose_champion(metrics)
    context.log.info(reason)

    cart_rows = at_cart(test)
    later = test.purchase_later()
    tags = {
        "train_window": f"{start}...{cut - dt.timedelta(days=1)}",
        "test_window": f"{cut}...{end - dt.timedelta(days=1)}",
        "trained_until": str(end - dt.timedelta(days=1)),
    }
    versions, thresholds, flags = {}, {}, {}
    curves = {}
    for name, model in comparison.models.items():
        pred = comparison.predictions[name]
        threshold = config.threshold if config.threshold is not None else at_risk_threshold(pred.purchase[cart_rows], later[cart_rows])
        thresholds[name] = threshold
        flags[name] = flag_scores(pred.purchase[cart_rows] < threshold, ~later[cart_rows])
        row = metrics.filter(pl.col("MODEL") == name).row(0, named=True)
        curves[name] = (pred.next.max(axis=1), pred.next.argmax(axis=1) == test.next_class())
        with mlflow_tracking.run(f"next_event/{name}", tags=tags | {"model": name, "stage": "next_event"}):
            mlflow.log_params(
                model.params()
                | {"train_days": config.train_days, "test_days": config.test_days, "train_sessions": train.sessions, "test_sessions": test.sessions}
            )
            mlflow.log_metrics(
                _finite({k: v for k, v in row.items() if k != "MODEL"})
                | _finite({f"flag_{k}": v for k, v in flags[name].items()})
                | {"at_risk_threshold": threshold}
            )
            mlflow.log_figure(confusion_figure(pred.next, test.next_class(), f"{name}: next event on the test days"), "confusion_matrix.png")
            reliability = {name: curves[name]} | (
                {BAYES: (truth_probs.max(axis=1), truth_probs.argmax(axis=1) == test.next_class())} if truth_probs is not None else {}
            )
            mlflow.log_figure(reliability_figure(reliability, f"{name}: reliability of the top class"), "reliability_diagram.png")
            versions[name] = mlflow_tracking.for_model(NEXT_EVENT_REGISTERED_MODEL).log_and_register(
                NextEventPyfunc(model, reference, name, threshold),
                f"next_event_{name}",
                tags
                | {
                    "model": name,
                    "log_loss": f"{row['log_loss']:.6f}",
                    "ece": f"{row['ece']:.6f}",
                    "macro_f1": f"{row['macro_f1']:.6f}",
                    "threshold": f"{threshold:.6f}",
                },
            )
    registry = mlflow_tracking.for_model(NEXT_EVENT_REGISTERED_MODEL)
    if champion is not None:
        registry.set_champion(versions[champion])

    table = metrics.rename({c: c.upper() for c in metrics.columns}).with_columns(
        pl.col("MODEL").replace_strict(versions, default=None, return_dtype=pl.String).alias("MODEL_VERSION"),
        (pl.col("MODEL") == (champion or "")).alias("CHAMPION"),
        pl.col("MODEL").replace_strict(thresholds, default=None, return_dtype=pl.Float64).alias("AT_RISK_THRESHOLD"),
        pl.lit(start).alias("TRAIN_START"),
        pl.lit(cut).alias("TEST_START"),
        pl.lit(end).alias("TEST_END"),
    )
    written = store.overwrite(Table.NEXT_EVENT_METRICS, table)
    metadata: dict = {
        "dagster/row_count": written.rows,
        "delta_version": written.version,
        "scores": dg.MetadataValue.md(frame_to_markdown(table.select([c for c in _SHOWN if c in table.columns]), max_rows=10)),
        "champion": f"{champion} v{versions[champion]}" if champion else "none",
        "champion_reason": reason,
        "trained_until": str(end - dt.timedelta(days=1)),
        "reliability": dg.MetadataValue.md(figure_to_markdown(reliability_figure(curves, "top-class reliability on the test days"), "reliability")),
        "train_sessions": train.sessions,
        "test_sessions": test.sessions,
    }
    if champion is not None:
        best = metrics.filter(pl.col("MODEL") == champion).row(0, named=True)
        markov = metrics.filter(pl.col("MODEL") == "markov").row(0, named=True)
        metadata |= {
            "at_risk_threshold": round(thresholds[champion], 4),
            "at_risk_precision": round(flags[champion]["precision"], 4),
            "at_risk_recall": round(flags[champion]["recall"], 4),
            "macro_f1_over_markov": round(best["macro_f1"] - markov["macro_f1"], 4),
            "confusion_matrix": dg.MetadataValue.md(
                figure_to_markdown(confusion_figure(comparison.predictions[champion].next, test.next_class(), champion), "confusion")
            ),
        }
        if truth_probs is not None:
            bayes = metrics.filter(pl.col("MODEL") == BAYES).row(0, named=True)
            metadata["macro_f1_share_of_bayes"] = round(best["macro_f1"] / bayes["macro_f1"], 4)
    return dg.MaterializeResult(metadata=metadata)


class PurchaseIntentConfig(dg.Config):
    read_after_days: int = Field(default=1, ge=0, le=2, description="days of the log read after the window, so sessions that run past midnight are whole")


def _cart_contents(sequences_frame: pl.DataFrame) -> pl.DataFrame:
    """Per session: the products in its cart at its end (carted, not removed since) and their value."""
    moves = sequences_frame.filter(pl.col("event_type").is_in(["cart", "remove_from_cart"])).sort("user_session", "POSITION")
    last = moves.group_by("user_session", "product_id").agg(pl.col("event_type").last(), pl.col("price").last())
    held = last.filter(pl.col("event_type") == "cart")
    counted = held.group_by("user_session").agg(pl.len().cast(pl.Int64).alias("PRODUCTS_IN_CART"), pl.col("price").sum().alias("CART_VALUE"))
    return (
        moves.select("user_session")
        .unique()
        .join(counted, on="user_session", how="left")
        .with_columns(pl.col("PRODUCTS_IN_CART").fill_null(0), pl.col("CART_VALUE").fill_null(0.0).round(2))
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="next_event",
    automation_condition=DAILY_DOWNSTREAM,
    kinds={"mlflow", "deltalake", "pandera"},
    deps=[product_engagement, next_event_model],
    check_specs=[
        blocking_check_spec(
            PURCHASE_INTENT_CONTRACT,
            "purchase_intent",
            "Pandera contract PurchaseIntent: probabilities in [0, 1], one row per session, the flag below every unflagged score.",
        ),
        dg.AssetCheckSpec(
            NEXT_EVENT_DRIFT,
            asset="purchase_intent",
            description="The next-event champion's realised log loss and calibration on the day's sessions against its test scores; a failure requests retraining.",
        ),
    ],
)
def purchase_intent(
    context: dg.AssetExecutionContext,
    config: PurchaseIntentConfig,
    source: DemandSourceResource,
    store: DeltaStore,
    mlflow_tracking: MlflowTracking,
    monitoring: MonitoringSettings,
):
    """Per day, the sessions that put something in the cart, scored by the `next_event` champion
    as of their first cart event (the first moment a shop could act): P_PURCHASE of a purchase
    still to come, AT_RISK when it is below the champion's threshold, with the session's user,
    the products left in its cart and their value, and whether it bought. The champion's
    realised next-event log loss and calibration on the day's sessions feed the drift check."""
    start, end = partition_dates(context)
    path = _log_path(source)
    if path is None:
        yield from not_provided(context, source.kind, "event sessions", [PURCHASE_INTENT_CONTRACT, NEXT_EVENT_DRIFT])
        return
    registry = mlflow_tracking.for_model(NEXT_EVENT_REGISTERED_MODEL)
    version = registry.champion_version()
    if version is None:
        raise dg.Failure(description=f"no 'champion' version of {NEXT_EVENT_REGISTERED_MODEL}: materialize next_event_model first")
    model: NextEventPyfunc = registry.load(version).unwrap_python_model()
    tested = registry.version_tags(version)
    try:
        events = read_events(path, start, end + dt.timedelta(days=config.read_after_days), timezone=source.events_timezone, progress=context.log.info)
    except SourceFormatError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    events = events.filter(pl.col("event_time").min().over("user_session").dt.date().is_between(start, end, closed="left"))
    sequences, probs = model.score(events)
    frame = pl.concat([sequences.frame, probs], how="horizontal")
    realised = (
        next_event_scores(probs.select([c for c in probs.columns if c != "P_PURCHASE_LATER"]).to_numpy(), sequences.next_class()) if sequences.rows else {}
    )
    carts = frame[at_cart(sequences)] if sequences.rows else frame
    scored = carts.join(_cart_contents(frame), on="user_session", how="left").select(
        pl.col("START_DATE").alias("DATE"),
        pl.col("user_session").alias("USER_SESSION"),
        pl.col("user_id").cast(pl.String).alias("USER_ID"),
        pl.col("PRODUCTS_IN_CART").fill_null(0),
        pl.col("CART_VALUE").fill_null(0.0),
        pl.col("P_PURCHASE_LATER").clip(0.0, 1.0).alias("P_PURCHASE"),
        (pl.col("P_PURCHASE_LATER") < model.threshold).alias("AT_RISK"),
        pl.col("PURCHASE_LATER").alias("PURCHASED"),
        pl.lit(model.model_name).alias("MODEL"),
        pl.lit(version).alias("MODEL_VERSION"),
    )
    purchase = purchase_scores(scored["P_PURCHASE"].to_numpy(), scored["PURCHASED"].to_numpy()) if scored.height else {}
    flag = flag_scores(scored["AT_RISK"].to_numpy(), ~scored["PURCHASED"].to_numpy()) if scored.height else {}
    drift = _drift_result(realised, tested, monitoring, sessions=sequences.sessions if sequences.rows else 0)
    ctx = ContractContext(start, end, {})

    def chunks():
        for day in (start + dt.timedelta(days=i) for i in range((end - start).days)):
            part = scored.filter(pl.col("DATE") == day).sort("USER_SESSION")
            if part.height:
                yield part

    def describe(summary: pl.DataFrame) -> dict:
        flagged = summary.filter(pl.col("AT_RISK"))
        return {
            "model": f"{model.model_name} v{version}",
            "threshold": round(model.threshold, 4),
            "carted_sessions": summary.height,
            "flagged_sessions": flagged.height,
            "flagged_cart_value": round(float(flagged["CART_VALUE"].sum()), 2),
            "flag_precision": round(flag.get("precision", float("nan")), 4),
            "flag_recall": round(flag.get("recall", float("nan")), 4),
            "purchase_roc_auc": round(purchase.get("roc_auc", float("nan")), 4),
            "realised_next_event": dg.MetadataValue.json({k: round(v, 4) for k, v in _finite(realised).items()}),
        }

    if scored.is_empty():
        context.log.warning(f"no session with a cart started in [{start}, {end}): nothing to score")
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": "no carted sessions in the window"})
        yield dg.AssetCheckResult(check_name=PURCHASE_INTENT_CONTRACT, passed=True, metadata={"rows_checked": 0})
        yield drift
        return
    yield from publish_window(
        context, store, "purchase_intent", chunks(), [contract_check(Table.PURCHASE_INTENT, PURCHASE_INTENT_CONTRACT, ctx)], describe=describe
    )
    yield drift


def _drift_result(realised: dict[str, float], tested: dict[str, str], monitoring: MonitoringSettings, *, sessions: int) -> dg.AssetCheckResult:
    """Passed unless the day's log loss exceeds the tested one by more than the ratio, or its
    calibration error exceeds the limit."""
    if not realised:
        return dg.AssetCheckResult(check_name=NEXT_EVENT_DRIFT, passed=True, metadata={"sessions": 0, "note": "no sessions that day"})
    tested_loss = float(tested.get("log_loss", "nan"))
    ratio = realised["log_loss"] / tested_loss if tested_loss > 0 else float("nan")
    reasons = []
    if math.isfinite(ratio) and ratio > monitoring.next_event_log_loss_ratio:
        reasons.append(f"log loss {realised['log_loss']:.4f} is {ratio:.2f}x the tested {tested_loss:.4f} (limit {monitoring.next_event_log_loss_ratio}x)")
    if realised["ece"] > monitoring.next_event_ece:
        reasons.append(f"calibration error {realised['ece']:.4f} above {monitoring.next_event_ece}")
    return dg.AssetCheckResult(
        check_name=NEXT_EVENT_DRIFT,
        passed=not reasons,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(reasons) if reasons else f"log loss {realised['log_loss']:.4f} ({ratio:.2f}x tested), ECE {realised['ece']:.4f}",
        metadata={
            "sessions": sessions,
            "realised_log_loss": round(realised["log_loss"], 4),
            "tested_log_loss": round(tested_loss, 4),
            "log_loss_ratio": round(ratio, 4) if math.isfinite(ratio) else None,
            "realised_ece": round(realised["ece"], 4),
            "realised_accuracy": round(realised["accuracy"], 4),
        },
    )
