"""A two-Region cluster on the asyncio driver: test_multi_region.py's twin.

Endpoint order and cool-down are one `EndpointHealth`, shared by both drivers.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg.typing import RetryEvent
from tests.dsql_psycopg.test_multi_region import PATIENCE, PEER, Signer, hosts

pytestmark = pytest.mark.anyio

connect = dsql.AsyncDsqlConnection.connect


@pytest.fixture(scope="module")
def pair() -> Iterator[DsqlLocal]:
    with DsqlLocal(peer_region=PEER, strict=False) as local:
        yield local


@pytest.fixture
def local(pair: DsqlLocal) -> Iterator[DsqlLocal]:
    """The pair, with both Regions up and no endpoint cooling down after."""
    yield pair
    for region in pair.regions:
        pair.restore_region(region)
        pair.inject_conflicts(0, region=region)
    dsql.endpoint_health.reset()


async def one(conn: Any) -> Any:
    return await (await conn.execute("select 1")).fetchone()


async def test_each_endpoint_gets_a_token_for_its_own_host_and_region(
    local: DsqlLocal,
) -> None:
    home, peer = hosts(local)
    signer = Signer()
    async with await connect(**local.multi_region_kwargs(), token_provider=signer) as c:
        assert (c.endpoint, c.region) == (home, local.region)
    local.fail_region(local.region)
    async with await connect(**local.multi_region_kwargs(), token_provider=signer) as c:
        assert (c.endpoint, c.region) == (peer, PEER)
        assert await one(c) == (1,)
    assert signer.calls == [(home, local.region), (home, local.region), (peer, PEER)]


async def test_a_token_for_the_other_endpoint_is_refused(local: DsqlLocal) -> None:
    home, _ = hosts(local)
    local.fail_region(local.region)
    wrong = Signer(only_for=(home, local.region))
    with pytest.raises(dsql.AuthenticationError, match="refused the IAM token"):
        await connect(**local.multi_region_kwargs(), token_provider=wrong)


async def test_our_own_signer_signs_for_each_region(local: DsqlLocal) -> None:
    _, peer = hosts(local)
    local.fail_region(local.region)
    async with await connect(**local.multi_region_kwargs()) as conn:
        assert conn.endpoint == peer


async def test_a_failure_seen_by_one_driver_steers_the_other(local: DsqlLocal) -> None:
    # One record of failed endpoints: a blocking connect that found the home
    # Region down sends the next asyncio connect to the peer first.
    home, peer = hosts(local)
    kwargs = {**local.multi_region_kwargs(), "endpoint_cooldown": 60}
    local.fail_region(local.region)
    with dsql.connect(**kwargs) as conn:
        assert conn.endpoint == peer
    local.restore_region(local.region)
    async with await connect(**kwargs) as conn:
        assert conn.endpoint == peer  # home is cooling down
    dsql.endpoint_health.reset()
    async with await connect(**kwargs) as conn:
        assert conn.endpoint == home


async def test_load_balance_hosts_random_uses_both(local: DsqlLocal) -> None:
    seen: Counter[str] = Counter()
    for _ in range(40):
        async with await connect(
            **local.multi_region_kwargs(), load_balance_hosts="random"
        ) as conn:
            seen[conn.endpoint] += 1
    assert set(seen) == set(hosts(local))


async def test_a_pool_fails_over_and_comes_back_without_cutting_busy_connections(
    local: DsqlLocal,
) -> None:
    home, peer = hosts(local)
    async with dsql.create_async_pool(
        kwargs=local.multi_region_kwargs(),
        endpoint_cooldown=0.2,
        min_size=2,
        max_size=2,
        timeout=PATIENCE,
    ) as pool:
        async with pool.connection() as conn:
            assert conn.endpoint == home
        local.fail_region(local.region)
        await pool.check()
        busy = await pool.getconn()
        assert busy.endpoint == peer
        local.restore_region(local.region)
        deadline = time.monotonic() + PATIENCE
        while True:
            async with pool.connection() as conn:
                if conn.endpoint == home:
                    break
            assert time.monotonic() < deadline, "the pool never came back home"
            await asyncio.sleep(0.05)
        assert await one(busy) == (1,)
        assert busy.endpoint == peer
        await pool.putconn(busy)


async def test_a_retry_that_moved_endpoint_says_so(local: DsqlLocal) -> None:
    home, peer = hosts(local)
    events: list[RetryEvent] = []
    async with dsql.create_async_pool(
        kwargs=local.multi_region_kwargs(), min_size=1, max_size=1
    ) as pool:
        local.inject_conflicts(1, region=PEER)
        used: list[str] = []
        async for attempt in dsql.transaction(pool, on_retry=events.append):
            async with attempt as conn:
                used.append(conn.endpoint)
                if len(used) == 1:
                    local.fail_region(local.region)
                await conn.execute("select 1")
    assert used == [home, peer, peer]
    assert [(e.reason, e.endpoint, e.endpoint_changed) for e in events] == [
        ("connection_lost", home, False),
        ("conflict", peer, True),
    ]
