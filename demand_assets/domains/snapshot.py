"""One snapshot's raw domains, validated together and committed together: one run, one outcome.

Every domain the source provides for the window is read and checked first, and its rows staged
on local disk (resources/staging.py). Only when every domain has passed every check are they
committed, each in its own Delta transaction, in dependency order. A refusal of any domain
leaves every table as it was, and the failure names each table with what happened to it.

Between the first and the last commit a killed process can leave the earlier domains at the new
window and the later ones at the old: each table is always at a complete version, and re-running
the window (the same snapshot) makes them agree again. The commits of two runs never interleave:
the step runs in the RAW_DOMAINS_POOL concurrency pool (limit 1, see deploy/dagster.yaml).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from contracts import ContractContext, ContractError
from demand_assets.domains.categories import KnownCategories
from demand_assets.domains.publishing import (
    ChunkCheck,
    WindowCheck,
    charts,
    check_results,
    contract_check,
    materialization,
    not_provided,
    rows_by_design_only,
    without_rows_by_design,
)
from demand_assets.sources import DemandSource, Domain
from resources import DeltaStore, WriteSummary
from resources.staging import StagedTable

__all__ = ["DomainPlan", "publish_snapshot"]


@dataclass(frozen=True)
class DomainPlan:
    """How one raw domain is checked and described. `extra_checks` gets the domains staged before
    it (product sales reconcile with the staged country totals); `when_absent` gives the results of
    checks that cannot run because a domain they compare with is not provided by the source."""

    domain: Domain
    contract_check: str
    what: str  # for the "not provided by this source" record
    extra_checks: Callable[[Mapping[str, StagedTable]], list[ChunkCheck]] = lambda staged: []
    check_names: tuple[str, ...] = ()  # every check of the asset (the contract first)
    summarize: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    describe: Callable[[pl.DataFrame], dict] | None = None
    when_absent: Callable[[], list[dg.AssetCheckResult]] = field(default=lambda: [])

    @property
    def table(self) -> str:
        return self.domain.value

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.table)


def publish_snapshot(
    context: dg.AssetExecutionContext,
    store: DeltaStore,
    source: DemandSource,
    plans: Sequence[DomainPlan],
    ctx: ContractContext,
    categories: KnownCategories,
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult | dg.AssetObservation]:
    start, end = ctx.window_start, ctx.window_end
    provided = [p for p in plans if p.domain in source.provides]
    selected = context.selected_asset_keys
    left_out = [p.table for p in provided if p.key not in selected]
    if left_out:
        raise dg.Failure(
            description=(
                f"source '{source.name}' provides {', '.join(p.table for p in provided)}: they are checked and written together, "
                f"so a run must select all of them (it left out {', '.join(left_out)})"
            ),
            allow_retries=False,
        )
    for plan in plans:
        # A domain the source lacks costs a record only when selected: a real source's history is
        # backfilled without them (see `demand-selection`), the daily run records them once a day.
        if plan not in provided and plan.key in selected:
            yield from not_provided(context, source.name, plan.what, plan.check_names or [plan.contract_check], asset_key=plan.key)
    if rows_by_design_only(source.cadence, start, end):
        # A weekly source's day without a week day: recorded, nothing read or written.
        for plan in provided:
            yield from without_rows_by_design(context, plan.table, source.cadence, plan.check_names or [plan.contract_check], asset_key=plan.key)
        return
    windows: dict[str, WindowCheck] = {}
    with store.staging() as area:
        staged: dict[str, StagedTable] = {}
        for plan in provided:
            checks = [contract_check(plan.table, plan.contract_check, ctx), *plan.extra_checks(staged)]
            window = WindowCheck(plan.table, checks, start, end, summarize=plan.summarize, complete_series=True, log=context.log.info, cadence=source.cadence)
            windows[plan.table] = window
            try:
                staged[plan.table] = area.stage(plan.table, window.chunks(source.read(plan.domain, start, end)))
            except ContractError:
                context.log.error(f"{plan.table} [{start}, {end}) broke its contract; no table of this run will be written")
        if not all(w.passed for w in windows.values()):
            for plan in provided:
                yield from check_results(windows[plan.table], asset_key=plan.key, written=False)
            raise dg.Failure(description=_refusal(store, provided, windows, start, end), allow_retries=False)
        new = categories.new_in(staged)
        written = _commit(context, store, provided, staged, start, end)
    for plan in provided:
        window, summary = windows[plan.table], written[plan.table]
        extra = {"new_categories": dg.MetadataValue.json(new)} if new else {}
        yield materialization(window, summary, asset_key=plan.key, extra=extra)
        yield from check_results(window, asset_key=plan.key, written=True, version=summary.version)
        yield from plan.when_absent()
    if new:
        context.log.warning(f"new categories admitted into the store: {new}")
    for plan in provided:
        yield from charts(context, windows[plan.table], plan.describe, written[plan.table].version, asset_key=plan.key)


def _commit(
    context: dg.AssetExecutionContext, store: DeltaStore, plans: Sequence[DomainPlan], staged: Mapping[str, StagedTable], start: dt.date, end: dt.date
) -> dict[str, WriteSummary]:
    written: dict[str, WriteSummary] = {}
    for plan in plans:
        try:
            written[plan.table] = store.promote(staged[plan.table], start, end)
        except Exception as err:
            done = ", ".join(f"{t} (now version {w.version})" for t, w in written.items()) or "none"
            rest = ", ".join(p.table for p in plans if p.table not in written)
            raise dg.Failure(
                description=(
                    f"every domain of [{start}, {end}) passed its checks, but committing {plan.table} failed: {err}\n"
                    f"committed: {done}; not committed (previous version kept): {rest}. Re-run the window to make them agree."
                )
            ) from err
        context.log.info(f"{plan.table}: wrote {written[plan.table].rows:,} rows for [{start}, {end}) as Delta version {written[plan.table].version}")
    return written


def _refusal(store: DeltaStore, plans: Sequence[DomainPlan], windows: Mapping[str, WindowCheck], start: dt.date, end: dt.date) -> str:
    """Every table of the run, whether it was refused or passed, and that none was changed."""
    refused = [p.table for p in plans if not windows[p.table].passed]
    lines = [f"the snapshot for [{start}, {end}) was refused ({', '.join(refused)} broke its contract); no table was changed:"]
    for plan in plans:
        version = store.version(plan.table)
        kept = f"stored version {version} kept" if version is not None else "not in the store yet, still absent"
        window = windows[plan.table]
        if window.passed:
            lines.append(f"- {plan.table}: passed its checks, not written; {kept}")
        else:
            lines.append(f"- {plan.table}: REFUSED, not written; {kept}")
            lines += [f"    {line}" for report in window.reports.values() if not report.passed for line in report.describe().splitlines()]
    return "\n".join(lines)
