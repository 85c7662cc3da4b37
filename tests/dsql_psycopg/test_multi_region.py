"""A two-Region cluster served by DSQL Local: tokens per endpoint, failover,
traffic coming back, load balancing and retries that change endpoint."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg.typing import RetryEvent

PEER = "us-west-2"
# Safety net for the waits below; they end as soon as the condition holds.
PATIENCE = 30.0


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


class Signer:
    """Sign real tokens with botocore and record what each was signed for."""

    def __init__(self, only_for: tuple[str, str] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self._only_for = only_for

    def __call__(self, *, host: str, region: str, user: str, expires_in: int) -> str:
        self.calls.append((host, region))
        if self._only_for is not None:  # always sign for one endpoint
            host, region = self._only_for
        client = boto3.client("dsql", region_name=region)
        return client.generate_db_connect_admin_auth_token(host, region, expires_in)


def hosts(local: DsqlLocal) -> tuple[str, str]:
    return local.endpoint(local.region).host, local.endpoint(PEER).host


def test_each_endpoint_gets_a_token_for_its_own_host_and_region(
    local: DsqlLocal,
) -> None:
    home, peer = hosts(local)
    signer = Signer()
    with dsql.connect(**local.multi_region_kwargs(), token_provider=signer) as conn:
        assert (conn.endpoint, conn.region) == (home, local.region)
    local.fail_region(local.region)
    with dsql.connect(**local.multi_region_kwargs(), token_provider=signer) as conn:
        assert (conn.endpoint, conn.region) == (peer, PEER)
        assert conn.execute("select 1").fetchone() == (1,)
    assert signer.calls == [(home, local.region), (home, local.region), (peer, PEER)]


def test_a_token_for_the_other_endpoint_is_refused(local: DsqlLocal) -> None:
    home, _ = hosts(local)
    local.fail_region(local.region)
    wrong = Signer(only_for=(home, local.region))
    with pytest.raises(dsql.AuthenticationError, match="refused the IAM token"):
        dsql.connect(**local.multi_region_kwargs(), token_provider=wrong)


def test_our_own_signer_signs_for_each_region(local: DsqlLocal) -> None:
    _, peer = hosts(local)
    kwargs = local.multi_region_kwargs()
    local.fail_region(local.region)
    with dsql.connect(**kwargs) as conn:
        assert conn.endpoint == peer


def test_data_written_through_one_endpoint_is_read_through_the_other(
    local: DsqlLocal,
) -> None:
    home, peer = hosts(local)
    kwargs = local.multi_region_kwargs()
    with dsql.connect(**kwargs, autocommit=True) as conn:
        assert conn.endpoint == home
        conn.execute("create table if not exists mr_note (id int primary key)")
        conn.execute("delete from mr_note")
        conn.execute("insert into mr_note values (1)")
    local.fail_region(local.region)
    with dsql.connect(**kwargs) as conn:
        assert conn.endpoint == peer
        assert conn.execute("select id from mr_note").fetchall() == [(1,)]


def test_load_balance_hosts_random_uses_both(local: DsqlLocal) -> None:
    seen: Counter[str] = Counter()
    for _ in range(40):
        with dsql.connect(
            **local.multi_region_kwargs(), load_balance_hosts="random"
        ) as conn:
            seen[conn.endpoint] += 1
    assert set(seen) == set(hosts(local))


def test_a_pool_fails_over_and_comes_back_without_cutting_busy_connections(
    local: DsqlLocal,
) -> None:
    home, peer = hosts(local)
    with dsql.create_pool(
        kwargs=local.multi_region_kwargs(),
        endpoint_cooldown=0.2,
        min_size=2,
        max_size=2,
        timeout=PATIENCE,
    ) as pool:
        # Both connections made first: one still connecting when the Region
        # fails could land on it after the cut, and be handed out as alive.
        pool.wait()
        with pool.connection() as conn:
            assert conn.endpoint == home
        local.fail_region(local.region)
        pool.check()  # finds the cut connections now, not at some later checkout
        busy = pool.getconn()
        assert busy.endpoint == peer
        local.restore_region(local.region)
        # The other connection comes back home once its cool-down passed...
        deadline = time.monotonic() + PATIENCE
        while True:
            with pool.connection() as conn:
                if conn.endpoint == home:
                    break
            assert time.monotonic() < deadline, "the pool never came back home"
            time.sleep(0.05)
        # ...while the one in use was never cut.
        assert busy.execute("select 1").fetchone() == (1,)
        assert busy.endpoint == peer
        pool.putconn(busy)


def test_a_retry_that_moved_endpoint_says_so(local: DsqlLocal) -> None:
    home, peer = hosts(local)
    events: list[RetryEvent] = []
    with dsql.create_pool(
        kwargs=local.multi_region_kwargs(), min_size=1, max_size=1
    ) as pool:
        # The region fails under the first attempt; the second runs on the
        # peer and meets a conflict there; the third commits.
        local.inject_conflicts(1, region=PEER)
        used: list[str] = []
        for attempt in dsql.transaction(pool, on_retry=events.append):
            with attempt as conn:
                used.append(conn.endpoint)
                if len(used) == 1:
                    local.fail_region(local.region)
                conn.execute("select 1")
    assert used == [home, peer, peer]
    assert [(e.reason, e.endpoint, e.endpoint_changed) for e in events] == [
        ("connection_lost", home, False),
        ("conflict", peer, True),
    ]
