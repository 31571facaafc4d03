"""Sessions as sequences for next-event prediction (issue 21, point 1).

Every event of a session becomes one row, in time order, with what is known when it happens:

* TYPE: the event's type (`EVENT_TYPES` index), POSITION in the session (0-based), and the
  types of the one and two events before it (PREV_TYPE, PREV2_TYPE; `NONE` at the start).
* REL_PRICE: log(price / the product's median price in the fitting window); 0 for a product the
  window did not see. A price below its usual level is a promotion.
* POP_BUCKET: the product's popularity decile by views in the fitting window (1 least, 10 most;
  0 unseen), SAME_PRODUCT: the product of the previous event again.
* LOG_GAP: log(1 + seconds since the previous event), 0 for the first; LOG_AGE: log(1 + seconds
  since the session's first event).
* HOUR and WEEKDAY of the event (Monday 0).
* Running counts of each type so far (N_VIEW, N_CART, N_REMOVE, N_PURCHASE, the event
  included), N_PRODUCTS seen so far and CART_BALANCE (carts minus removals).

Targets: NEXT, the class of what follows the event (`NEXT_CLASSES`: an event type, or `end` for
the session's last event), and PURCHASE_LATER, whether the session still holds a purchase after
the event (the early-warning target: a session with a cart and a low value is at risk).

`SequenceReference` holds the fitting window's product medians and popularity edges, so the
test window, a day's sessions and a request to the service get the same features as training.
A session belongs to the day of its first event; `time_split` trains on sessions that start
before a cut and tests on the ones that start on or after it, so no session is in both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from demand_assets.sources.events.world import EVENT_TYPES, NEXT_CLASSES

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "NONE",
    "NUMERIC",
    "SequenceReference",
    "Sequences",
    "session_events",
    "time_split",
]

NONE = len(EVENT_TYPES)  # PREV_TYPE / PREV2_TYPE before the session's first event
CATEGORICAL = ("TYPE", "PREV_TYPE", "PREV2_TYPE", "POP_BUCKET", "HOUR", "WEEKDAY")
NUMERIC = ("REL_PRICE", "SAME_PRODUCT", "LOG_GAP", "LOG_AGE", "POSITION", "N_VIEW", "N_CART", "N_REMOVE", "N_PURCHASE", "N_PRODUCTS", "CART_BALANCE")
FEATURES = (*CATEGORICAL, *NUMERIC)
_COUNT_OF = {"N_VIEW": "view", "N_CART": "cart", "N_REMOVE": "remove_from_cart", "N_PURCHASE": "purchase"}
POPULARITY_BUCKETS = 10


@dataclass(frozen=True)
class SequenceReference:
    """What the fitting window knew about products: median price, and the view counts that
    bound each popularity decile."""

    medians: pl.DataFrame  # product_id, MEDIAN_PRICE, VIEWS
    edges: tuple[float, ...]  # POPULARITY_BUCKETS - 1 view-count quantiles

    @staticmethod
    def fit(events: pl.DataFrame) -> SequenceReference:
        medians = events.group_by("product_id").agg(pl.col("price").median().alias("MEDIAN_PRICE"), (pl.col("event_type") == "view").sum().alias("VIEWS"))
        views = medians["VIEWS"].to_numpy().astype(float)
        qs = np.linspace(0, 1, POPULARITY_BUCKETS + 1)[1:-1]
        edges = tuple(float(x) for x in np.quantile(views, qs)) if views.size else tuple(0.0 for _ in qs)
        return SequenceReference(medians=medians.with_columns(pl.col("product_id").cast(pl.String)), edges=edges)

    def to_dict(self) -> dict:
        return {"medians": self.medians.to_dict(as_series=False), "edges": list(self.edges)}

    @staticmethod
    def from_dict(data: dict) -> SequenceReference:
        return SequenceReference(medians=pl.DataFrame(data["medians"]), edges=tuple(data["edges"]))


@dataclass(frozen=True)
class Sequences:
    """One row per event (`frame`: user_session, user_id, product_id, price, event_time, FEATURES,
    NEXT, PURCHASE_LATER, START_DATE), sorted by session and position."""

    frame: pl.DataFrame

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def sessions(self) -> int:
        return self.frame["user_session"].n_unique()

    def features(self) -> np.ndarray:
        return self.frame.select(FEATURES).to_numpy().astype(np.float32)

    def next_class(self) -> np.ndarray:
        return self.frame["NEXT"].to_numpy()

    def purchase_later(self) -> np.ndarray:
        return self.frame["PURCHASE_LATER"].to_numpy()

    def session_starts(self) -> np.ndarray:
        """Per row, the row index of its session's first event (rows are grouped by session)."""
        position = self.frame["POSITION"].to_numpy().astype(np.int64)
        return np.arange(position.size) - position

    def at_position(self, k: int) -> Sequences:
        """The rows after exactly k events (POSITION k - 1) of sessions at least that long."""
        return Sequences(self.frame.filter(pl.col("POSITION") == k - 1))


