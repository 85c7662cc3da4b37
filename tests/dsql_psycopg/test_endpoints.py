"""Several endpoints: failover to the next, cool-down, the endpoint a
connection uses. A second endpoint that nothing serves is a closed port."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg.typing import RetryEvent
from tests.fixtures.drivers import Driver

DEAD_ID = "deadendpoint00000000000000"


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connect: refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _forget_failures() -> Iterator[None]:
    """Each test starts with no endpoint cooling down."""
    yield
    dsql.endpoint_health.reset()


def two_endpoints(
    local: DsqlLocal, dead_port: int, *, dead_first: bool = True
) -> dict[str, Any]:
    """Keywords for a dead endpoint in us-west-2 and DSQL Local, in that order."""
    dead = f"{DEAD_ID}.dsql.us-west-2.on.aws"
    hosts = [(dead, dead_port), (local.host, local.port)]
    if not dead_first:
        hosts.reverse()
    return {
        "host": ",".join(h for h, _ in hosts),
        "port": ",".join(str(p) for _, p in hosts),
        "hostaddr": "127.0.0.1,127.0.0.1",
        "sslrootcert": local.ca_file,
        "connect_retry": 0,
    }


def test_a_failed_endpoint_is_skipped_and_the_next_one_used(
    driver: Driver,
    dsql_local: DsqlLocal,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dsql_psycopg")
    kwargs = two_endpoints(dsql_local, closed_port)
    with driver.connected(**kwargs) as conn:
        assert (conn.endpoint, conn.region) == (dsql_local.host, dsql_local.region)
        assert driver.query(conn, "select 1") == [(1,)]
    failures = [r for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failures) == 1
    assert DEAD_ID in failures[0].getMessage()
    assert "tried last" in failures[0].getMessage()
    assert any("not the preferred" in r.getMessage() for r in caplog.records)

    # Cooling down, the dead endpoint is tried after the live one: no new failure.
    caplog.clear()
    with driver.connected(**kwargs) as conn:
        assert conn.endpoint == dsql_local.host
    assert not [r for r in caplog.records if "failed:" in r.getMessage()]


def test_the_cool_down_ends(dsql_local: DsqlLocal, closed_port: int) -> None:
    # A cool-down far longer than a loaded machine's pause before `now`.
    kwargs = two_endpoints(dsql_local, closed_port) | {"endpoint_cooldown": 30}
    before = time.monotonic()
    with dsql.connect(**kwargs):
        pass
    endpoints = dsql._config.parse_endpoints(**kwargs)
    first = endpoints.each[0]
    health, now = dsql.endpoint_health, time.monotonic()
    assert health.order(endpoints, now)[0] is not first  # cooling down
    (left,) = health.cooling(now).values()
    assert 30 - (now - before) <= left <= 30
    # Past its end (the clock is an argument: no sleep needed).
    assert health.order(endpoints, now + 30)[0] is first
    assert health.cooling(now + 30) == {}


def test_the_preferred_endpoint_is_used_when_it_works(
    driver: Driver,
    dsql_local: DsqlLocal,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dsql_psycopg")
    kwargs = two_endpoints(dsql_local, closed_port, dead_first=False)
    with driver.connected(**kwargs) as c:
        assert c.endpoint == dsql_local.host
    assert not caplog.records


def test_every_endpoint_failing_raises_after_one_round_without_retries(
    driver: Driver, dsql_local: DsqlLocal, closed_port: int
) -> None:
    kwargs = two_endpoints(dsql_local, closed_port)
    kwargs["port"] = f"{closed_port},{closed_port}"
    with pytest.raises(psycopg.OperationalError, match="refused"):
        driver.connect(**kwargs)


def test_every_endpoint_failing_is_retried_within_the_budget(
    driver: Driver, dsql_local: DsqlLocal, closed_port: int
) -> None:
    kwargs = two_endpoints(dsql_local, closed_port) | {"connect_retry": 0.3}
    kwargs["port"] = f"{closed_port},{closed_port}"
    with (
        dsql.retry_testing(),
        pytest.raises(dsql.ConnectRetryExhausted) as info,
    ):
        driver.connect(**kwargs)
    assert info.value.attempts >= 2
    # The message names each endpoint and why it failed.
    assert f"{DEAD_ID}.dsql.us-west-2.on.aws: the connection was refused" in str(
        info.value
    )
    assert f"{dsql_local.host}: the connection was refused" in str(info.value)


def test_a_final_error_is_not_failed_over(
    driver: Driver, dsql_local: DsqlLocal, closed_port: int
) -> None:
    kwargs = two_endpoints(dsql_local, closed_port, dead_first=False)
    kwargs["sslrootcert"] = "system"  # DSQL Local's CA is not in it: TLS fails
    with pytest.raises(dsql.UntrustedCertificateError):
        driver.connect(**kwargs)


def test_a_pool_over_two_endpoints_works_through_the_live_one(
    dsql_local: DsqlLocal, closed_port: int
) -> None:
    kwargs = two_endpoints(dsql_local, closed_port)
    with (
        dsql.create_pool(kwargs=kwargs, min_size=2, max_size=2) as pool,
        pool.connection() as conn,
    ):
        assert conn.endpoint == dsql_local.host
        # Made while the preferred endpoint failed: it lives only the
        # cool-down, so the pool tries the preferred one again after it.
        assert conn._dsql_deadline - time.monotonic() <= 30.0


def test_retry_events_name_the_endpoint(dsql_local: DsqlLocal) -> None:
    events: list[RetryEvent] = []
    dsql_local.inject_conflicts(1)
    with dsql.create_pool(dsql_local.url, min_size=1, max_size=1) as pool:
        for attempt in dsql.transaction(pool, on_retry=events.append):
            with attempt as conn:
                conn.execute("select 1")
    assert [(e.endpoint, e.endpoint_changed) for e in events] == [
        (dsql_local.host, False)
    ]
