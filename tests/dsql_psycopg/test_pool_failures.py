"""Pools that cannot connect fail fast and say why (#28), for each driver.

A configuration error is no transient failure: it fails at once, not after
the pool's timeout. When a pool does give up, its exception carries the
last connect error as cause and in its message.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import psycopg
import psycopg_pool
import pytest

from dsql_local import DsqlLocal
from dsql_psycopg.errors import ConfigurationError, CredentialsError
from tests.fixtures.drivers import Driver

PLACEHOLDER = "<cluster-id>.dsql.us-east-1.on.aws"


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connect: refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_placeholder_host_fails_the_pool_at_once(
    driver: Driver, dsql_local: DsqlLocal
) -> None:
    kwargs = dsql_local.connect_kwargs() | {"host": PLACEHOLDER}
    # Long timeouts: a pool that retried would hang here for 30 s, not fail.
    with pytest.raises(ConfigurationError, match="malformed cluster id"):
        driver.create_pool(kwargs=kwargs, min_size=1, timeout=30)
    url = dsql_local.url.replace(
        dsql_local.host, "%3Ccluster-id%3E.dsql.us-east-1.on.aws"
    )
    with pytest.raises(ConfigurationError, match="malformed cluster id"):
        driver.create_pool(url, min_size=1, timeout=30)


def test_a_configuration_error_at_connect_fails_the_checkout_with_it(
    driver: Driver, dsql_local: DsqlLocal
) -> None:
    # Parameters a callable gives are known only when the pool connects.
    bad = dsql_local.connect_kwargs() | {"host": PLACEHOLDER}
    pool = driver.create_pool(kwargs=lambda: bad, min_size=1, timeout=60)
    try:
        asked = time.monotonic()
        with pytest.raises(ConfigurationError, match="malformed cluster id"):
            driver.getconn(pool)
        # Not after the pool's 60 s timeout: as soon as the connect failed
        # (a generous bound, so that a loaded machine cannot fail it).
        assert time.monotonic() - asked < 30
        # Known now: the next checkout does not wait at all.
        with pytest.raises(ConfigurationError, match="malformed cluster id"):
            driver.getconn(pool)
    finally:
        driver.close_pool(pool)


def test_missing_credentials_fail_the_first_checkout_with_their_error(
    driver: Driver, dsql_local: DsqlLocal
) -> None:
    kwargs = dsql_local.connect_kwargs() | {"profile": "no-such-profile-anywhere"}
    pool = driver.create_pool(kwargs=kwargs, min_size=1, timeout=60)
    try:
        asked = time.monotonic()
        with pytest.raises(CredentialsError, match="no-such-profile-anywhere"):
            driver.getconn(pool)
        assert time.monotonic() - asked < 30
    finally:
        driver.close_pool(pool)


def test_a_pool_timeout_carries_the_last_connect_error(
    driver: Driver, dsql_local: DsqlLocal, refused_port: int
) -> None:
    kwargs: dict[str, Any] = dsql_local.connect_kwargs() | {
        "port": refused_port,
        "connect_retry": 0,
    }
    pool = driver.create_pool(kwargs=kwargs, min_size=1)
    try:
        with pytest.raises(psycopg_pool.PoolTimeout) as info:
            driver.getconn(pool, timeout=1.0)
    finally:
        driver.close_pool(pool)
    error = info.value
    assert isinstance(error.__cause__, psycopg.OperationalError)
    assert "Connection refused" in str(error.__cause__)
    assert "couldn't get a connection after 1.00 sec" in str(error)
    assert "last connect failed: OperationalError: Connection refused" in str(error)


def test_a_pool_that_recovers_forgets_its_errors(
    driver: Driver, dsql_local: DsqlLocal
) -> None:
    pool = driver.create_pool(kwargs=dsql_local.connect_kwargs(), min_size=1)
    try:
        conn = driver.getconn(pool, timeout=10)
        assert driver.query(conn, "SELECT 1") == [(1,)]
        driver.putconn(pool, conn)
    finally:
        driver.close_pool(pool)
