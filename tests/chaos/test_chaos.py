"""Writers on one hot row through each fault a DSQL cluster can throw at them.

``nox -s chaos`` runs these at full size; the test suite at a modest one.
The assertions are about the books (nothing lost, nothing applied twice, no
failure but an unknown COMMIT outcome, no retry budget exhausted), never
about how long anything took: timings go to the table printed at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg_pool
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from tests.chaos.conftest import OUTCOMES
from tests.chaos.ledger import FULL, STALL_TIMEOUT, Ack, Ledger

pytestmark = pytest.mark.slow

OUTAGE = 2.0
WAKING = 3.0
UNAVAILABLE_WINDOW = 10.0 if FULL else 3.0
AGE_CAP = 1.0
AGE_CAP_WINDOW = 10.0 if FULL else 3.0


def _scenario(name: str, **local_kwargs: Any) -> Iterator[Ledger]:
    with DsqlLocal(**local_kwargs) as local:
        ledger = Ledger(local, name)
        yield ledger
        OUTCOMES.append(ledger.outcome)


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    yield from _scenario(request.node.name.removeprefix("test_"))


@pytest.fixture
def capped_ledger() -> Iterator[Ledger]:
    yield from _scenario("age_cap_1s", max_connection_age=AGE_CAP)


def test_outage_2s(ledger: Ledger) -> None:
    def fault() -> float:
        ledger.local.outage(OUTAGE)
        time.sleep(OUTAGE)
        return time.monotonic()

    ledger.run(fault)
    ledger.check()


def test_endpoint_killed_and_restarted(ledger: Ledger) -> None:
    def fault() -> float:
        ledger.local.kill_endpoint()
        time.sleep(OUTAGE)
        ledger.local.restart_endpoint()
        return time.monotonic()

    ledger.run(fault)
    ledger.check()


def test_waking_cluster_3s(ledger: Ledger) -> None:
    def fault() -> float:
        # The cluster scaled down: its connections are gone, and new ones
        # are refused until it is awake.
        ledger.local.refuse_connections("waking_up", seconds=WAKING)
        ledger.local.drop_connections()
        time.sleep(WAKING)
        return time.monotonic()

    ledger.run(fault)
    ledger.check()


def test_server_unavailable_on_5pct_of_commits(ledger: Ledger) -> None:
    def fault() -> float:
        ledger.local.inject_server_unavailable(commit_fraction=0.05, committed=None)
        time.sleep(UNAVAILABLE_WINDOW)
        ledger.local.inject_server_unavailable()
        return time.monotonic()

    outcome = ledger.run(fault)
    ledger.check()
    # The fault did fire: idempotent writers ran such COMMITs again, the
    # others reported them.
    unknown = outcome.retries["commit_outcome_unknown"]
    assert unknown + outcome.failures["CommitOutcomeUnknown"] > 0


def test_connection_age_cap_1s_under_load(capped_ledger: Ledger) -> None:
    def fault() -> float:
        time.sleep(AGE_CAP_WINDOW)
        return time.monotonic()

    outcome = capped_ledger.run(fault)
    capped_ledger.check()
    assert outcome.retries["connection_lost"] > 0


POOLS = 10
POOL_SIZE = 20
# DSQL admits 100 new connections a second after a burst of 1,000: 200 would
# all pass at once. Scaled down to a burst of 100, the storm needs at least
# (200 - 100) / 100 = 1 s; DSQL Local's own connections (8 writers) count too.
STORM_RATE = 100.0
STORM_BURST = 100


@pytest.fixture
def storm_ledger() -> Iterator[Ledger]:
    yield from _scenario(
        "storm_10x20", connection_rate=STORM_RATE, connection_burst=STORM_BURST
    )


def test_connection_storm_against_the_rate_limit(storm_ledger: Ledger) -> None:
    local = storm_ledger.local
    pools: list[psycopg_pool.ConnectionPool[Any]] = []
    times: list[float] = []

    def fault() -> float:
        start = threading.Barrier(POOLS)

        def open_pool() -> None:
            pool = dsql.create_pool(
                local.url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False
            )
            pools.append(pool)
            start.wait()
            began = time.monotonic()
            pool.open(wait=True, timeout=STALL_TIMEOUT)
            times.append(time.monotonic() - began)

        openers = [threading.Thread(target=open_pool) for _ in range(POOLS)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        return time.monotonic()

    try:
        outcome = storm_ledger.run(fault)
        sizes = [pool.get_stats()["pool_size"] for pool in pools]
        errors = sum(pool.get_stats().get("connections_errors", 0) for pool in pools)
    finally:
        for pool in pools:
            pool.close()
    storm_ledger.check()
    assert len(times) == POOLS
    assert sizes == [POOL_SIZE] * POOLS
    ideal = max(0.0, (POOLS * POOL_SIZE + 8 - STORM_BURST) / STORM_RATE)
    outcome.notes = (
        f"{POOLS}x{POOL_SIZE} at burst {STORM_BURST}, {STORM_RATE:g}/s:"
        f" all at min size in {max(times):.2f} s (floor {ideal:.2f} s),"
        f" {errors} pool connect errors"
    )


REGION_FAILURE = 5.0
PEER_REGION = "us-west-2"
# Short, so that traffic returns within the run; the default is 30 s.
COOLDOWN = 1.0


@pytest.fixture
def region_ledger() -> Iterator[Ledger]:
    with DsqlLocal(peer_region=PEER_REGION) as local:
        ledger = Ledger(local, "region_failed_5s", conninfo=local.multi_region_url)
        yield ledger
        OUTCOMES.append(ledger.outcome)


def test_preferred_region_failed_5s(region_ledger: Ledger) -> None:
    """A pool over both endpoints of a multi-Region cluster loses the first."""
    local = region_ledger.local
    home = local.endpoint(local.region).host
    peer = local.endpoint(PEER_REGION).host
    marks: dict[str, float] = {}

    def fault() -> float:
        marks["failed"] = time.monotonic()
        local.fail_region(local.region)
        time.sleep(REGION_FAILURE)
        local.restore_region(local.region)
        marks["restored"] = time.monotonic()
        return marks["restored"]

    def back_home(acked: list[Ack]) -> bool:
        return any(a.endpoint == home and a.at > marks["restored"] for a in acked)

    outcome = region_ledger.run(
        fault,
        pool_kwargs={"endpoint_cooldown": COOLDOWN},
        until=("commits on the preferred Region again", back_home),
    )
    region_ledger.check()
    acked = region_ledger.acked()
    failed, restored = marks["failed"], marks["restored"]
    assert {a.endpoint for a in acked if a.at < failed} == {home}
    during = [a for a in acked if failed < a.at < restored]
    assert any(a.endpoint == peer for a in during)
    assert any(a.endpoint == home for a in acked if a.at > restored)
    # Timings are reported, not asserted.
    moved = min(a.at for a in during if a.endpoint == peer) - failed
    back = min(a.at for a in acked if a.at > restored and a.endpoint == home)
    outcome.notes = (
        f"first commit on {PEER_REGION} {moved:.3f} s after the failure;"
        f" {sum(a.endpoint == peer for a in during)} commits there during it;"
        f" first on {local.region} again {back - restored:.3f} s after the"
        f" recovery (endpoint_cooldown={COOLDOWN:g} s)"
    )
