"""Load on the forecast service over loopback: latency p50/p99 and throughput of POST /predict
at concurrency 1, 8 and 32, for requests of 1 series and of 100 series (country x product).
Writes benchmarks/results/serving_load.json.

The real service (`uvicorn --factory demand_assets.serving.app:create_app_from_env`, one worker
process) runs on a temporary DEMAND_HOME whose MLflow registry holds a weekly TCN trained on the
default synthetic world; the client (httpx, asyncio) runs in this process. Each request uploads
16 weeks of daily history as CSV and asks for 4 weeks.

    python -m benchmarks.serving_load
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import polars as pl

RESULTS = Path(__file__).parent / "results" / "serving_load.json"
REQUESTS_PER_LEVEL = {1: 60, 8: 240, 32: 480}


def _register_model(home: Path) -> pl.DataFrame:
    from demand_assets.forecasting.models.tcn import TCNForecaster, TCNSettings
    from demand_assets.forecasting.registry import SKU_REGISTERED_MODELS, ForecasterPyfunc
    from demand_assets.forecasting.sku import to_periods
    from demand_assets.sources import Domain
    from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource
    from resources import MlflowTracking

    source = SyntheticDemandSource(SyntheticConfig())
    daily = pl.concat(list(source.read(Domain.PRODUCT_DEMAND, dt.date(2023, 1, 2), dt.date(2025, 1, 1))))
    model = TCNForecaster(TCNSettings(epochs=20)).fit(to_periods(daily, "weekly"))
    tracking = MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "artifacts").as_uri())
    registry = tracking.for_model(SKU_REGISTERED_MODELS["weekly"])
    with registry.run("benchmark/serving"):
        version = registry.log_and_register(ForecasterPyfunc(model, "tcn", "weekly"), "sku_weekly_tcn", {"model": "tcn"})
    registry.set_champion(version)
    return daily


def _csv(daily: pl.DataFrame, n_products: int) -> tuple[bytes, list[str]]:
    window = daily.filter(pl.col("DATE") >= dt.date(2024, 9, 9))
    series = window.select("COUNTRY", "PRODUCT").unique().sort("COUNTRY", "PRODUCT").head(n_products)
    rows = window.join(series, on=["COUNTRY", "PRODUCT"]).select("DATE", "COUNTRY", "PRODUCT", pl.col("PRODUCT_DEMAND").alias("UNITS"))
    return rows.write_csv().encode(), series["PRODUCT"].unique().to_list()


async def _level(url: str, csv: bytes, products: list[str], concurrency: int, total: int) -> dict:
    def send(client: httpx.AsyncClient):
        return client.post(
            f"{url}/predict",
            params={"horizon": 4, "frequency": "weekly"},
            files={"file": ("h.csv", csv, "text/csv")},
            data={"metadata": json.dumps({"products": products})},
        )

    return await measure(send, concurrency, total)


async def measure(send, concurrency: int, total: int) -> dict:
    """`total` requests (`send(client)` makes one), `concurrency` at a time: p50/p99 latency and
    throughput; a request that does not answer 200 counts as an error."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(total):
        queue.put_nowait(None)
    async with httpx.AsyncClient(timeout=120) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await send(client)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": total,
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "throughput_rps": round(total / wall, 1),
    }


@contextlib.contextmanager
def running_service(home: Path, ready: str) -> Iterator[str]:
    """The real service (uvicorn, one worker) on a free loopback port over `home`, up once
    GET /health names the model `ready`; yields its URL and stops it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"DEMAND_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "demand_assets.serving.app:create_app_from_env", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/health", timeout=2).json().get("models", {}).get(ready):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"the service did not come up with a {ready} model")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="serving-load-"))
    daily = _register_model(home)
    with running_service(home, "weekly") as url:
        results = {}
        for n_products in (1, 100):
            csv, products = _csv(daily, n_products)
            asyncio.run(_level(url, csv, products, 4, 20))  # warm-up
            for concurrency, total in REQUESTS_PER_LEVEL.items():
                key = f"{n_products}_series_concurrency_{concurrency}"
                results[key] = asyncio.run(_level(url, csv, products, concurrency, total))
                print(key, results[key], flush=True)
    write_results(RESULTS, "POST /predict, 16 weeks of daily history as CSV, weekly TCN, horizon 4", results, "python -m benchmarks.serving_load")


def write_results(path: Path, request: str, results: dict, command: str) -> None:
    """A load benchmark's JSON: what was asked, the figures per level, the command and the machine."""
    out = {
        "service": "uvicorn, 1 worker process, loopback; client httpx/asyncio in another process",
        "request": request,
        "results": results,
        "command": command,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["results"], indent=1))


if __name__ == "__main__":
    main()
