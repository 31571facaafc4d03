"""Per-series ETS (statsmodels): additive error, no trend, additive weekly seasonality.

A weekly series (`period_days` 7, one row a week) is fitted on its weeks with no seasonality:
its season is the year (52 weeks), which needs more than the two years of history a weekly
table usually has to estimate and is left to the models with a 52-week lag (LightGBM).

A classical local baseline: one small state-space model per series, with analytic 80%
prediction intervals as p10/p90. Counts are modelled as reals and clipped at zero. When
censoring-aware, stockout days are imputed with the series' recent in-stock mean of the same
weekday before fitting (ETS has no missing-value mask).

Fits are independent per series, so they go through an executor
(`demand_assets.forecasting.compute`): in process, a local process pool or a Dask cluster, with
the same forecasts on each. Without one (a model loaded from MLflow, a notebook) large panels
(M5: 30,490 series, ~0.06 s a fit) spread over worker processes, one per CPU; small panels, under
`min_series_per_job` series a worker, stay in-process.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import polars as pl
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from demand_assets.forecasting.compute import Executor, ProcessPool
from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.panel import KEYS, SERIES, TARGET
from demand_assets.forecasting.threads import thread_limit

__all__ = ["ETSForecaster"]


class ETSForecaster:
    name = "ets"
    period_days = 1  # models pickled before weekly sources were daily
    executor: Executor | None = None  # models pickled before the compute resource had none

    @staticmethod
    def input_columns(available: Sequence[str]) -> list[str]:
        """The training dataset's columns fit and predict read (keys, target, in-stock flag):
        a backtest unit or refit reads no others."""
        return [c for c in available if c in (*KEYS, TARGET, "IN_STOCK")]

    def __init__(
        self,
        *,
        history_days: int = 365,
        censoring_aware: bool = True,
        maxiter: int = 200,
        n_jobs: int | None = None,
        min_series_per_job: int = 500,
        period_days: int = 1,
        executor: Executor | None = None,
    ) -> None:
        self.history_days = history_days
        self.period_days = period_days  # days per row: 1, or 7 for a weekly series
        self.censoring_aware = censoring_aware
        self.maxiter = maxiter
        self.n_jobs = n_jobs  # worker processes; None: one per CPU
        self.min_series_per_job = min_series_per_job  # below this many series per process, stay serial
        self.executor = executor  # where the per-series fits run; None: a local pool of n_jobs processes

    def __getstate__(self) -> dict:
        # A registered model must not carry the step's executor (a Dask client does not pickle).
        return {**self.__dict__, "executor": None}

    def fit(self, train: pl.DataFrame) -> ETSForecaster:
        return self  # local models are fitted per series at predict time, on the history given

    def _series_values(self, history: pl.DataFrame) -> pl.DataFrame:
        origin: dt.date = history["DATE"].max()
        recent = history.select(*KEYS, TARGET, "IN_STOCK").filter(pl.col("DATE") > origin - dt.timedelta(days=self.history_days)).sort(KEYS)
        y = pl.col(TARGET).cast(pl.Float64)
        if self.censoring_aware:
            same_weekday = [*SERIES, pl.col("DATE").dt.weekday()]
            in_stock_mean = pl.when(pl.col("IN_STOCK")).then(y).rolling_mean(8, min_samples=1).over(same_weekday)
            imputed = pl.when(pl.col("IN_STOCK")).then(y).otherwise(in_stock_mean.forward_fill().over(same_weekday))
            y = imputed.fill_null(y)
        values = recent.select(*KEYS, y.alias("Y"))
        # ETS needs every period: days a source has no row for (M5: weeks an item is not listed)
        # take the same weekday's last value, else the series' mean.
        grid = (
            values.group_by(SERIES)
            .agg(pl.col("DATE").min().alias("_FIRST"))
            .with_columns(pl.date_ranges("_FIRST", pl.lit(origin), interval=f"{self.period_days}d").alias("DATE"))
            .explode("DATE")
            .drop("_FIRST")
        )
        weekday = [*SERIES, pl.col("DATE").dt.weekday()]
        return (
            grid.join(values, on=KEYS, how="left")
            .sort(KEYS)
            .with_columns(pl.col("Y").forward_fill().over(weekday).fill_null(pl.col("Y").mean().over(SERIES)).fill_null(0.0))
        )

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        origin: dt.date = history["DATE"].max()
        values = self._series_values(history)
        p = self.period_days
        horizon = (future["DATE"].max() - origin).days // p  # periods
        index = pd.date_range(origin + dt.timedelta(days=p), periods=horizon, freq=f"{p}D")
        grouped = values.group_by(SERIES, maintain_order=True).agg(pl.col("DATE").min().alias("START"), pl.col("Y"))
        tasks = [
            (f"series {country}/{product}", start, np.asarray(y, dtype=np.float64))
            for country, product, start, y in zip(
                grouped["COUNTRY"].to_list(), grouped["PRODUCT"].to_list(), grouped["START"].to_list(), grouped["Y"].to_list()
            )
        ]
        results = self._forecast_all(tasks, horizon)
        n = grouped.height
        bands = np.asarray(results, dtype=np.float64).reshape(n, 3, horizon)  # series x (mean, lo, hi) x day
        out = pl.DataFrame(
            {
                "DATE": pl.Series(list(index.date) * n, dtype=pl.Date),
                "COUNTRY": np.repeat(grouped["COUNTRY"].to_numpy(), horizon),
                "PRODUCT": np.repeat(grouped["PRODUCT"].to_numpy(), horizon),
                **{name: bands[:, i].reshape(-1) for i, name in enumerate(("MEAN", "LO", "HI"))},
            }
        )
        out = future.select(KEYS).join(out, on=KEYS, how="left").fill_null(0.0)
        point = out["MEAN"].to_numpy()
        return quantile_frame(out, point, out["LO"].to_numpy(), point, out["HI"].to_numpy())

    def _forecast_all(self, tasks: list[tuple[str, dt.date, np.ndarray]], horizon: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every series' fit and forecast, on the executor (default: `n_jobs` local processes)."""
        executor = self.executor or ProcessPool(max_workers=self.n_jobs)
        # One statsmodels fit is small matrices in Python: a second BLAS thread only spins. At M5
        # size, in the step's process on 2 threads, ETS used 1.96 cores for one core's work. The
        # fits that run here (in process, or too few for a pool) run on one thread; pool and Dask
        # workers already do.
        with thread_limit(1):
            return executor.map(
                _forecast_series,
                [(start, y) for _, start, y in tasks],
                args=(horizon, self.maxiter, self.period_days),
                labels=[label for label, _, _ in tasks],
                what="ets series",
                min_per_worker=self.min_series_per_job,
            )


def _forecast_series(task: tuple[dt.date, np.ndarray], horizon: int, maxiter: int, period_days: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, y = task
    return _forecast(pd.Series(y, index=pd.date_range(start, periods=len(y), freq=f"{period_days}D")), horizon, maxiter, period_days)


def _forecast(y: pd.Series, horizon: int, maxiter: int, period_days: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weekly = period_days == 7
    # Daily: three weeks for the weekly season; weekly (no season): eight weeks.
    if len(y) < (8 if weekly else 21) or np.nanstd(y.to_numpy()) == 0:
        # Too short or constant to fit: flat forecast at the recent mean (4 weeks), no spread.
        level = float(np.nanmean(y.to_numpy()[-(4 if weekly else 28) :])) if len(y) else 0.0
        flat = np.full(horizon, level)
        return flat, flat, flat
    season = {"seasonal": None} if weekly else {"seasonal": "add", "seasonal_periods": 7}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on intermittent series
        fit = ETSModel(y, error="add", trend=None, **season).fit(disp=False, maxiter=maxiter)
        frame = fit.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=0.2)
    return frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
