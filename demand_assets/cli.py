"""Command-line entry points (installed as console scripts, see pyproject.toml).

    demand-export-csv --out DIR [--start D] [--end D]   the configured source as a CSV snapshot
    demand-m5-files --out DIR [--small] [--seed N]      M5-format files to try the m5 source on
    demand-table-example --out DIR [--days N]          example.csv + table.yaml to try the table source on
    demand-settings-docs [--check]                      the settings table of docs/configuration.md
    demand-selection PART                               the assets of a demo step the configured source can fill
    demand-deploy COMMAND                               the production processes (init, check, code-server, webserver,
                                                        daemon, mlflow, serve) on DEMAND_POSTGRES_URL

This module, the Dagster layer and the service are the only places that wire the pure packages
to `resources/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path

__all__ = ["deploy", "export_csv", "m5_files", "selection", "settings_docs", "table_example"]

DOCS = Path(__file__).resolve().parent.parent / "docs"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


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


def event_files(argv: list[str] | None = None) -> None:
    """`demand-event-files --out DIR [--small]`: write an e-commerce event log in the public
    cosmetics-shop layout (one CSV per month; `--gzip`: CSV.gz) from the synthetic event world,
    with its truth in DIR/truth (each session's intent, the Bayes-optimal next-event
    probabilities, purchases per product and day), to try DEMAND_SOURCE=events on."""
    from demand_assets.sources.events import EventWorld, write_event_files

    parser = argparse.ArgumentParser(description=event_files.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--small", action="store_true", help="60 products, ~400 sessions a day (about 280,000 events) instead of ~20 million")
    parser.add_argument("--days", type=int, default=None, help="days from --start (default: 152, October to February; 150 with --small)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2019, 10, 1), help="first day (YYYY-MM-DD)")
    parser.add_argument("--gzip", action="store_true", help="gzip the monthly files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    world = EventWorld.small(seed=args.seed, start=args.start) if args.small else EventWorld(seed=args.seed, start=args.start)
    if args.days is not None:
        world = replace(world, days=args.days)
    print(f"generating {world.days} days from {world.start}: about {world.sessions_per_day * world.days:,.0f} sessions")
    for name, rows in write_event_files(args.out, world, compress=args.gzip).items():
        print(f"wrote {rows:>10,} events to {Path(args.out) / name}")


def table_example(argv: list[str] | None = None) -> None:
    """`demand-table-example --out DIR`: write example.csv (a long daily sales table from the
    synthetic world: store, category, sku, units, price, promo, a known covariate `discount` and
    an observed one `economic_index`; `--frequency weekly`: the same as weekly totals) and
    table.yaml declaring it, to try DEMAND_SOURCE=table on."""
    from demand_assets.sources.table import write_table_example

    parser = argparse.ArgumentParser(description=table_example.__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1), help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--products", type=int, default=6, help="products per store")
    parser.add_argument("--frequency", choices=["daily", "weekly"], default="daily", help="weekly: whole weeks ending on Fridays, dated on the Friday")
    args = parser.parse_args(argv)
    for name, rows in write_table_example(args.out, start=args.start, days=args.days, n_products=args.products, frequency=args.frequency).items():
        print(f"wrote {rows:>9} rows to {Path(args.out) / name}")
    print(f"run the graph on it: DEMAND_SOURCE=table DEMAND_TABLE_SPEC={Path(args.out).resolve() / 'table.yaml'}")


def selection(argv: list[str] | None = None) -> None:
    """`demand-selection PART`: print the Dagster selection of a step of the demo (data,
    spend_curves, spend_roi, impact, spend_scenario, next_event) that the configured source (DEMAND_SOURCE)
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


DEPLOY_COMMANDS = ("init", "pools", "check", "code-server", "webserver", "daemon", "mlflow", "serve")
CODE_SERVER_DEFAULTS = {"DEMAND_CODE_SERVER_HOST": "127.0.0.1", "DEMAND_CODE_SERVER_PORT": "4000"}