def session_events(events: pl.DataFrame, reference: SequenceReference, *, max_events: int | None = None) -> Sequences:
    """Every event of `events` (the log's columns; exact duplicates already dropped) with its
    features and targets. A session's rows are in time order (position breaks ties); sessions
    longer than `max_events` keep their first `max_events` events (the targets still see the rest)."""
    if events.is_empty():
        return Sequences(_empty())
    frame = (
        events.with_columns(pl.col("product_id").cast(pl.String), pl.col("price").cast(pl.Float64))
        .with_row_index("_ROW")
        .sort("user_session", "event_time", "_ROW")
        .with_columns(
            pl.int_range(pl.len()).over("user_session").alias("POSITION"),
            pl.col("event_type").replace_strict(list(EVENT_TYPES), list(range(len(EVENT_TYPES))), return_dtype=pl.Int8).alias("TYPE"),
        )
    )
    following = pl.col("TYPE").shift(-1).over("user_session")
    purchase_at = pl.when(pl.col("TYPE") == EVENT_TYPES.index("purchase")).then(pl.col("POSITION")).otherwise(None)
    seconds = pl.col("event_time").cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64)
    frame = frame.with_columns(
        following.fill_null(NEXT_CLASSES.index("end")).cast(pl.Int8).alias("NEXT"),
        (purchase_at.max().over("user_session").fill_null(-1) > pl.col("POSITION")).alias("PURCHASE_LATER"),
        pl.col("TYPE").shift(1).over("user_session").fill_null(NONE).cast(pl.Int8).alias("PREV_TYPE"),
        pl.col("TYPE").shift(2).over("user_session").fill_null(NONE).cast(pl.Int8).alias("PREV2_TYPE"),
        (pl.col("product_id") == pl.col("product_id").shift(1).over("user_session")).fill_null(False).cast(pl.Float32).alias("SAME_PRODUCT"),
        (seconds - seconds.shift(1).over("user_session")).fill_null(0.0).clip(0.0).log1p().alias("LOG_GAP"),
        (seconds - seconds.min().over("user_session")).clip(0.0).log1p().alias("LOG_AGE"),
        pl.col("event_time").dt.hour().cast(pl.Int8).alias("HOUR"),
        (pl.col("event_time").dt.weekday() - 1).cast(pl.Int8).alias("WEEKDAY"),
        *[(pl.col("event_type") == kind).cast(pl.Int32).cum_sum().over("user_session").alias(name) for name, kind in _COUNT_OF.items()],
        pl.col("event_time").min().over("user_session").dt.date().alias("START_DATE"),
    )
    # Distinct products so far: a product's first appearance in its session counts once.
    first_seen = pl.int_range(pl.len()).over("user_session", "product_id") == 0
    frame = frame.with_columns(first_seen.cast(pl.Int32).cum_sum().over("user_session").alias("N_PRODUCTS"))
    frame = frame.with_columns((pl.col("N_CART") - pl.col("N_REMOVE")).alias("CART_BALANCE"))
    frame = frame.join(reference.medians.select("product_id", "MEDIAN_PRICE", "VIEWS"), on="product_id", how="left")
    edges = list(reference.edges)
    frame = frame.with_columns(
        pl.when(pl.col("MEDIAN_PRICE") > 0).then((pl.col("price").clip(0.01) / pl.col("MEDIAN_PRICE")).log()).otherwise(0.0).fill_null(0.0).alias("REL_PRICE"),
        pl.when(pl.col("VIEWS").is_null())
        .then(0)
        .otherwise(pl.col("VIEWS").map_batches(lambda v: pl.Series(np.searchsorted(edges, v.to_numpy(), side="right") + 1, dtype=pl.Int64)))
        .cast(pl.Int8)
        .alias("POP_BUCKET"),
    )
    if max_events is not None:
        frame = frame.filter(pl.col("POSITION") < max_events)
    keep = ["user_session", "user_id", "product_id", "price", "event_time", "event_type", *FEATURES, "NEXT", "PURCHASE_LATER", "START_DATE"]
    return Sequences(frame.select([c for c in keep if c in frame.columns]).sort("user_session", "POSITION"))


def _empty() -> pl.DataFrame:
    schema = {
        "user_session": pl.String,
        "user_id": pl.String,
        "product_id": pl.String,
        "price": pl.Float64,
        "event_time": pl.Datetime("us"),
        "event_type": pl.String,
    }
    schema |= {c: pl.Int8 for c in CATEGORICAL} | {c: pl.Float64 for c in NUMERIC} | {"NEXT": pl.Int8, "PURCHASE_LATER": pl.Boolean, "START_DATE": pl.Date}
    return pl.DataFrame(schema=schema)


def time_split(events: pl.DataFrame, cut: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events of sessions that start before `cut`, events of sessions that start on or after
    it): trained on earlier weeks, tested on later ones, no session in both."""
    start = pl.col("event_time").min().over("user_session").dt.date()
    return events.filter(start < cut), events.filter(start >= cut)
