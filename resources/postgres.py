"""One setting moves the Dagster instance and MLflow to PostgreSQL: DEMAND_POSTGRES_URL.

DEMAND_POSTGRES_URL names the server (`postgresql://user:password@host:5432`, any database part
is ignored). Two databases on it hold the two systems, each created by `demand-deploy init`:

- `demand_dagster`: the Dagster instance's run, event-log and schedule storage
  (deploy/dagster-postgres.yaml reads it as DEMAND_DAGSTER_PG_URL, which `demand-deploy` derives);
- `demand_mlflow`: MLflow's tracking store and model registry (MLFLOW_TRACKING_URI, when it is
  not set, is derived the same way; a tracking server URL set there wins).

The password stays in the environment: nothing here writes it to a file, a log line or an error
message (errors show the URL with the password masked).
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "DAGSTER_DATABASE",
    "MLFLOW_DATABASE",
    "POSTGRES_SETTING",
    "PostgresSettingError",
    "check_databases",
    "create_databases",
    "dagster_postgres_url",
    "database_url",
    "masked",
    "mlflow_postgres_uri",
    "postgres_server_url",
]

POSTGRES_SETTING = "DEMAND_POSTGRES_URL"
DAGSTER_DATABASE = "demand_dagster"
MLFLOW_DATABASE = "demand_mlflow"
CONNECT_TIMEOUT_SECONDS = 5


class PostgresSettingError(RuntimeError):
    """DEMAND_POSTGRES_URL is malformed, its server unreachable, or a database missing."""


def postgres_server_url() -> str | None:
    """DEMAND_POSTGRES_URL, or None for the embedded SQLite defaults."""
    return os.environ.get(POSTGRES_SETTING, "").strip() or None


def _parse(server_url: str) -> URL:
    try:
        url = make_url(server_url)
    except ArgumentError:
        raise PostgresSettingError(
            f"{POSTGRES_SETTING} is not a database URL (expected postgresql://user:password@host:5432, got a value of {len(server_url)} characters)"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise PostgresSettingError(f"{POSTGRES_SETTING} must be a postgresql:// URL, got {url.drivername}://")
    if not url.host:
        raise PostgresSettingError(f"{POSTGRES_SETTING} names no host: {masked(server_url)}")
    return url


def masked(server_url: str) -> str:
    """The URL with its password replaced by ***, for messages."""
    try:
        return make_url(server_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def database_url(server_url: str, database: str, driver: str = "postgresql+psycopg2") -> str:
    """The server URL pointed at `database`, with the psycopg2 driver (SQLAlchemy 2.1 would pick psycopg 3,
    which is not installed). It carries the password: only for a process's environment."""
    return _parse(server_url).set(drivername=driver, database=database).render_as_string(hide_password=False)


def dagster_postgres_url(server_url: str | None = None) -> str | None:
    server = server_url or postgres_server_url()
    return database_url(server, DAGSTER_DATABASE) if server else None


def mlflow_postgres_uri(server_url: str | None = None) -> str | None:
    server = server_url or postgres_server_url()
    return database_url(server, MLFLOW_DATABASE) if server else None


def _connect(server_url: str, database: str):  # noqa: ANN202 - psycopg2's connection
    import psycopg2

    url = _parse(server_url)
    try:
        return psycopg2.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=database,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if url.password:
            reason = reason.replace(str(url.password), "***")
        if f'database "{database}" does not exist' in reason:
            raise PostgresSettingError(
                f"{POSTGRES_SETTING}: database {database!r} does not exist on {masked(server_url)}; create it with `demand-deploy init`"
            ) from None
        raise PostgresSettingError(f"{POSTGRES_SETTING}: cannot connect to {masked(server_url)} (database {database!r}): {reason}") from None


def check_databases(server_url: str | None = None) -> None:
    """Connect to both databases; raise PostgresSettingError naming the setting if one fails."""
    server = server_url or postgres_server_url()
    if server is None:
        raise PostgresSettingError(f"{POSTGRES_SETTING} is not set")
    for database in (DAGSTER_DATABASE, MLFLOW_DATABASE):
        _connect(server, database).close()


def create_databases(server_url: str | None = None) -> list[str]:
    """Create the databases that are missing (needs CREATEDB on the server); returns those created."""
    server = server_url or postgres_server_url()
    if server is None:
        raise PostgresSettingError(f"{POSTGRES_SETTING} is not set")
    connection = _connect(server, "postgres")
    connection.autocommit = True
    created = []
    try:
        with connection.cursor() as cursor:
            for database in (DAGSTER_DATABASE, MLFLOW_DATABASE):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{database}"')
                    created.append(database)
    finally:
        connection.close()
    return created