def _deploy_environment() -> dict[str, str]:
    """The environment of a production process: DEMAND_POSTGRES_URL checked (both databases
    reachable) and turned into the Dagster instance's and MLflow's URLs; the code server's address
    defaulted. Exits with a message naming the setting when something is wrong."""
    import os

    from resources.postgres import PostgresSettingError, check_databases, dagster_postgres_url, mlflow_postgres_uri, postgres_server_url

    env = dict(os.environ)
    for name, value in CODE_SERVER_DEFAULTS.items():
        env.setdefault(name, value)
    if not env.get("DAGSTER_HOME"):
        sys.exit("DAGSTER_HOME is not set: the folder of the instance's dagster.yaml (`demand-deploy init` writes it)")
    instance_yaml = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    server = postgres_server_url()
    if server is None:
        return env  # the embedded SQLite instance and MLflow store under DEMAND_HOME
    try:
        check_databases(server)
    except PostgresSettingError as error:
        sys.exit(str(error))
    if not instance_yaml.is_file() or "DEMAND_DAGSTER_PG_URL" not in instance_yaml.read_text():
        sys.exit(f"DEMAND_POSTGRES_URL is set but {instance_yaml} does not use it (DEMAND_DAGSTER_PG_URL): run `demand-deploy init`")
    env["DEMAND_DAGSTER_PG_URL"] = dagster_postgres_url(server) or ""
    env.setdefault("MLFLOW_TRACKING_URI", mlflow_postgres_uri(server) or "")
    return env


def _create_schemas() -> None:
    """Create (or migrate) the Dagster instance's and MLflow's tables once, here, so that the
    processes started next do not race to create them (two first starts at once collide in
    MLflow's alembic migrations)."""
    import os

    import dagster as dg
    from mlflow import MlflowClient

    from resources.postgres import dagster_postgres_url, mlflow_postgres_uri

    os.environ["DEMAND_DAGSTER_PG_URL"] = dagster_postgres_url() or ""
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        _print_pools(initialize_pools(instance))
    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_postgres_uri() or ""
    MlflowClient(uri, uri).search_experiments(max_results=1)
    print("the Dagster instance's and MLflow's tables are in place")


def initialize_pools(instance) -> dict[str, int]:
    """Create the rows of every concurrency pool the assets declare, once, before any run: the
    model_training pool at DEMAND_TRAINING_SLOTS, the others at the instance's default limit (a
    limit already set with `dagster instance concurrency set` is kept). Dagster would create a pool
    on its first claim, and on Postgres two runs that make that first claim at the same moment
    collide: the loser's transaction aborts (InFailedSqlTransaction) and its step fails. Returns
    pool -> limit."""
    import dagster as dg

    from demand_assets.definitions import ALL_ASSETS
    from demand_assets.domains.backtest import MODEL_TRAINING_POOL
    from resources.settings import training_slots

    pools = sorted({pool for asset in ALL_ASSETS if isinstance(asset, dg.AssetsDefinition) for pool in asset.node_def.pools})
    storage = instance.event_log_storage
    known = {limit.name: limit for limit in storage.get_pool_limits()}
    for pool in pools:
        if pool == MODEL_TRAINING_POOL:
            storage.set_concurrency_slots(pool, training_slots())
        elif pool not in known:
            storage.initialize_concurrency_limit_to_default(pool)
    return {limit.name: limit.limit for limit in storage.get_pool_limits() if limit.name in pools}


def _print_pools(limits: dict[str, int]) -> None:
    print("concurrency pools: " + ", ".join(f"{pool} {limit}" for pool, limit in limits.items()))


