"""Challenger against champion: is a retrained model good enough to take over?

The challenger is the best model family of the new backtest (lowest WAPE on the chosen regime
that also beats seasonal naive). It is compared with the incumbent champion on the same days:

- On the folds whose test days all lie after the incumbent's training window, the incumbent
  itself (the registered model, frozen) forecasts each fold from the same history the
  challenger's fold model had, and both are scored on the same days. Neither saw those days.
- If no fold lies after the incumbent's training window (retraining right after training),
  the incumbent's family, refitted on each fold in the same backtest, stands in for it.

Promotion needs a strictly lower WAPE, except that a challenger of the incumbent's own family
compared on the refitted stand-in (identical scores by construction) is promoted: it is the
same model trained on newer data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass

import polars as pl

from demand_assets.forecasting.metrics import Regime, regime_wape

__all__ = ["Incumbent", "PromotionDecision", "compare_with_incumbent", "decide_promotion"]

# (origin, horizon) -> the frozen champion's forecast of the days after origin: DATE, COUNTRY,
# PRODUCT, MEAN, P10, P50, P90.
FrozenForecast = Callable[[dt.date, int], pl.DataFrame]


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    challenger: str | None
    incumbent: str | None
    challenger_wape: float | None
    incumbent_wape: float | None
    compared_on: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    *,
    challenger: str | None,
    challenger_reason: str,
    incumbent: str | None,
    challenger_wape: float | None,
    incumbent_wape: float | None,
    frozen_incumbent: bool,
    compared_on: str,
) -> PromotionDecision:
    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, challenger, incumbent, challenger_wape, incumbent_wape, compared_on, reason)

    if challenger is None:
        return decision(False, f"no challenger: {challenger_reason}; the champion stays")
    if incumbent is None:
        return decision(True, f"first champion: {challenger_reason}")
    if challenger_wape is None or incumbent_wape is None:
        return decision(False, f"cannot compare {challenger} with the champion {incumbent} on the same days; the champion stays")
    versus = f"{challenger} WAPE {challenger_wape:.4f} vs champion {incumbent} {incumbent_wape:.4f} on {compared_on}"
    if challenger_wape < incumbent_wape:
        return decision(True, f"promoted: {versus}")
    if challenger == incumbent and not frozen_incumbent:
        return decision(True, f"promoted: the champion's family retrained on newer data ({versus})")
    return decision(False, f"not promoted: {versus}")


@dataclass(frozen=True)
class Incumbent:
    """The current champion as the registry knows it."""

    model: str  # its family, e.g. lightgbm
    version: str
    trained_until: dt.date


def compare_with_incumbent(
    *,
    overall: pl.DataFrame,
    forecasts: pl.DataFrame,
    challenger: str | None,
    challenger_reason: str,
    regime: Regime,
    incumbent: Incumbent | None,
    frozen_forecast: FrozenForecast | None = None,
    progress: Callable[[str], None] | None = None,
) -> PromotionDecision:
    """The challenger against the incumbent on the same backtest days (see the module docstring).

    `overall`: the backtest's all-folds metrics (MODEL, REGIME, WAPE); `forecasts`: its
    forecasts (MODEL, FOLD, DATE, keys, quantiles, ACTUAL, IN_STOCK, maybe TRUE_DEMAND);
    `frozen_forecast` predicts with the registered incumbent, used on folds after its training
    window.
    """
    if incumbent is None or challenger is None:
        return decide_promotion(
            challenger=challenger,
            challenger_reason=challenger_reason,
            incumbent=None if incumbent is None else "current champion",
            challenger_wape=None,
            incumbent_wape=None,
            frozen_incumbent=False,
            compared_on="-",
        )
    windows = forecasts.group_by("FOLD").agg(pl.col("DATE").min().alias("START"), pl.col("DATE").max().alias("END")).sort("FOLD")
    fresh = windows.filter(pl.col("START") > incumbent.trained_until)
    if fresh.is_empty() or frozen_forecast is None:
        scores = dict(overall.filter(pl.col("REGIME") == regime).select("MODEL", "WAPE").iter_rows())
        compared_on = (
            f"all {windows.height} backtest folds (no fold lies after the champion's training window, which ends "
            f"{incumbent.trained_until}; its family refitted per fold stands in)"
        )
        return decide_promotion(
            challenger=challenger,
            challenger_reason=challenger_reason,
            incumbent=incumbent.model,
            challenger_wape=scores.get(challenger),
            incumbent_wape=scores.get(incumbent.model),
            frozen_incumbent=False,
            compared_on=compared_on,
        )
    frozen, mine = [], []
    for fold, start, end in fresh.iter_rows():
        origin = start - dt.timedelta(days=1)
        predicted = frozen_forecast(origin, (end - origin).days)
        challenger_rows = forecasts.filter((pl.col("FOLD") == fold) & (pl.col("MODEL") == challenger))
        mine.append(challenger_rows)
        frozen.append(
            challenger_rows.drop("MEAN", "P10", "P50", "P90").join(
                predicted.select("DATE", "COUNTRY", "PRODUCT", "MEAN", "P10", "P50", "P90"), on=["DATE", "COUNTRY", "PRODUCT"]
            )
        )
        if progress is not None:
            progress(f"scored the frozen champion v{incumbent.version} ({incumbent.model}) on fold {fold} ({start}..{end})")
    compared_on = f"{regime} days of folds {fresh['FOLD'].to_list()} ({fresh['START'].min()}..{fresh['END'].max()}), after the champion's training window"
    return decide_promotion(
        challenger=challenger,
        challenger_reason=challenger_reason,
        incumbent=incumbent.model,
        challenger_wape=regime_wape(pl.concat(mine), regime),
        incumbent_wape=regime_wape(pl.concat(frozen), regime),
        frozen_incumbent=True,
        compared_on=compared_on,
    )
