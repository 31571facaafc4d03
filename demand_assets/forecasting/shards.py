"""Shards of a panel's series, and a model fitted per shard.

A shard is a set of series: one per COUNTRY (a store, for M5), or one of `n` hash buckets of
the (COUNTRY, PRODUCT) key. The backtest splits its work by shard; `PerShard` fits a global
model (LightGBM, DeepAR, the hybrid) once per shard instead of once across every series, as
the M5 competition's winners trained LightGBM per store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from demand_assets.forecasting.models.base import Forecaster

__all__ = ["SHARD_BY", "PerShard", "shard_filter", "shard_labels"]

SHARD_BY = ("country", "series_hash")


def shard_labels(series: pl.DataFrame, shard_by: str, n_shards: int) -> list[str]:
    """The shards of a panel (its COUNTRY, PRODUCT pairs): one per country, sorted, or
    `n_shards` hash buckets (named 0..n-1)."""
    if shard_by == "country":
        return sorted(series["COUNTRY"].unique().to_list())
    if shard_by == "series_hash":
        return [str(i) for i in range(n_shards)]
    raise ValueError(f"shard_by must be one of {SHARD_BY}, not {shard_by!r}")


def shard_filter(shard_by: str, labels: Sequence[str], shard: int) -> pl.Expr:
    """The rows of shard number `shard` (-1: every row), as a filter a Delta scan pushes down."""
    if shard < 0:
        return pl.lit(True)
    if shard_by == "country":
        return pl.col("COUNTRY") == labels[shard]
    key = pl.concat_str([pl.col("COUNTRY").cast(pl.String), pl.col("PRODUCT").cast(pl.String)], separator="\x1f")
    return (key.hash(seed=0) % len(labels)) == shard


class PerShard:
    """A `Forecaster` that fits a fresh model from `factory` on each shard's series and routes
    each series' forecast to its shard's model. On one shard's rows (a backtest unit) it is that
    shard's model alone, so units and a whole-panel fit give the same forecasts."""

    def __init__(self, factory: Callable[[], Forecaster], shard_by: str, n_shards: int, name: str = "model") -> None:
        if shard_by not in SHARD_BY:
            raise ValueError(f"shard_by must be one of {SHARD_BY}, not {shard_by!r}")
        self.factory: Callable[[], Forecaster] | None = factory
        self.shard_by = shard_by
        self.n_shards = n_shards
        self.name = name
        self.labels: list[str] = []
        self.models: dict[int, Forecaster] = {}

    def __getstate__(self) -> dict:
        # A registered model carries its fitted shards, not the factory (often a lambda).
        return {**self.__dict__, "factory": None}

    def fit(self, train: pl.DataFrame) -> PerShard:
        if self.factory is None:
            raise ValueError(f"per-shard {self.name} was loaded fitted; it cannot be refitted")
        self.labels = shard_labels(train.select("COUNTRY", "PRODUCT").unique(), self.shard_by, self.n_shards)
        self.models = {}
        for shard in range(len(self.labels)):
            part = train.filter(shard_filter(self.shard_by, self.labels, shard))
            if part.height:
                self.models[shard] = self.factory().fit(part)
        return self

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        frames, covered = [], 0
        for shard, model in self.models.items():
            where = shard_filter(self.shard_by, self.labels, shard)
            rows = future.filter(where)
            if rows.height:
                frames.append(model.predict(history.filter(where), rows))
                covered += rows.height
        if covered < future.height:
            seen = pl.concat([future.filter(shard_filter(self.shard_by, self.labels, s)) for s in self.models]) if self.models else future.clear()
            unseen = future.join(seen.select("COUNTRY", "PRODUCT").unique(), on=["COUNTRY", "PRODUCT"], how="anti")
            names = unseen.select("COUNTRY", "PRODUCT").unique().sort("COUNTRY", "PRODUCT").head(5).rows()
            raise ValueError(
                f"per-shard {self.name} has no model for the shard of {names} (shards by {self.shard_by}: {self.labels}); refit it on data that holds them"
            )
        if not frames:  # nothing to forecast: any shard's model gives the empty frame's layout
            return next(iter(self.models.values())).predict(history, future)
        return pl.concat(frames, how="diagonal_relaxed")