def deploy(argv: list[str] | None = None) -> None:
    """`demand-deploy COMMAND`: the production layout's processes, each on one shared instance.

    init         create the databases demand_dagster and demand_mlflow on DEMAND_POSTGRES_URL's
                 server if missing, and write $DAGSTER_HOME/dagster.yaml (deploy/dagster-postgres.yaml)
    pools        set the concurrency pools' limits on the instance (model_training: DEMAND_TRAINING_SLOTS)
    check        connect to both databases and say so
    code-server  the code location's gRPC server (`dagster code-server start`) on
                 DEMAND_CODE_SERVER_HOST:DEMAND_CODE_SERVER_PORT (default 127.0.0.1:4000)
    webserver    the Dagster UI and GraphQL API, loading the location from the gRPC server
    daemon       schedules, sensors, automation, the run queue, run monitoring and retries
    mlflow       an MLflow tracking server on the same store the assets use
    serve        the forecast service (`python -m demand_assets.serving`, --port)

    Options after COMMAND go to the underlying program (e.g. `demand-deploy webserver --port 3000`).
    Without DEMAND_POSTGRES_URL the same processes run on the embedded SQLite stores."""
    import os
    import shutil

    parser = argparse.ArgumentParser(description=deploy.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=DEPLOY_COMMANDS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the underlying program")
    args = parser.parse_args(argv)

    if args.command == "init":
        from resources.postgres import PostgresSettingError, create_databases, masked, postgres_server_url

        server = postgres_server_url()
        if server is None:
            sys.exit("DEMAND_POSTGRES_URL is not set (postgresql://user:password@host:5432)")
        try:
            created = create_databases(server)
        except PostgresSettingError as error:
            sys.exit(str(error))
        home = os.environ.get("DAGSTER_HOME")
        if not home:
            sys.exit("DAGSTER_HOME is not set: the folder to write the instance's dagster.yaml into")
        Path(home).mkdir(parents=True, exist_ok=True)
        target = Path(home) / "dagster.yaml"
        if not target.exists():
            shutil.copyfile(DEPLOY / "dagster-postgres.yaml", target)
            print(f"wrote {target}")
        print(f"databases on {masked(server)}: created {', '.join(created) or 'none (both exist)'}")
        _create_schemas()
        return

    env = _deploy_environment()
    bin_dir = Path(sys.executable).parent
    host, port = env["DEMAND_CODE_SERVER_HOST"], env["DEMAND_CODE_SERVER_PORT"]
    workspace = str(DEPLOY / "workspace-grpc.yaml")
    if args.command == "pools":
        import dagster as dg

        os.environ.update({k: v for k, v in env.items() if k == "DEMAND_DAGSTER_PG_URL"})
        with dg.DagsterInstance.get() as instance:
            _print_pools(initialize_pools(instance))
        return
    if args.command == "check":
        print("the Dagster instance and MLflow stores are reachable" if "DEMAND_DAGSTER_PG_URL" in env else "embedded stores (DEMAND_POSTGRES_URL is not set)")
        return
    if args.command == "code-server":
        command = [
            str(bin_dir / "dagster"),
            "code-server",
            "start",
            "-m",
            "demand_assets.definitions",
            "--location-name",
            "demand_assets",
            "-h",
            host,
            "-p",
            port,
        ]
    elif args.command == "webserver":
        command = [str(bin_dir / "dagster-webserver"), "-w", workspace]
    elif args.command == "daemon":
        command = [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]
    elif args.command == "mlflow":
        from resources.home import demand_home

        tracking = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{demand_home() / 'mlflow' / 'mlflow.db'}"
        artifacts = env.get("DEMAND_MLFLOW_ARTIFACTS") or str(demand_home() / "mlflow" / "artifacts")
        command = [str(bin_dir / "mlflow"), "server", "--backend-store-uri", tracking, "--artifacts-destination", artifacts]
        # MLflow's own job runner (15 huey workers, for GenAI scorer jobs) serves nothing here.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    else:
        # The service's own entrypoint: it listens beyond loopback only with DEMAND_SERVICE_TOKEN
        # (or DEMAND_SERVICE_ALLOW_PUBLIC=1), as the forecast service's image does.
        command = [sys.executable, "-m", "demand_assets.serving"]
    sys.stdout.flush()
    os.execve(command[0], [*command, *args.args], env)
