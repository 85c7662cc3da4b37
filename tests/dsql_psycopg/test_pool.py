"""create_pool() against DSQL Local: defaults, lifetimes, dead connections, tokens."""

from __future__ import annotations

import random
import threading
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
from dsql_psycopg.errors import AuthenticationError, ConfigurationError
from dsql_psycopg.pool import DEFAULT_MAX_LIFETIME, create_pool
from dsql_psycopg.retry import RetryEvent, transaction

Conn = dsql.DsqlConnection[Any]


def test_pool_of_dsql_connections_with_dsql_defaults(dsql_local):
    # Used without `with` and without open=: no DeprecationWarning (an error here).
    pool = create_pool(dsql_local.url, min_size=1)
    try:
        assert isinstance(pool, psycopg_pool.ConnectionPool)
        assert pool.connection_class is dsql.DsqlConnection
        assert pool.max_lifetime == DEFAULT_MAX_LIFETIME == 3000
        with pool.connection() as conn:
            assert isinstance(conn, dsql.DsqlConnection)
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()
    with create_pool(dsql_local.url, min_size=1) as pool, pool.connection() as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert pool.closed


def test_open_false_waits_for_open(dsql_local):
    pool = create_pool(dsql_local.url, min_size=1, open=False)
    with pytest.raises(psycopg_pool.PoolClosed):
        pool.getconn()
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_lifetime": 0}, "max_lifetime must be between 0 and 3300"),
        ({"max_lifetime": 3600}, "DSQL closes connections after 60 minutes"),
        ({"max_lifetime": "600"}, "max_lifetime must be between"),
        ({"connection_class": psycopg.Connection}, "connection_class must be"),
    ],
)
def test_bad_options_are_refused(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        create_pool("host=localhost", open=False, **options)


def signing_provider(local: DsqlLocal, calls: list[int]) -> Any:
    client = boto3.client("dsql", region_name=local.region)

    def provide(*, host: str, region: str, user: str, expires_in: int) -> str:
        calls.append(expires_in)
        return client.generate_db_connect_admin_auth_token(host, region, expires_in)

    return provide


@pytest.mark.parametrize("callable_kwargs", [False, True])
def test_dsql_options_reach_every_connect(dsql_local, callable_kwargs):
    calls: list[int] = []
    user_kwargs = {"autocommit": True}
    with create_pool(
        dsql_local.url,
        min_size=2,
        kwargs=(lambda: dict(user_kwargs)) if callable_kwargs else user_kwargs,
        token_duration=42,
        region=dsql_local.region,
        token_provider=signing_provider(dsql_local, calls),
    ) as pool:
        pool.wait()
        with pool.connection() as conn:
            assert conn.autocommit
    assert calls == [42, 42]
    assert user_kwargs == {"autocommit": True}  # the caller's dict is untouched


def test_user_callbacks_are_honoured(dsql_local):
    seen: dict[str, int] = {"configure": 0, "check": 0, "reset": 0}

    def count(name: str) -> Any:
        def callback(conn: Conn) -> None:
            seen[name] += 1

        return callback

    with create_pool(
        dsql_local.url,
        min_size=1,
        max_size=1,
        configure=count("configure"),
        check=count("check"),
        reset=count("reset"),
    ) as pool:
        for _ in range(3):
            with pool.connection() as conn:
                conn.execute("SELECT 1")
        # One connection: it comes back only once reset (in a worker) ran.
        with pool.connection():
            assert seen == {"configure": 1, "check": 4, "reset": 3}


def test_idle_connections_past_max_lifetime_are_not_handed_out(dsql_local):
    # Keyed by the connections themselves: an id() is reused once one is freed.
    connected: dict[Any, float] = {}
    with create_pool(
        dsql_local.url,
        min_size=4,
        max_lifetime=0.3,
        configure=lambda conn: connected.__setitem__(conn, time.monotonic()),
    ) as pool:
        pool.wait()
        first = set(connected)
        time.sleep(0.4)  # all four now sit idle past their lifetime
        # psycopg_pool would back off 1 s, then 2 s, then 4 s between stale
        # connections failing a check; ours are skipped at once.
        asked = time.monotonic()
        conn = pool.getconn(timeout=2.0)
        try:
            assert conn not in first
            assert conn._dsql_deadline > asked  # within its lifetime when handed out
        finally:
            pool.putconn(conn)


@pytest.mark.slow
def test_no_connection_older_than_max_lifetime_is_ever_handed_out(dsql_local):
    max_lifetime = 0.4
    # (asked at, created at, expires at) of every checkout. The times the
    # pool stamped, not a clock read after the checkout: a thread switch
    # between the pool's check and such a read would add its delay to the age.
    checkouts: list[tuple[float, float, float]] = []
    lock = threading.Lock()
    with create_pool(
        dsql_local.url, min_size=2, max_size=3, max_lifetime=max_lifetime
    ) as pool:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                asked = time.monotonic()
                with pool.connection() as conn:
                    times = (asked, conn._dsql_created_at, conn._dsql_deadline)
                    conn.execute("SELECT 1")
                    time.sleep(rng.uniform(0, 0.05))
                with lock:
                    checkouts.append(times)
                time.sleep(rng.uniform(0, 0.3))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        stats = pool.get_stats()
    assert len(checkouts) > 20
    # Each connection lives at most max_lifetime, and none was handed out
    # after its end: asked for before it expired (so younger than that).
    # (a tolerance for the float sum of the stamp: created + lifetime - created)
    assert all(
        expires - created <= max_lifetime + 1e-9 for _, created, expires in checkouts
    )
    assert all(asked < expires for asked, _, expires in checkouts)
    assert stats["connections_num"] > 3  # connections were retired and replaced


# -- a DSQL Local with a 2-second connection cap and no token clock skew --------


@pytest.fixture(scope="module")
def strict_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(max_connection_age=2.0, clock_skew=0) as local:
        yield local


def test_connections_the_server_closed_are_skipped_at_checkout(strict_local):
    checked: list[int] = []
    with create_pool(
        strict_local.url,
        min_size=3,
        max_lifetime=1.5,
        check=lambda conn: checked.append(conn.info.backend_pid),
    ) as pool:
        pool.wait()
        strict_local.drop_connections()
        time.sleep(0.1)
        with pool.connection(timeout=2.0) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            pid = conn.info.backend_pid
    # The user's check ran only on the live connection handed out.
    assert checked == [pid]


@pytest.fixture(scope="module")
def capped_local() -> Iterator[DsqlLocal]:
    # The cap leaves 3 s to a transaction on a connection handed out at its
    # pool lifetime (1 s): room enough for a loaded machine's slowest one.
    with DsqlLocal(max_connection_age=4.0, clock_skew=0) as local:
        yield local


@pytest.mark.slow
def test_ten_seconds_under_a_four_second_connection_cap(capped_local):
    with dsql.connect(capped_local.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS writes")
        conn.execute("DROP TABLE IF EXISTS totals")
        conn.execute("CREATE TABLE writes (id uuid PRIMARY KEY, worker int NOT NULL)")
        conn.execute("CREATE TABLE totals (worker int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO totals SELECT g, 0 FROM generate_series(0, 3) g")

    retries: list[RetryEvent] = []
    committed: dict[int, list[uuid.UUID]] = {n: [] for n in range(4)}
    errors: list[BaseException] = []

    # max_lifetime 1 s under a 4 s cap, like 50 minutes under DSQL's 60.
    with create_pool(
        capped_local.url, min_size=2, max_size=4, max_lifetime=1.0
    ) as pool:

        def worker(n: int) -> None:
            # Ten lifetimes, and ten commits however slow the machine.
            end = time.monotonic() + 10.0
            try:
                while time.monotonic() < end or len(committed[n]) < 10:
                    key = uuid.uuid4()
                    for attempt in transaction(pool, on_retry=retries.append):
                        with attempt as conn:
                            conn.execute("INSERT INTO writes VALUES (%s, %s)", (key, n))
                            conn.execute(
                                "UPDATE totals SET n = n + 1 WHERE worker = %s", (n,)
                            )
                    committed[n].append(key)
                    time.sleep(0.01)
            except Exception as ex:  # reported below
                errors.append(ex)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        stats = pool.get_stats()

    assert errors == []
    assert retries == []  # not one transaction failed, even once
    with dsql.connect(capped_local.url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, worker FROM writes").fetchall()
        totals = dict(conn.execute("SELECT worker, n FROM totals").fetchall())
    assert sorted((k, n) for n, keys in committed.items() for k in keys) == sorted(rows)
    assert totals == {n: len(keys) for n, keys in committed.items()}
    assert stats["connections_num"] >= 10  # connections were renewed all along


@pytest.mark.slow
def test_pool_keeps_connecting_long_after_a_token_would_expire(strict_local):
    calls: list[int] = []
    with create_pool(
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
            with pool.connection() as conn:
                conn.execute("SELECT 1")
            checkouts += 1
            time.sleep(0.1)
        stats = pool.get_stats()
    assert checkouts > 20
    assert stats.get("connections_errors", 0) == 0
    assert len(calls) >= 8  # a fresh 2-second token for every connection
    assert set(calls) == {2}


def test_a_reused_token_is_refused_once_expired(strict_local):
    """The control for the test above: DSQL Local does enforce expiry."""
    client = boto3.client("dsql", region_name=strict_local.region)
    token = client.generate_db_connect_admin_auth_token(
        strict_local.host, strict_local.region, 1
    )
    time.sleep(2.5)
    with pytest.raises(AuthenticationError):
        dsql.connect(strict_local.url, token_provider=lambda **_: token)
