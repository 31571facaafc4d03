"""Load on POST /next-event over loopback: latency p50/p99 and throughput at concurrency 1 and 8.
Writes benchmarks/results/next_event_load.json.

The real service (uvicorn, one worker process; benchmarks.serving_load.running_service) runs on
a temporary DEMAND_HOME whose registry holds a `next_event` champion: the CNN + BiGRU (the
champion of benchmarks.next_event) fitted for 2 epochs on 14 days of a small event world. Each
request is one session of 8 events (views, a cart, a removal), the client httpx/asyncio.

    python -m benchmarks.next_event_load
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path

import httpx
import polars as pl

from benchmarks.serving_load import measure, running_service, write_results

RESULTS = Path(__file__).parent / "results" / "next_event_load.json"
REQUESTS_PER_LEVEL = {1: 200, 8: 800}
SESSION = [
    {"event_type": kind, "product_id": product, "price": price, "event_time": f"2019-10-20T19:{10 + i:02d}:{7 * i:02d}Z"}
    for i, (kind, product, price) in enumerate(
        [
            ("view", "3700001", 12.5),
            ("view", "3700002", 4.0),
            ("view", "3700001", 12.5),
            ("cart", "3700001", 12.5),
            ("view", "3700003", 30.0),
            ("cart", "3700003", 30.0),
            ("remove_from_cart", "3700003", 30.0),
            ("view", "3700004", 8.2),
        ]
    )
]


def _register_model(home: Path) -> str:
    from demand_assets.next_event.networks import CnnBiGRU, NetworkSettings
    from demand_assets.next_event.registry import NEXT_EVENT_REGISTERED_MODEL, NextEventPyfunc
    from demand_assets.next_event.sequences import SequenceReference, session_events
    from demand_assets.sources.events import EventWorld
    from resources import MlflowTracking

    world = EventWorld.small(days=14)
    events = pl.concat([world.day(world.start + dt.timedelta(days=i)).events for i in range(world.days)]).unique()
    reference = SequenceReference.fit(events)
    model = CnnBiGRU(NetworkSettings(epochs=2)).fit(session_events(events, reference))
    tracking = MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "artifacts").as_uri())
    registry = tracking.for_model(NEXT_EVENT_REGISTERED_MODEL)
    with registry.run("benchmark/next_event_load"):
        version = registry.log_and_register(NextEventPyfunc(model, reference, "cnn_bigru", 0.3), "next_event_cnn_bigru", {"model": "cnn_bigru"})
    registry.set_champion(version)
    return version


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="next-event-load-"))
    _register_model(home)
    results = {}
    with running_service(home, "next_event") as url:

        def send(client: httpx.AsyncClient):
            return client.post(f"{url}/next-event", json={"events": SESSION})

        asyncio.run(measure(send, 4, 40))  # warm-up
        for concurrency, total in REQUESTS_PER_LEVEL.items():
            key = f"concurrency_{concurrency}"
            results[key] = asyncio.run(measure(send, concurrency, total))
            print(key, results[key], flush=True)
    write_results(RESULTS, f"POST /next-event, one session of {len(SESSION)} events, CNN + BiGRU champion", results, "python -m benchmarks.next_event_load")


if __name__ == "__main__":
    main()
