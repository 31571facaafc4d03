"""Rules that span tables: product sales against country totals, features against the target.

The lag check recomputes every lag and rolling mean from the stored target with date-offset
joins and `rolling_mean_by` (not the shift-over-dense-grid path the feature builder uses), so a
bug in either shows up as a mismatch rather than agreeing with itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from contracts.columns import ENGAGEMENT_FEATURES, ENGAGEMENT_PREFIX, KEYS, TARGET
from contracts.validation import MAX_EXAMPLES, ContractReport, Violation

__all__ = [
    "DOMAIN_COLUMNS_RULE",
    "FORECAST_HORIZON_RULE",
    "LAG_INTEGRITY_RULE",
    "RECONCILIATION_RULE",
    "check_domain_columns",
    "check_forecast_horizon_complete",
    "check_lag_integrity",
    "check_product_reconciles_with_country",
]

RECONCILIATION_RULE = "product_demand_reconciles_with_country_total"
LAG_INTEGRITY_RULE = "training_dataset_lag_integrity"
FORECAST_HORIZON_RULE = "demand_forecast_horizon_complete"
DOMAIN_COLUMNS_RULE = "training_dataset_matches_source_domains"
MACRO_COLUMNS = ("ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE")
_KEYS = KEYS


def check_product_reconciles_with_country(
    product: pl.DataFrame,
    country: pl.DataFrame,
    channel: pl.DataFrame | None,
    *,
    tolerance: float,
) -> ContractReport:
    """Sum of PRODUCT_DEMAND per country-day against BASELINE_DEMAND + sum of CHANNEL_RESPONSE.

    Sales can never exceed the total by more than `tolerance` (relative). On a country-day with
    no censored row they must also reach it within `tolerance`; with stockouts they may fall
    short by the censored demand, which is unobserved. Without channel data (`channel` None, a
    source without spend) only that floor holds: BASELINE_DEMAND is organic demand alone.
    """
    totals = country.select("DATE", "COUNTRY", pl.col("BASELINE_DEMAND").alias("COUNTRY_TOTAL"))
    if channel is not None and channel.height:
        media = channel.group_by("DATE", "COUNTRY").agg(pl.col("CHANNEL_RESPONSE").sum().alias("MEDIA"))
        totals = totals.join(media, on=["DATE", "COUNTRY"], how="left").select(
            "DATE", "COUNTRY", (pl.col("COUNTRY_TOTAL") + pl.col("MEDIA").fill_null(0.0)).alias("COUNTRY_TOTAL")
        )
    sums = product.group_by("DATE", "COUNTRY").agg(
        pl.col("PRODUCT_DEMAND").sum().alias("PRODUCT_SUM"),
        (~pl.col("IN_STOCK")).sum().alias("CENSORED_ROWS"),
    )
    joined = sums.join(totals, on=["DATE", "COUNTRY"], how="left").sort("DATE", "COUNTRY")
    # Half a unit of slack: totals are reported as floats, sales as whole units.
    slack = pl.col("COUNTRY_TOTAL") * tolerance + 0.5
    rules = {"country_total_present": pl.col("COUNTRY_TOTAL").is_null()}
    if channel is not None:
        rules[f"product_sum_at_most_country_total(tol={tolerance})"] = pl.col("PRODUCT_SUM") > pl.col("COUNTRY_TOTAL") + slack
    # Without channel data the total is organic demand only; media-driven sales come on top, unknown.
    floor = "country_total" if channel is not None else "baseline_demand"
    rules[f"product_sum_reaches_{floor}_when_in_stock(tol={tolerance})"] = (pl.col("CENSORED_ROWS") == 0) & (
        pl.col("PRODUCT_SUM") < pl.col("COUNTRY_TOTAL") - slack
    )
    violations = []
    for rule, broken in rules.items():
        bad = joined.filter(broken.fill_null(False))
        if bad.height:
            examples = tuple(bad.head(MAX_EXAMPLES).with_columns(pl.col("COUNTRY_TOTAL").round(2)).to_dicts())
            violations.append(Violation(rule, "PRODUCT_DEMAND", bad.height, examples))
    return ContractReport(RECONCILIATION_RULE, product.height, tuple(violations))


def check_domain_columns(training: pl.DataFrame, *, has_country: bool, has_channel: bool, has_engagement: bool = False) -> ContractReport:
    """The training dataset carries macro columns exactly when the source provides country data,
    spend columns exactly when it provides channel data, and the engagement features (all of
    them) exactly when it provides an event log's engagement: features are never invented for a
    source without the domain, nor silently dropped for one with it."""
    spend = [c for c in training.columns if c.startswith("SPEND_")]
    macro = [c for c in MACRO_COLUMNS if c in training.columns]
    engagement = [c for c in training.columns if c.startswith(ENGAGEMENT_PREFIX)]
    violations = []
    for rule, column, provided, found, broken in (
        (
            "macro_columns_only_from_country_data",
            "ECONOMIC_INDEX",
            has_country,
            macro,
            bool(macro) != has_country or (has_country and len(macro) != len(MACRO_COLUMNS)),
        ),
        ("spend_columns_only_from_channel_data", "SPEND_*", has_channel, spend, bool(spend) != has_channel),
        (
            "engagement_columns_only_from_event_logs",
            f"{ENGAGEMENT_PREFIX}*",
            has_engagement,
            engagement,
            bool(engagement) != has_engagement or (has_engagement and sorted(engagement) != sorted(ENGAGEMENT_FEATURES)),
        ),
    ):
        if broken:
            violations.append(Violation(rule, column, training.height, ({"provided": provided, "columns": ", ".join(found) or "none"},)))
    return ContractReport(DOMAIN_COLUMNS_RULE, training.height, tuple(violations))


def check_lag_integrity(
    training: pl.DataFrame,
    history: pl.DataFrame,
    *,
    lags: Sequence[int],
    windows: Sequence[int],
    target: str = TARGET,
    period_days: int = 1,
) -> ContractReport:
    """Every DEMAND_LAG_k equals the target k days earlier; every DEMAND_ROLL_MEAN_w equals the
    mean of the target over the w days before (null where any of those days is missing). A
    weekly source (`period_days` 7) has a row every seventh day: its rolling mean is the mean of
    the w / 7 weeks before, null unless every one of them has a row.

    The stored target is laid out as a (series x day) grid, lags are read by index and rolling
    means from prefix sums: a different computation from the feature builder's shifts.
    """
    series_hash = pl.struct("COUNTRY", "PRODUCT").hash()
    hist = history.select(series_hash.alias("s"), pl.col("DATE").cast(pl.Int32).alias("d"), pl.col(target).cast(pl.Float64).alias("y"))
    rows = training.select(series_hash.alias("s"), pl.col("DATE").cast(pl.Int32).alias("d"))
    uniq = np.unique(hist["s"].to_numpy())
    first_day = int(hist["d"].min())
    n_days = int(max(hist["d"].max(), rows["d"].max())) - first_day + 1
    grid = np.full((len(uniq), n_days + 1), np.nan)  # one spare column for out-of-range lookups
    grid[np.searchsorted(uniq, hist["s"].to_numpy()), hist["d"].to_numpy() - first_day] = hist["y"].to_numpy()

    row_series = np.searchsorted(uniq, rows["s"].to_numpy()).clip(0, len(uniq) - 1)
    known = uniq[row_series] == rows["s"].to_numpy()
    row_day = rows["d"].to_numpy() - first_day

    def lookup(day: np.ndarray) -> np.ndarray:
        inside = known & (day >= 0) & (day < n_days)
        return np.where(inside, grid[row_series, np.where(inside, day, n_days)], np.nan)

    present = ~np.isnan(grid)
    prefix_sum = np.concatenate([np.zeros((len(uniq), 1)), np.cumsum(np.where(present, grid, 0.0), axis=1)], axis=1)
    prefix_count = np.concatenate([np.zeros((len(uniq), 1)), np.cumsum(present, axis=1)], axis=1)

    violations = []
    for k in lags:
        col = f"DEMAND_LAG_{k}"
        violations += _mismatches(training, col, lookup(row_day - k), f"lag_{k}_equals_target_{k}_days_earlier", exact=True)
    for w in windows:
        col = f"DEMAND_ROLL_MEAN_{w}"
        lo = row_day - w
        ok = known & (lo >= 0)
        lo_c, hi_c = np.where(ok, lo, 0), np.where(ok, row_day, 0)
        total = prefix_sum[row_series, hi_c] - prefix_sum[row_series, lo_c]
        count = prefix_count[row_series, hi_c] - prefix_count[row_series, lo_c]
        periods = w // period_days
        expected = np.where(ok & (count == periods), total / periods, np.nan)
        violations += _mismatches(training, col, expected, f"rolling_mean_{w}_equals_mean_of_previous_{w}_days", exact=False)
    return ContractReport(LAG_INTEGRITY_RULE, training.height, tuple(violations))


def _mismatches(frame: pl.DataFrame, column: str, expected: np.ndarray, rule: str, *, exact: bool) -> list[Violation]:
    observed = frame[column].cast(pl.Float64).to_numpy()
    both_null = np.isnan(observed) & np.isnan(expected)
    if exact:
        equal = observed == expected
    else:
        equal = np.abs(observed - expected) <= 1e-9 * (1.0 + np.abs(expected))
    broken = ~(both_null | equal)
    if not broken.any():
        return []
    bad = frame.filter(pl.Series(broken)).select(*_KEYS, column).with_columns(pl.Series("EXPECTED", expected[broken]))
    return [Violation(rule, column, bad.height, tuple(bad.head(MAX_EXAMPLES).to_dicts()))]


def check_forecast_horizon_complete(forecast: pl.DataFrame, series: pl.DataFrame, horizon: int, *, period_days: int = 1) -> ContractReport:
    """Every series in `series` (COUNTRY, PRODUCT) has all `horizon` days for every as-of DATE;
    for a weekly source (`period_days` 7) every week day of the horizon: HORIZON_DAY 7, 14, ..."""
    expected = series.select("COUNTRY", "PRODUCT").unique().join(forecast.select("DATE").unique(), how="cross")
    counts = forecast.group_by("DATE", "COUNTRY", "PRODUCT").agg(
        pl.len().alias("DAYS"), pl.col("HORIZON_DAY").min().alias("FIRST"), pl.col("HORIZON_DAY").max().alias("LAST")
    )
    joined = expected.join(counts, on=["DATE", "COUNTRY", "PRODUCT"], how="left").with_columns(pl.col("DAYS").fill_null(0))
    periods = horizon // period_days
    first, last = period_days, periods * period_days
    bad = joined.filter((pl.col("DAYS") != periods) | (pl.col("FIRST") != first) | (pl.col("LAST") != last)).sort("DATE", "COUNTRY", "PRODUCT")
    if bad.is_empty():
        return ContractReport(FORECAST_HORIZON_RULE, forecast.height)
    rule = f"every_series_has_days_1_to_{horizon}" if period_days == 1 else f"every_series_has_week_days_{first}_to_{last}"
    violation = Violation(rule, "HORIZON_DAY", bad.height, tuple(bad.head(MAX_EXAMPLES).to_dicts()))
    return ContractReport(FORECAST_HORIZON_RULE, forecast.height, (violation,))
