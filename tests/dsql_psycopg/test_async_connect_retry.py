"""Connect retries on the asyncio connection and pool: test_connect_retry.py's twin.

One `ConnectPlan` decides for both drivers; here the waits are awaited. The
retried refusals, an endpoint coming back and a spent budget run for both
clients in test_connect_retry.py (the `driver` fixture); these are the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_local._certs import make_certificates
from tests.dsql_psycopg.test_connect_retry import CountingProvider

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def fault_local() -> Iterator[DsqlLocal]:
    """A DSQL Local of this module's own: outages cut every connection."""
    with DsqlLocal(strict=False) as fault_local:
        yield fault_local


@pytest.fixture
def calm(fault_local: DsqlLocal) -> Iterator[DsqlLocal]:
    """The module's DSQL Local, with no fault left armed after the test."""
    yield fault_local
    fault_local.refuse_connections(count=0)
    fault_local.end_outage()


async def _connect(fault_local: DsqlLocal, **kwargs: Any) -> Any:
    return await dsql.AsyncDsqlConnection.connect(
        fault_local.url, connect_timeout=10, **kwargs
    )


async def _one(conn: Any) -> Any:
    return await (await conn.execute("SELECT 1")).fetchone()


@pytest.mark.parametrize("off", [0, "off"])
async def test_connect_retry_off_fails_at_the_first_refusal(
    calm: DsqlLocal, off: Any
) -> None:
    calm.refuse_connections("rate_exceeded", count=1)
    provider = CountingProvider(calm)
    with pytest.raises(psycopg.OperationalError, match="rate exceeded") as info:
        await _connect(calm, token_provider=provider, connect_retry=off)
    assert type(info.value) is psycopg.OperationalError
    assert provider.calls == 1
    await (await _connect(calm)).close()


async def test_bad_credentials_are_never_retried(calm: DsqlLocal) -> None:
    provider = CountingProvider(calm, wrong_key=True)
    with pytest.raises(dsql.AuthenticationError):
        await _connect(calm, token_provider=provider, connect_retry=60)
    assert provider.calls == 1


async def test_tls_verification_failures_are_never_retried(
    calm: DsqlLocal, tmp_path: Path
) -> None:
    (other_ca,) = make_certificates(tmp_path, calm.region)
    provider = CountingProvider(calm)
    with pytest.raises(psycopg.OperationalError, match="certificate") as info:
        await _connect(
            calm,
            token_provider=provider,
            sslrootcert=str(Path(other_ca.cert_file).parent / "root.crt"),
            connect_retry=60,
        )
    assert not isinstance(info.value, dsql.ConnectRetryExhausted)
    assert provider.calls == 1


async def test_configuration_errors_are_never_retried(calm: DsqlLocal) -> None:
    calm.refuse_connections("waking_up", count=10_000)
    with pytest.raises(dsql.ConfigurationError, match="connect_retry must be"):
        await _connect(calm, connect_retry="soon")


async def test_pool_connections_retry_refusals(calm: DsqlLocal) -> None:
    provider = CountingProvider(calm)
    calm.refuse_connections("rate_exceeded", count=6)
    with dsql.retry_testing():
        async with dsql.create_async_pool(
            calm.url, min_size=3, token_provider=provider, connect_retry=60
        ) as pool:
            await pool.wait(timeout=60)
            assert pool.get_stats()["pool_size"] == 3
            assert provider.calls == 9
            assert pool.get_stats().get("connections_errors", 0) == 0
