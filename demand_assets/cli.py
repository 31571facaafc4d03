"""Command-line entry points (installed as console scripts, see pyproject.toml).

    demand-export-csv --out DIR [--start D] [--end D]   the configured source as a CSV snapshot
    demand-m5-files --out DIR [--small] [--seed N]      M5-format files to try the m5 source on
    demand-table-example --out DIR [--days N]          example.csv + table.yaml to try the table source on
    demand-settings-docs [--check]                      the settings table of docs/configuration.md
    demand-selection PART                               the assets of a demo step the configured source can fill

This module, the Dagster layer and the service are the only places that wire the pure packages
to `resources/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

__all__ = ["export_csv", "m5_files", "selection", "settings_docs", "table_example"]

DOCS = Path(__file__).resolve().parent.parent / "docs"


def export_csv(argv: list[str] | None = None) -> None:
    """`demand-export-csv`: export the configured source (DEMAND_SOURCE and its settings) as a
    daily CSV snapshot: one file per domain the source provides, and the product catalogue."""
    from demand_assets.sources.csv_snapshot import export_snapshot
    from resources import DemandSourceResource, resources_from_env

    parser = argparse.ArgumentParser(description=export_csv.__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1), help="first day (YYYY-MM-DD)")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2024, 3, 1), help="day after the last (exclusive)")
    parser.add_argument("--out", required=True, help="folder to write the snapshot into")
    args = parser.parse_args(argv)
    source = resources_from_env(resolve=True)["source"]
    assert isinstance(source, DemandSourceResource)
    for filename, rows in export_snapshot(source.open(), args.start, args.end, args.out).items():
        print(f"wrote {rows:>9} rows to {Path(args.out) / filename}")


def m5_files(argv: list[str] | None = None) -> None:
    """`demand-m5-files --out DIR [--small]`: write M5-format files (with recorded stockout runs)
    to try the m5 source on."""
    from demand_assets.sources.m5 import M5Shape, write_m5_files

    parser = argparse.ArgumentParser(description=m5_files.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--small", action="store_true", help="3 stores x 8 items x 400 days instead of M5's shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = M5Shape.small(seed=args.seed) if args.small else M5Shape(seed=args.seed)
    for name, rows in write_m5_files(args.out, shape).items():
        print(f"wrote {rows:>9} rows to {Path(args.out) / name}")


def table_example(argv: list[str] | None = None) -> None:
    """`demand-table-example --out DIR`: write example.csv (a long daily sales table from the
    synthetic world: store, category, sku, units, price, promo, a known covariate `discount` and
    an observed one `economic_index`) and table.yaml declaring it, to try DEMAND_SOURCE=table on."""
    from demand_assets.sources.table import write_table_example

    parser = argparse.ArgumentParser(description=table_example.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1), help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--products", type=int, default=6, help="products per store")
    args = parser.parse_args(argv)
    for name, rows in write_table_example(args.out, start=args.start, days=args.days, n_products=args.products).items():
        print(f"wrote {rows:>9} rows to {Path(args.out) / name}")
    print(f"run the graph on it: DEMAND_SOURCE=table DEMAND_TABLE_SPEC={Path(args.out).resolve() / 'table.yaml'}")


def selection(argv: list[str] | None = None) -> None:
    """`demand-selection PART`: print the Dagster selection of a step of the demo (data,
    spend_curves, spend_roi, impact, spend_scenario) that the configured source (DEMAND_SOURCE)
    can fill; nothing when it has nothing for that step. Real sources leave out the assets of
    domains they lack instead of recording "not provided" for every day."""
    from demand_assets.domains.selections import PARTS
    from demand_assets.domains.selections import selection as part_selection
    from resources import DemandSourceResource, resources_from_env

    parser = argparse.ArgumentParser(description=selection.__doc__)
    parser.add_argument("part", choices=PARTS)
    args = parser.parse_args(argv)
    source = resources_from_env(resolve=True)["source"]
    assert isinstance(source, DemandSourceResource)
    print(part_selection(args.part, source.open().provides))


def settings_docs(argv: list[str] | None = None) -> None:
    """`demand-settings-docs`: regenerate the tables the docs take from the code: the settings
    table of docs/configuration.md (resource and asset-config fields) and the table list of
    docs/contracts.md (the table registry); `--check` fails if either is out of date instead."""
    from contracts.registry import registry_markdown
    from demand_assets.domains.settings_catalog import TABLES_END, TABLES_START, replace_settings_table, settings_markdown

    parser = argparse.ArgumentParser(description=settings_docs.__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder")
    args = parser.parse_args(argv)
    generated = {
        args.docs / "configuration.md": lambda text: replace_settings_table(text, settings_markdown()),
        args.docs / "contracts.md": lambda text: replace_settings_table(text, registry_markdown(), TABLES_START, TABLES_END),
    }
    stale = []
    for path, regenerate in generated.items():
        current = path.read_text()
        updated = regenerate(current)
        if updated == current:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(updated)
            print(f"wrote the generated table of {path}")
    if stale:
        sys.exit(f"out of date: {', '.join(stale)}: run demand-settings-docs")
    print("generated tables of the docs are up to date")
