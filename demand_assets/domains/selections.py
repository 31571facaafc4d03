"""The asset selections a source can fill: what `make demo` materializes for the configured source.

A source that lacks a domain (M5 and transaction logs have no country totals, spend or ground
truth) would otherwise record a "not provided" materialization for every day of a backfill, for
every asset built only on that domain: at 1,913 days that is most of the data phase. Its history
is backfilled without them; the daily schedule still records them once a day, so that the
automation's "every input present" holds on new days.
"""

from __future__ import annotations

from collections.abc import Iterable

from demand_assets.sources import Domain

__all__ = ["PARTS", "selection"]

_RAW = {
    Domain.COUNTRY_DEMAND: "country_demand",
    Domain.CHANNEL_SPEND_RESPONSE: "channel_spend_response",
    Domain.PRODUCT_DEMAND: "product_demand",
    Domain.PRODUCT_ENGAGEMENT: "product_engagement",
    Domain.PRODUCT_DEMAND_TRUTH: "product_demand_truth",
    Domain.CHANNEL_RESPONSE_TRUTH: "channel_response_truth",
}
# The parts of the demo, in order; a part names the assets it needs from the source.
PARTS = ("data", "spend_curves", "spend_roi", "impact", "spend_scenario", "next_event")


def selection(part: str, provides: Iterable[Domain]) -> str:
    """The Dagster selection string (the UI's and `dagster asset materialize --select`'s syntax) of `part` of the demo for a source providing `provides`;
    empty when the source has nothing for that part (the demo leaves the step out)."""
    have = frozenset(provides)
    spend = Domain.CHANNEL_SPEND_RESPONSE in have
    if part == "data":
        return " or ".join([*(f"key:{name}" for domain, name in _RAW.items() if domain in have), "group:features"])
    if part in ("spend_curves", "spend_roi", "spend_scenario"):
        return {"spend_curves": "key:spend_response_model", "spend_roi": "key:spend_roi", "spend_scenario": "key:spend_scenario"}[part] if spend else ""
    if part == "next_event":
        # Sessions exist only in an event log, the one source with engagement.
        return "key:next_event_model" if Domain.PRODUCT_ENGAGEMENT in have else ""
    if part == "impact":
        return " or ".join(f"key:{name}" for name in [*(["budget_allocation"] if spend else []), "forecast_error_cost", "instock_value"])
    raise ValueError(f"unknown part {part!r}: one of {', '.join(PARTS)}")
