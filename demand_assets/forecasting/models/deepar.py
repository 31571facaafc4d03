"""GluonTS DeepAR (torch): a global autoregressive RNN with a negative-binomial output.

Static categories: country and product. Dynamic real features known in advance: log price
relative to the series' median price, promotion, log of the country's planned spend, public
holiday, the source's own calendar flags where it has them (M5: SNAP and event days), and a
table source's declared covariates, standardised with the training days' mean and deviation:
known ones (KNOWN_<NAME>) on their day, observed ones lagged (OBSERVED_<NAME>_LAG_k).
GluonTS adds its own calendar features and an age feature. Forecasts are sample paths,
summarised to mean and p10/p50/p90.

Censoring (sales are capped by stock on stockout days): stockout days enter as NaN targets, which GluonTS turns into its
`observed_values` mask: they are left out of the loss and imputed in the network's input.

A weekly series (`DeepARConfig.period_days` 7: one row a week, on its week day) is a GluonTS
series of weekly periods (freq W-<its weekday>, the week ending that day): prediction and
context lengths and lags are then in weeks (`WEEKLY_LAGS`: up to 52, the same week last year).

Training runs on a GPU when one is present (Lightning's accelerator="auto"), else on the CPU.
Lightning's checkpoints go to a temporary folder, never to the working directory.

Inference (the sample paths) is batched: the series go in chunks of `SAMPLE_CHUNK`, each drawn
with its own seed (the model's seed + the chunk's index), through the model's `executor` (the
step's compute backend: in process, a local process pool or a Dask cluster). The chunks do not
depend on the backend, so neither do the forecasts. At M5 size inference is most of DeepAR's
time (predict 146 s against fit 36 s on 2 cores) and 8 of the hybrid's DeepAR passes. A model
on a GPU samples in its own process: one device batch beats shipping the network to CPU workers.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl

from demand_assets.forecasting.compute import Executor, InProcess
from demand_assets.forecasting.models.base import quantile_frame
from demand_assets.forecasting.panel import KEYS, QUANTILES, SERIES, TARGET, covariate_columns

__all__ = ["SAMPLE_CHUNK", "WEEKLY_LAGS", "DeepARConfig", "DeepARForecaster"]

log = logging.getLogger(__name__)
_BASE_FEATURES = ["LOG_RELATIVE_PRICE", "PROMO", "LOG_SPEND", "IS_HOLIDAY"]
# A source's own calendar flags (M5: SNAP days per state, sporting/cultural/religious events).
_CALENDAR_FLAGS = ["SNAP", "IS_EVENT"]
# GluonTS 0.16 indexes tensors with a list on every prediction step; torch warns each time.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing", category=UserWarning)
# Lags of a weekly series, in weeks: the last month, a quarter, half a year, a year.
WEEKLY_LAGS = (1, 2, 3, 4, 8, 13, 26, 52)
_WEEKDAY_CODES = {1: "MON", 2: "TUE", 3: "WED", 4: "THU", 5: "FRI", 6: "SAT", 7: "SUN"}
# Series per inference chunk, whatever the backend: each chunk draws its sample paths from its own
# seed, so the forecasts do not depend on where the chunks run. 1,024 series x 200 paths x 28 days
# is 23 MB of samples a chunk, and M5's 30,490 series are 30 chunks.
SAMPLE_CHUNK = 1024


@dataclass(frozen=True)
class DeepARConfig:
    prediction_length: int = 28
    context_length: int = 56
    hidden_size: int = 40
    num_layers: int = 2
    dropout_rate: float = 0.1
    lr: float = 1e-3
    batch_size: int = 64
    num_batches_per_epoch: int = 50
    max_epochs: int = 20
    num_samples: int = 200
    lags_seq: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 14, 21, 28)
    seed: int = 0
    trainer_kwargs: dict = field(default_factory=dict)
    period_days: int = 1  # days per step: 1, or 7 for a weekly series (lengths and lags are then weeks)


class DeepARForecaster:
    name = "deepar"
    executor: Executor | None = None  # models pickled before batched inference had none

    def __init__(self, config: DeepARConfig | None = None, *, censoring_aware: bool = True, executor: Executor | None = None) -> None:
        self.config = config or DeepARConfig()
        self.censoring_aware = censoring_aware
        self.executor = executor  # where the sample-path chunks are drawn; None: in this process
        self.predictor = None
        self.vocab: dict[str, dict[str, int]] = {}
        self.median_price: pl.DataFrame | None = None
        self.calendar_flags: list[str] = []
        self.covariates: dict[str, tuple[float, float]] = {}  # a table source's covariate -> (mean, deviation) on the training days

    @staticmethod
    def input_columns(available: Sequence[str]) -> list[str]:
        """The training dataset's columns fit and predict read, of those `available`: keys, target,
        in-stock flag and what `_dynamic` builds its features from (10 of M5's 21: no target
        lags or rolling means, which DeepAR takes from the target itself)."""
        base = {*KEYS, TARGET, "IN_STOCK", "PRICE", "PROMO", "IS_HOLIDAY", *_CALENDAR_FLAGS, *covariate_columns(available)}
        return [c for c in available if c in base or (c.startswith("SPEND_") and "_LAG_" not in c)]

    # ------------------------------------------------------------------ data
    def _dynamic(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Known-in-advance features per DATE x series (works on history and future frames)."""
        spend_cols = [c for c in frame.columns if c.startswith("SPEND_") and "_LAG_" not in c]
        spend = pl.sum_horizontal(spend_cols) if spend_cols else pl.lit(0.0)
        flags = [pl.col(c).cast(pl.Float64) if c in frame.columns else pl.lit(0.0).alias(c) for c in self.calendar_flags]
        covariates = getattr(self, "covariates", {})  # models pickled before covariates have none
        scaled = [((pl.col(c).cast(pl.Float64) - m) / d).alias(c) if c in frame.columns else pl.lit(0.0).alias(c) for c, (m, d) in covariates.items()]
        features = [
            (pl.col("PRICE") / pl.col("MEDIAN_PRICE")).log().fill_null(0.0).alias("LOG_RELATIVE_PRICE"),
            pl.col("PROMO").cast(pl.Float64),
            spend.log1p().alias("LOG_SPEND"),
            pl.col("IS_HOLIDAY").cast(pl.Float64),
            *flags,
            *scaled,
        ]
        # Lazy, so that the join carries only the columns selected (an eager join copies every
        # column of the frame first: at M5 size the whole training window again). Computed in
        # float64 and kept as float32, as the entries hold them: half the bytes (1 GB at M5 size).
        return frame.lazy().join(self.median_price.lazy(), on=SERIES, how="left").select(*KEYS, *(f.cast(pl.Float32) for f in features)).collect()

    @property
    def dynamic_features(self) -> list[str]:
        return [*_BASE_FEATURES, *self.calendar_flags, *getattr(self, "covariates", {})]

    def _entries(self, history: pl.DataFrame, covariates: pl.DataFrame, *, end: dt.date) -> list[dict]:
        """One GluonTS entry per series: target up to the history's end, features up to `end`.

        Dense and linear in the rows: series and days become integer positions and the values
        are scattered into (series x days) arrays, so 30,490 M5 series cost one pass, not one
        scan of the panel per series. Missing feature days carry the last known value
        forward (0 before the first); missing target days are NaN (unobserved).
        """
        from gluonts.dataset.field_names import FieldName

        start = history["DATE"].min()
        p = self.config.period_days
        n_days = (end - start).days // p + 1  # periods
        n_hist = (history["DATE"].max() - start).days // p + 1
        # Sorted, not in the rows' order: the entries' order decides the training batches and which
        # chunk (and seed) a series is sampled in, and the same data stored in another row order
        # (another Delta file layout) must give the same model and the same forecasts.
        # Unique on categorical keys: on 22 M rows of strings it held 2 GB at M5 size.
        series = (
            covariates.lazy()
            .select(pl.col(SERIES).cast(pl.Categorical))
            .unique()
            .with_columns(pl.col(SERIES).cast(pl.String))
            .collect()
            .sort(SERIES)
            .with_row_index("_S")
        )
        n = series.height

        def dense(frame: pl.DataFrame, columns: list[str], width: int) -> np.ndarray:
            """series x columns x periods (NaN where the frame has no row)."""
            # Each row's (series, period) once, then the columns one at a time in the rows' own
            # order: a joined copy of every column would be 0.9 GB more at M5 size.
            at = (
                frame.lazy()
                .select(*SERIES, "DATE")
                .join(series.lazy(), on=SERIES, how="left", maintain_order="left")
                .select(pl.col("_S").fill_null(0), ((pl.col("DATE") - pl.lit(start)).dt.total_days() // p).alias("_D"), pl.col("_S").is_not_null().alias("_IN"))
                .collect()
            )
            keep = (at["_IN"] & at["_D"].is_between(0, width - 1)).to_numpy()
            every = bool(keep.all())
            rows, cols = (at["_S"].to_numpy(), at["_D"].to_numpy()) if every else (at["_S"].to_numpy()[keep], at["_D"].to_numpy()[keep])
            del at
            out = np.full((n, len(columns), width), np.nan, dtype=np.float32)
            for i, c in enumerate(columns):
                values = frame[c].cast(pl.Float32).to_numpy()
                out[rows, i, cols] = values if every else values[keep]
            return out

        y = pl.col(TARGET).cast(pl.Float64)
        if self.censoring_aware:
            y = pl.when(pl.col("IN_STOCK")).then(y)  # NaN: unobserved, masked out of the loss
        target = dense(history.select(*KEYS, y.alias("Y")), ["Y"], n_hist)[:, 0]
        feats = _forward_fill(dense(covariates, self.dynamic_features, n_days))
        entries = []
        for s, country, product in series.iter_rows():
            entries.append(
                {
                    FieldName.START: pd.Period(start, freq=self._freq(start)),
                    FieldName.TARGET: target[s],
                    FieldName.FEAT_STATIC_CAT: np.array([self.vocab["COUNTRY"].get(country, 0), self.vocab["PRODUCT"].get(product, 0)]),
                    FieldName.FEAT_DYNAMIC_REAL: feats[s],  # a contiguous view: series come first
                    FieldName.ITEM_ID: f"{country}|{product}",
                }
            )
        return entries

    def _freq(self, day: dt.date) -> str:
        """GluonTS's frequency: days, or weeks ending on the series' week day."""
        return "D" if self.config.period_days == 1 else f"W-{_WEEKDAY_CODES[day.isoweekday()]}"

    # ------------------------------------------------------------------- fit
    def _prepare(self, train: pl.DataFrame) -> list[dict]:
        """Vocabularies, median prices and the feature list from the training days; their entries."""
        self.vocab = {c: {v: i for i, v in enumerate(sorted(train[c].unique().to_list()))} for c in SERIES}
        # On categorical keys: grouping 22 M rows by their strings took 2.6 GB at M5 size, 1.2 this way.
        self.median_price = (
            train.lazy()
            .select(pl.col(SERIES).cast(pl.Categorical), "PRICE")
            .group_by(SERIES)
            .agg(pl.col("PRICE").median().alias("MEDIAN_PRICE"))
            .with_columns(pl.col(SERIES).cast(pl.String))
            .collect()
        )
        self.calendar_flags = [c for c in _CALENDAR_FLAGS if c in train.columns]
        self.covariates = {}
        for c in covariate_columns(train):
            values = train[c].cast(pl.Float64).drop_nulls().sort()  # sorted: the sums do not depend on the rows' order
            mean = float(values.mean()) if values.len() else 0.0
            deviation = float(values.std()) if values.len() > 1 else 0.0
            self.covariates[c] = (mean, deviation if deviation and np.isfinite(deviation) and deviation > 0 else 1.0)
        return self._entries(train, self._dynamic(train), end=train["DATE"].max())

    def fit(self, train: pl.DataFrame) -> DeepARForecaster:
        import lightning
        from gluonts.torch.distributions import NegativeBinomialOutput
        from gluonts.torch.model.deepar import DeepAREstimator

        cfg = self.config
        # Lightning announces every epoch's checkpoint at INFO; a run log needs only its warnings.
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        lightning.seed_everything(cfg.seed, workers=True, verbose=False)
        entries = self._prepare(train)
        log.info("deepar: %d series, features %s", len(entries), ", ".join(self.dynamic_features))
        self._root = tempfile.mkdtemp(prefix="deepar-")
        trainer_kwargs = {
            "max_epochs": cfg.max_epochs,
            "accelerator": "auto",  # a GPU when there is one
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "default_root_dir": self._root,
        } | cfg.trainer_kwargs
        estimator = DeepAREstimator(
            freq=self._freq(train["DATE"].min()),
            prediction_length=cfg.prediction_length,
            context_length=cfg.context_length,
            num_layers=cfg.num_layers,
            hidden_size=cfg.hidden_size,
            dropout_rate=cfg.dropout_rate,
            lr=cfg.lr,
            num_feat_dynamic_real=len(self.dynamic_features),
            num_feat_static_cat=2,
            cardinality=[len(self.vocab["COUNTRY"]), len(self.vocab["PRODUCT"])],
            distr_output=NegativeBinomialOutput(),
            lags_seq=list(cfg.lags_seq),
            batch_size=cfg.batch_size,
            num_batches_per_epoch=cfg.num_batches_per_epoch,
            num_parallel_samples=cfg.num_samples,
            trainer_kwargs=trainer_kwargs,
        )
        try:
            predictor = estimator.train(entries, cache_data=True)
        finally:
            shutil.rmtree(self._root, ignore_errors=True)  # the trained network is in memory
        # The trained network keeps its Lightning trainer, and the trainer its data loaders: every
        # training entry and GluonTS' cache of them (1.4-1.7 GB at M5 size) for as long as the
        # model lives. Sampling needs neither; the hybrid held its stage-1 models' data through its final
        # DeepAR's training (8.26 GB at M5 size, the full unit).
        predictor.prediction_net.trainer = None
        self.predictor = predictor
        log.info("deepar: trained on %d series (%d epochs)", len(entries), cfg.max_epochs)
        return self

    def __getstate__(self) -> dict:
        # A registered model must not carry the step's executor (a Dask client does not pickle).
        return {**self.__dict__, "executor": None}

    # --------------------------------------------------------------- predict
    def _sampler(self) -> Executor:
        """Where the chunks are drawn: the executor, unless there is none or the network is on a GPU."""
        on_gpu = "cuda" in str(getattr(self.predictor, "device", "cpu"))
        return self.executor if self.executor is not None and not on_gpu else InProcess(progress=getattr(self.executor, "progress", None))

    def _draw(self, history: pl.DataFrame, future: pl.DataFrame, *, summarise: bool) -> tuple[pl.DataFrame, list]:
        """Each chunk's sample paths, or with `summarise` their mean and quantiles (what a forecast
        needs: at 200 paths, a fiftieth of the paths' bytes to hold and to ship back)."""
        if self.predictor is None:
            raise RuntimeError("fit the model before predicting")
        origin: dt.date = history["DATE"].max()
        p = self.config.period_days
        horizon = (future["DATE"].max() - origin).days // p  # periods
        if horizon > self.config.prediction_length:
            raise ValueError(f"horizon {horizon} exceeds the trained prediction_length {self.config.prediction_length}")
        covariates = pl.concat([self._dynamic(history), self._dynamic(future)], how="diagonal_relaxed")
        end = origin + dt.timedelta(days=self.config.prediction_length * p)
        entries = self._entries(history, covariates, end=end)
        del covariates
        chunks = [(i // SAMPLE_CHUNK, entries[i : i + SAMPLE_CHUNK]) for i in range(0, len(entries), SAMPLE_CHUNK)]
        parts = self._sampler().map(
            _sample_chunk,
            chunks,
            args=(self.predictor, self.config.seed, horizon, summarise),
            labels=[f"deepar series {k * SAMPLE_CHUNK + 1}..{k * SAMPLE_CHUNK + len(c)}" for k, c in chunks],
            what=f"deepar sample-path chunks ({SAMPLE_CHUNK} series each)",
            min_per_worker=4,  # a local pool only from 4 chunks a worker: its processes import torch first
        )
        keys = pl.DataFrame([e["item_id"].split("|") for e in entries], schema=SERIES, orient="row")
        return keys, parts

    def predict_samples(self, history: pl.DataFrame, future: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """Sample paths (series x samples x horizon) for the future frame's days after the history."""
        keys, parts = self._draw(history, future, summarise=False)
        return keys, np.concatenate(parts)

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        # Summarised chunk by chunk where the paths are drawn: the same numbers as summarising
        # all paths at once (each series' mean and quantiles are its own), without holding them.
        keys, parts = self._draw(history, future, summarise=True)
        stats = [np.concatenate([part[i] for part in parts]) for i in range(4)]
        return summary_frame(keys, *stats, origin=history["DATE"].max(), future=future, period_days=self.config.period_days)


def _sample_chunk(chunk: tuple[int, list[dict]], predictor, seed: int, horizon: int, summarise: bool = False) -> np.ndarray | tuple[np.ndarray, ...]:
    """One chunk's sample paths (series x samples x horizon), seeded by the chunk's index: the
    same numbers in this process, a pool worker or a Dask worker; with `summarise`, their
    `summary`."""
    import torch

    index, entries = chunk
    torch.manual_seed(seed + index)
    samples = np.stack([f.samples[:, :horizon] for f in predictor.predict(entries)])
    return summary(samples) if summarise else samples


def summary(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample paths (series x samples x horizon) to their mean, p10, p50 and p90 (series x horizon)."""
    q10, q50, q90 = np.quantile(samples, list(QUANTILES), axis=1)
    return samples.mean(axis=1), q10, q50, q90


def summary_frame(
    keys: pl.DataFrame, mean: np.ndarray, q10: np.ndarray, q50: np.ndarray, q90: np.ndarray, *, origin: dt.date, future: pl.DataFrame, period_days: int = 1
) -> pl.DataFrame:
    """One row per series-period of `future` with MEAN and p10/p50/p90 (each series x horizon)."""
    n_series, horizon = mean.shape
    dates = [origin + dt.timedelta(days=h * period_days) for h in range(1, horizon + 1)]
    frame = pl.DataFrame(
        {
            "DATE": pl.Series(dates * n_series, dtype=pl.Date),
            "COUNTRY": np.repeat(keys["COUNTRY"].to_numpy(), horizon),
            "PRODUCT": np.repeat(keys["PRODUCT"].to_numpy(), horizon),
            "M": mean.reshape(-1),
            "Q10": q10.reshape(-1),
            "Q50": q50.reshape(-1),
            "Q90": q90.reshape(-1),
        }
    )
    out = future.select(KEYS).join(frame, on=KEYS, how="left").fill_null(0.0)
    return quantile_frame(out, out["M"].to_numpy(), out["Q10"].to_numpy(), out["Q50"].to_numpy(), out["Q90"].to_numpy())


def _forward_fill(values: np.ndarray, rows: int = 1024) -> np.ndarray:
    """Carry the last non-NaN value forward along the last axis; NaN before the first -> 0.
    In place, `rows` entries of the first axis at a time: the positions are int64, so the
    whole array's would be twice the values (1.1 GB at M5 size)."""
    for lo in range(0, values.shape[0], rows):
        part = values[lo : lo + rows]
        seen = ~np.isnan(part)
        index = np.where(seen, np.arange(part.shape[-1]), 0)
        np.maximum.accumulate(index, axis=-1, out=index)
        part[...] = np.nan_to_num(np.take_along_axis(part, index, axis=-1), nan=0.0)
    return values
