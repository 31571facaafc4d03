"""Two runs at once, and a run killed with SIGKILL between two commits: real processes.

Concurrent: two `dagster asset materialize` processes on one Dagster instance (SQLite, with
deploy/dagster.yaml's pool limit) write the same window from different worlds (seeds). The first
is paused (SIGSTOP) while it holds the raw_domain_writes slot, so the second provably waits for
it; then both finish, the commits do not interleave, and the store holds one world consistently.

Killed: a run is killed (SIGKILL, from inside, at an exact point) after country_demand committed
and before the other domains did, or in the middle of streaming product_demand's commit. Every
table still opens at a complete version; a re-run of the window makes them agree.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from contracts import check_product_reconciles_with_country
from contracts.registry import table_spec
from demand_assets.domains.raw import RAW_DOMAINS_POOL
from demand_assets.sources import Domain
from demand_assets.sources.synthetic import SyntheticConfig, SyntheticDemandSource
from resources import DeltaStore, DemandSourceResource
from tests.conftest import SMALL, materialize_range, small_resources

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RAW = ("country_demand", "channel_spend_response", "product_demand")
START, END = dt.date(2024, 1, 1), dt.date(2024, 2, 1)


def _world(seed: int, domain: Domain) -> pl.DataFrame:
    source = SyntheticDemandSource(SyntheticConfig(**{**SMALL, "seed": seed}))
    return pl.concat(list(source.read(domain, START, END))).sort(table_spec(domain.value).keys)


def _consistent(store: DeltaStore) -> bool:
    frames = {t: store.read_window(t, START, END) for t in RAW}
    report = check_product_reconciles_with_country(frames["product_demand"], frames["country_demand"], frames["channel_spend_response"], tolerance=0.01)
    return report.passed


def _wait_for(predicate, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert process.poll() is None, f"the run exited (rc {process.returncode}) before {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_two_runs_on_one_window_queue_on_the_pool_and_never_interleave(tmp_path):
    home = tmp_path / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DEMAND_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "DEMAND_SOURCE": "synthetic"}
    env |= {"DEMAND_COUNTRIES": str(SMALL["n_countries"]), "DEMAND_PRODUCTS": str(SMALL["n_products"]), "DEMAND_CHANNELS": str(SMALL["n_channels"])}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "demand_assets.definitions", "--select", "group:raw_domains"]
    command += ["--partition-range", f"{START}...{END - dt.timedelta(days=1)}"]

    def launch(seed: int) -> subprocess.Popen:
        log = (tmp_path / f"run-{seed}.log").open("w")
        return subprocess.Popen(command, cwd=REPO, env={**env, "DEMAND_SEED": str(seed)}, stdout=log, stderr=subprocess.STDOUT)

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    first = launch(1)
    try:
        _wait_for(lambda: instance.event_log_storage.get_concurrency_info(RAW_DOMAINS_POOL).claimed_slots, 180, "the first run to hold the pool", first)
        first.send_signal(signal.SIGSTOP)  # holding the slot, mid-step
        second = launch(2)
        _wait_for(
            lambda: instance.event_log_storage.get_concurrency_info(RAW_DOMAINS_POOL).pending_step_count, 180, "the second run to queue on the pool", second
        )
        assert not (home / "delta" / "product_demand").exists() or DeltaTable(str(home / "delta" / "product_demand")).version() == 0
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, (tmp_path / "run-1.log").read_text()[-3000:]
    assert second.wait(timeout=300) == 0, (tmp_path / "run-2.log").read_text()[-3000:]
    assert "blocked" in (tmp_path / "run-2.log").read_text().lower()  # Dagster says why the step waited

    # Every table: the first run created it (version 0), the second replaced the window (version 1),
    # and all of the first run's commits precede all of the second's.
    store = DeltaStore(root_uri=str(home / "delta"))
    history = {t: {h["version"]: h["timestamp"] for h in DeltaTable(store.uri(t)).history()} for t in RAW}
    assert all(set(h) == {0, 1} for h in history.values()), history
    assert max(h[0] for h in history.values()) <= min(h[1] for h in history.values())
    # The store holds the second world only, and it reconciles.
    assert_frame_equal(store.read_window("country_demand", START, END), _world(2, Domain.COUNTRY_DEMAND))
    assert_frame_equal(store.read_window("product_demand", START, END), _world(2, Domain.PRODUCT_DEMAND))
    assert _consistent(store)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from resources import DeltaStore, DemandSourceResource
    from resources.staging import StagedTable
    from tests.conftest import SMALL, materialize_range, small_resources

    point, table = sys.argv[1], sys.argv[2]
    promote, chunks = DeltaStore.promote, StagedTable.chunks

    def promote_then_die(self, staged, start, end, **kwargs):
        written = promote(self, staged, start, end, **kwargs)
        if point == "after" and staged.table == table:
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    def die_mid_stream(self):
        for i, chunk in enumerate(chunks(self)):
            yield chunk
            if point == "during" and self.table == table:
                os.kill(os.getpid(), signal.SIGKILL)

    DeltaStore.promote = promote_then_die
    StagedTable.chunks = die_mid_stream
    from pathlib import Path
    resources = small_resources(Path({root!r}), source=DemandSourceResource(**{{**SMALL, "seed": 12}}))
    materialize_range(resources, "2024-01-01", "2024-01-31", selection=["country_demand", "channel_spend_response", "product_demand"])
    print("not killed")
    """
)


@pytest.mark.parametrize(("point", "table"), [("after", "country_demand"), ("during", "product_demand")])
def test_a_run_killed_between_commits_leaves_complete_versions_and_a_rerun_reconciles(tmp_path, point, table):
    root = tmp_path / "delta"
    assert materialize_range(small_resources(root), "2024-01-01", "2024-01-31").success  # seed 11
    store = DeltaStore(root_uri=str(root))
    before = {t: (store.version(t), store.read_window(t, START, END)) for t in RAW}

    script = tmp_path / "killed_run.py"
    script.write_text(KILLER.format(repo=str(REPO), root=str(root)))
    done = subprocess.run([sys.executable, str(script), point, table], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-2000:]

    committed = RAW[: RAW.index(table) + (1 if point == "after" else 0)]
    for t in RAW:
        version, frame = before[t]
        now = DeltaTable(store.uri(t))  # opens: every table is at a complete version
        if t in committed:
            assert now.version() == version + 1, t
            assert not store.read_window(t, START, END).equals(frame), t
        else:
            assert now.version() == version, t
            assert_frame_equal(store.read_window(t, START, END), frame)
    assert not _consistent(store)  # a new country total against old product sales: why the re-run matters

    rerun = small_resources(root, source=DemandSourceResource(**{**SMALL, "seed": 12}))
    assert materialize_range(rerun, "2024-01-01", "2024-01-31", selection=list(RAW)).success
    assert _consistent(store)
    assert_frame_equal(store.read_window("product_demand", START, END), _world(12, Domain.PRODUCT_DEMAND))
