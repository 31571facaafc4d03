"""Rules that span tables: product sales against country totals, features against the target.

The lag check recomputes every lag and rolling mean from the stored target with date-offset
joins and `rolling_mean_by` (not the shift-over-dense-grid path the feature builder uses), so a
bug in either shows up as a mismatch rather than agreeing with itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from contracts.validation import MAX_EXAMPLES, ContractReport, Violation

__all__ = [
    "LAG_INTEGRITY_RULE",
    "RECONCILIATION_RULE",
    "check_lag_integrity",
    "check_product_reconciles_with_country",
]

RECONCILIATION_RULE = "product_demand_reconciles_with_country_total"
LAG_INTEGRITY_RULE = "training_dataset_lag_integrity"
_KEYS = ["DATE", "COUNTRY", "PRODUCT"]


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
    short by the censored demand, which is unobserved.
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
    rules = {
        "country_total_present": pl.col("COUNTRY_TOTAL").is_null(),
        f"product_sum_at_most_country_total(tol={tolerance})": pl.col("PRODUCT_SUM") > pl.col("COUNTRY_TOTAL") + slack,
        f"product_sum_reaches_country_total_when_in_stock(tol={tolerance})": (pl.col("CENSORED_ROWS") == 0)
        & (pl.col("PRODUCT_SUM") < pl.col("COUNTRY_TOTAL") - slack),
    }
    violations = []
    for rule, broken in rules.items():
        bad = joined.filter(broken.fill_null(False))
        if bad.height:
            examples = tuple(bad.head(MAX_EXAMPLES).with_columns(pl.col("COUNTRY_TOTAL").round(2)).to_dicts())
            violations.append(Violation(rule, "PRODUCT_DEMAND", bad.height, examples))
    return ContractReport(RECONCILIATION_RULE, product.height, tuple(violations))


def check_lag_integrity(
    training: pl.DataFrame,
    history: pl.DataFrame,
    *,
    lags: Sequence[int],
    windows: Sequence[int],
    target: str = "PRODUCT_DEMAND",
) -> ContractReport:
    """Every DEMAND_LAG_k equals the target k days earlier; every DEMAND_ROLL_MEAN_w equals the
    mean of the target over the w days before (null where any of those days is missing)."""
    hist = history.select(*_KEYS, target)
    expected = training.select(_KEYS)
    for k in lags:
        shifted = hist.with_columns(pl.col("DATE") + dt.timedelta(days=k)).rename({target: f"EXPECTED_LAG_{k}"})
        expected = expected.join(shifted, on=_KEYS, how="left")
    rolled = hist.sort("COUNTRY", "PRODUCT", "DATE").with_columns(
        pl.col(target)
        .cast(pl.Float64)
        .rolling_mean_by("DATE", window_size=f"{w}d", closed="left", min_samples=w)
        .over("COUNTRY", "PRODUCT")
        .alias(f"EXPECTED_ROLL_{w}")
        for w in windows
    )
    expected = expected.join(rolled.select(*_KEYS, *(f"EXPECTED_ROLL_{w}" for w in windows)), on=_KEYS, how="left")
    both = training.join(expected, on=_KEYS, how="left")

    violations = []
    for k in lags:
        col, exp = f"DEMAND_LAG_{k}", f"EXPECTED_LAG_{k}"
        violations += _mismatches(both, col, exp, pl.col(col).eq_missing(pl.col(exp)).not_(), f"lag_{k}_equals_target_{k}_days_earlier")
    for w in windows:
        col, exp = f"DEMAND_ROLL_MEAN_{w}", f"EXPECTED_ROLL_{w}"
        differs = pl.when(pl.col(col).is_null() & pl.col(exp).is_null()).then(False).otherwise(
            ((pl.col(col) - pl.col(exp)).abs() > 1e-9 * (1 + pl.col(exp).abs())).fill_null(True)
        )
        violations += _mismatches(both, col, exp, differs, f"rolling_mean_{w}_equals_mean_of_previous_{w}_days")
    return ContractReport(LAG_INTEGRITY_RULE, training.height, tuple(violations))


def _mismatches(frame: pl.DataFrame, column: str, expected: str, broken: pl.Expr, rule: str) -> list[Violation]:
    bad = frame.filter(broken)
    if not bad.height:
        return []
    examples = tuple(bad.head(MAX_EXAMPLES).select(*_KEYS, column, pl.col(expected).alias("EXPECTED")).to_dicts())
    return [Violation(rule, column, bad.height, examples)]
