"""create_async_pool() against DSQL Local: test_pool.py's twin, awaited."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import psycopg_pool
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg.errors import ConfigurationError
from dsql_psycopg.pool import DEFAULT_MAX_LIFETIME
from dsql_psycopg.retry import RetryEvent

pytestmark = pytest.mark.anyio

AConn = dsql.AsyncDsqlConnection[Any]
create_async_pool = dsql.create_async_pool


async def fetch(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    return await (await conn.execute(query)).fetchone()


async def test_pool_of_async_dsql_connections_with_dsql_defaults(
    dsql_local: DsqlLocal,
) -> None:
    async with create_async_pool(dsql_local.url, min_size=1) as pool:
        assert isinstance(pool, psycopg_pool.AsyncConnectionPool)
        assert pool.connection_class is dsql.AsyncDsqlConnection
        assert pool.max_lifetime == DEFAULT_MAX_LIFETIME == 3000
        async with pool.connection() as conn:
            assert isinstance(conn, dsql.AsyncDsqlConnection)
            assert await fetch(conn, "SELECT 1") == (1,)
    assert pool.closed


async def test_opened_and_closed_by_hand(dsql_local: DsqlLocal) -> None:
    # Not opened by create_async_pool (an asyncio pool opens in the loop).
    pool = create_async_pool(dsql_local.url, min_size=1)
    with pytest.raises(psycopg_pool.PoolClosed):
        await pool.getconn()
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            assert await fetch(conn, "SELECT 1") == (1,)
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_lifetime": 0}, "max_lifetime must be between 0 and 3300"),
        ({"max_lifetime": 3600}, "DSQL closes connections after 60 minutes"),
        ({"connection_class": psycopg.AsyncConnection}, "connection_class must be"),
        ({"connection_class": dsql.DsqlConnection}, "AsyncDsqlConnection"),
        ({"token_duration": 0}, "token_duration"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        create_async_pool("host=localhost", **options)


def signing_provider(local: DsqlLocal, calls: list[int]) -> Any:
    client = boto3.client("dsql", region_name=local.region)

    def provide(*, host: str, region: str, user: str, expires_in: int) -> str:
        calls.append(expires_in)
        return client.generate_db_connect_admin_auth_token(host, region, expires_in)

    return provide


@pytest.mark.parametrize("callable_kwargs", [False, True])
async def test_dsql_options_reach_every_connect(
    dsql_local: DsqlLocal, callable_kwargs: bool
) -> None:
    calls: list[int] = []
    user_kwargs = {"autocommit": True}
    async with create_async_pool(
        dsql_local.url,
        min_size=2,
        kwargs=(lambda: dict(user_kwargs)) if callable_kwargs else user_kwargs,
        token_duration=42,
        region=dsql_local.region,
        token_provider=signing_provider(dsql_local, calls),
    ) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            assert conn.autocommit
    assert calls == [42, 42]
    assert user_kwargs == {"autocommit": True}


async def test_user_callbacks_are_honoured(dsql_local: DsqlLocal) -> None:
    seen: dict[str, int] = {"configure": 0, "check": 0, "reset": 0}

    def count(name: str) -> Any:
        async def callback(conn: AConn) -> None:
            seen[name] += 1

        return callback

    async with create_async_pool(
        dsql_local.url,
        min_size=1,
        max_size=1,
        configure=count("configure"),
        check=count("check"),
        reset=count("reset"),
    ) as pool:
        for _ in range(3):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        async with pool.connection():
            assert seen == {"configure": 1, "check": 4, "reset": 3}


async def test_idle_connections_past_max_lifetime_are_not_handed_out(
    dsql_local: DsqlLocal,
) -> None:
    connected: dict[Any, float] = {}

    async def remember(conn: AConn) -> None:
        connected[conn] = time.monotonic()

    async with create_async_pool(
        dsql_local.url, min_size=4, max_lifetime=0.3, configure=remember
    ) as pool:
        await pool.wait()
        first = set(connected)
        await asyncio.sleep(0.4)  # all four now sit idle past their lifetime
        asked = time.monotonic()
        conn = await pool.getconn(timeout=2.0)
        try:
            assert conn not in first
            assert conn._dsql_deadline > asked
        finally:
            await pool.putconn(conn)


@pytest.mark.slow
async def test_no_connection_older_than_max_lifetime_is_ever_handed_out(
    dsql_local: DsqlLocal,
) -> None:
    max_lifetime = 0.4
    checkouts: list[tuple[float, float, float]] = []
    async with create_async_pool(
        dsql_local.url, min_size=2, max_size=3, max_lifetime=max_lifetime
    ) as pool:
        # A number of checkouts, not a time window: however slow the
        # machine, the sleeps between them outlast several lifetimes.
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while len(checkouts) < 30:
                asked = time.monotonic()
                async with pool.connection() as conn:
                    times = (asked, conn._dsql_created_at, conn._dsql_deadline)
                    await conn.execute("SELECT 1")
                    await asyncio.sleep(rng.uniform(0, 0.05))
                checkouts.append(times)
                await asyncio.sleep(rng.uniform(0, 0.3))

        await asyncio.gather(*(worker(n) for n in range(3)))
        stats = pool.get_stats()
    assert len(checkouts) >= 30
    # (A nanosecond of slack: created + lifetime - created is not exactly
    # lifetime in floating point.)
    lived = [expires - created for _, created, expires in checkouts]
    assert all(life <= max_lifetime + 1e-9 for life in lived)
    assert all(asked < expires for asked, _, expires in checkouts)
    assert stats["connections_num"] > 3


# -- a DSQL Local with a 2-second connection cap and no token clock skew --------


@pytest.fixture(scope="module")
def strict_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(max_connection_age=2.0, clock_skew=0) as local:
        yield local


async def test_connections_the_server_closed_are_skipped_at_checkout(
    strict_local: DsqlLocal,
) -> None:
    checked: list[int] = []

    async def check(conn: AConn) -> None:
        checked.append(conn.info.backend_pid)

    async with create_async_pool(
        strict_local.url, min_size=3, max_lifetime=1.5, check=check
    ) as pool:
        await pool.wait()
        strict_local.drop_connections()
        await asyncio.sleep(0.1)
        async with pool.connection(timeout=2.0) as conn:
            assert await fetch(conn, "SELECT 1") == (1,)
            pid = conn.info.backend_pid
    assert checked == [pid]


@pytest.mark.slow
async def test_ten_seconds_under_a_two_second_connection_cap(
    strict_local: DsqlLocal,
) -> None:
    async with await dsql.AsyncDsqlConnection.connect(
        strict_local.url, autocommit=True
    ) as conn:
        await conn.execute("DROP TABLE IF EXISTS awrites")
        await conn.execute("DROP TABLE IF EXISTS atotals")
        await conn.execute(
            "CREATE TABLE awrites (id uuid PRIMARY KEY, worker int NOT NULL)"
        )
        await conn.execute(
            "CREATE TABLE atotals (worker int PRIMARY KEY, n int NOT NULL)"
        )
        await conn.execute(
            "INSERT INTO atotals SELECT g, 0 FROM generate_series(0, 3) g"
        )

    retries: list[RetryEvent] = []
    committed: dict[int, list[uuid.UUID]] = {n: [] for n in range(4)}

    async with create_async_pool(
        strict_local.url, min_size=2, max_size=4, max_lifetime=1.0
    ) as pool:

        async def worker(n: int) -> None:
            end = time.monotonic() + 10.0
            while time.monotonic() < end:
                key = uuid.uuid4()
                async for attempt in dsql.transaction(pool, on_retry=retries.append):
                    async with attempt as conn:
                        await conn.execute(
                            "INSERT INTO awrites VALUES (%s, %s)", (key, n)
                        )
                        await conn.execute(
                            "UPDATE atotals SET n = n + 1 WHERE worker = %s", (n,)
                        )
                committed[n].append(key)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(worker(n) for n in range(4)))
        stats = pool.get_stats()

    assert retries == []
    async with await dsql.AsyncDsqlConnection.connect(
        strict_local.url, autocommit=True
    ) as conn:
        rows = await (await conn.execute("SELECT id, worker FROM awrites")).fetchall()
        cursor = await conn.execute("SELECT worker, n FROM atotals")
        totals = dict(await cursor.fetchall())
    assert sorted((k, n) for n, keys in committed.items() for k in keys) == sorted(rows)
    assert totals == {n: len(keys) for n, keys in committed.items()}
    assert sum(totals.values()) > 100
    assert stats["connections_num"] >= 10


@pytest.mark.slow
async def test_pool_keeps_connecting_long_after_a_token_would_expire(
    strict_local: DsqlLocal,
) -> None:
    calls: list[int] = []
    async with create_async_pool(
        strict_local.url,
        min_size=1,
        max_size=2,
        max_lifetime=0.5,
        token_duration=2,
        token_provider=signing_provider(strict_local, calls),
    ) as pool:
        end = time.monotonic() + 6.0
        checkouts = 0
        while time.monotonic() < end:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            checkouts += 1
            await asyncio.sleep(0.1)
        stats = pool.get_stats()
    assert checkouts > 20
    assert stats.get("connections_errors", 0) == 0
    assert len(calls) >= 8
    assert set(calls) == {2}


async def test_a_pool_whose_token_is_refused_fails_the_checkout_at_once(
    dsql_local: DsqlLocal,
) -> None:
    # A refused token is final: the checkout raises it, not the PoolTimeout
    # it would raise after waiting out the pool's timeout.
    async with create_async_pool(
        dsql_local.url,
        min_size=1,
        timeout=30,
        connect_retry=0,
        token_provider=lambda **_: "not-a-token",
    ) as pool:
        with pytest.raises(dsql.AuthenticationError, match="refused the IAM token"):
            async with pool.connection():
                pass
