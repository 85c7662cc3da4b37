"""Retried transactions on asyncio pools and connections: test_retry.py's twin.

The same state machine drives both worlds; these tests run its async driver
(`async for attempt in transaction(apool)`, ``@retry_on_occ`` on
``async def``, ``await transaction(...).run(afn)`` / ``await
run_transaction(...)``) against DSQL Local.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as pge

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg.errors import (
    CommitOutcomeUnknown,
    ConfigurationError,
    DsqlError,
    OCCRetryExhausted,
)
from dsql_psycopg.retry import (
    AsyncRetryingTransaction,
    Phase,
    RetryEvent,
    RetryPolicy,
    is_occ_error,
    retry_on_occ,
    retry_testing,
    run_transaction,
    transaction,
)

pytestmark = pytest.mark.anyio

AConn = dsql.AsyncDsqlConnection[Any]
connect = dsql.AsyncDsqlConnection.connect


@pytest.fixture
def local(dsql_local: DsqlLocal) -> Iterator[DsqlLocal]:
    yield dsql_local
    dsql_local.inject_conflicts(0)
    dsql_local.inject_commit_drops(0)


@pytest.fixture
def counter(local: DsqlLocal, dsql_schema: str) -> str:
    """A table with one row (id 1, value 0); returns its qualified name."""
    table = f"{dsql_schema}.counter"
    with dsql.connect(local.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, value int NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
    return table


def value_of(local: DsqlLocal, table: str) -> int:
    with dsql.connect(local.url, autocommit=True) as conn:
        row = conn.execute(f"SELECT value FROM {table} WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def pool(local: DsqlLocal) -> AsyncIterator[Any]:
    async with dsql.create_async_pool(local.url, min_size=1, max_size=6) as pool:
        yield pool


@pytest.fixture
def no_sleep() -> Iterator[None]:
    with retry_testing():
        yield


async def increment(conn: AConn, table: str, by: int = 1) -> int:
    cursor = await conn.execute(
        f"UPDATE {table} SET value = value + %s WHERE id = 1 RETURNING value", (by,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


# -- the decorator on plain coroutine functions (no server) ----------------------


async def test_decorator_on_async_def_retries_conflicts(no_sleep: None) -> None:
    calls = 0
    events: list[RetryEvent] = []

    @retry_on_occ(max_attempts=4, on_retry=events.append)
    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 3:
            raise pge.SerializationFailure("conflict: (OC000)")
        return x * 2

    assert asyncio.iscoroutinefunction(flaky)
    assert flaky.__name__ == "flaky"
    assert await flaky(21) == 42
    assert calls == 3
    assert [(e.attempt, e.code) for e in events] == [(1, "OC000"), (2, "OC000")]


async def test_decorator_on_async_def_exhausts_and_lets_others_through(
    no_sleep: None,
) -> None:
    @retry_on_occ(max_attempts=2)
    async def always() -> None:
        raise pge.SerializationFailure("conflict: (OC001)")

    with pytest.raises(OCCRetryExhausted) as info:
        await always()
    assert info.value.attempts == 2
    assert is_occ_error(info.value.__cause__)

    runs = 0

    @retry_on_occ
    async def broken() -> None:
        nonlocal runs
        runs += 1
        raise KeyError("x")

    with pytest.raises(KeyError):
        await broken()
    assert runs == 1


async def test_waits_are_awaited_not_slept() -> None:
    # Another task keeps running while a retry waits: the loop is not blocked.
    ticks = 0
    calls = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    @retry_on_occ(base_delay=0.1, max_delay=0.1, jitter=0)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise pge.SerializationFailure("conflict: (OC000)")

    task = asyncio.get_running_loop().create_task(ticker())
    try:
        await flaky()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls == 2
    assert ticks >= 2


def test_bad_sources_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="asyncio twins"):
        transaction(object())  # type: ignore[call-overload]


# -- the article's Verification 2, with tasks ---------------------------------------


async def race(pool: Any, table: str, max_attempts: int) -> tuple[int, list[Any]]:
    """Five tasks read the counter, then write it back plus one, all at once."""
    read = 0
    everyone_read = asyncio.Event()

    async def task() -> None:
        nonlocal read
        async for attempt in transaction(pool, max_attempts=max_attempts):
            async with attempt as conn:
                row = await (
                    await conn.execute(f"SELECT value FROM {table} WHERE id = 1")
                ).fetchone()
                assert row is not None
                if attempt.number == 1:
                    read += 1
                    if read == 5:
                        everyone_read.set()
                    await everyone_read.wait()
                await conn.execute(
                    f"UPDATE {table} SET value = %s WHERE id = 1", (row[0] + 1,)
                )

    results = await asyncio.gather(*(task() for _ in range(5)), return_exceptions=True)
    failures = [r for r in results if r is not None]
    assert all(isinstance(f, OCCRetryExhausted) for f in failures), failures
    return 5 - len(failures), failures


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_verification_2_no_lost_or_double_update(
    local: DsqlLocal, counter: str, max_attempts: int
) -> None:
    async with dsql.create_async_pool(local.url, min_size=5, max_size=5) as pool:
        successes, failures = await race(pool, counter, max_attempts)
    assert value_of(local, counter) == successes
    assert all(f.attempts == max_attempts for f in failures)
    if max_attempts == 1:
        assert successes == 1


async def test_verification_2_ten_attempts_all_succeed(
    local: DsqlLocal, counter: str
) -> None:
    async with dsql.create_async_pool(local.url, min_size=5, max_size=5) as pool:
        successes, failures = await race(pool, counter, max_attempts=10)
    assert failures == []
    assert successes == 5
    assert value_of(local, counter) == 5


# -- the forms, on a pool and on one connection --------------------------------------


async def run_form(
    form: str, source: Any, table: str, **options: Any
) -> tuple[int, int]:
    """Increment in a retried transaction; return (result, body runs)."""
    runs = 0

    async def body(conn: AConn, by: int) -> int:
        nonlocal runs
        runs += 1
        return await increment(conn, table, by)

    if form == "iterator":
        async for attempt in transaction(source, **options):
            async with attempt as conn:
                result = await body(conn, 1)
    elif form == "decorator":

        @retry_on_occ(**options)
        async def decorated(by: int) -> int:
            async with transaction(source) as conn:
                return await body(conn, by)

        result = await decorated(1)
    elif form == "run":
        result = await transaction(source, **options).run(body, 1)
    else:
        assert not options
        result = await run_transaction(source, body, 1)
    return result, runs


FORMS = ["iterator", "decorator", "run"]


@pytest.fixture(params=["pool", "connection"])
async def source(request: Any, local: DsqlLocal, pool: Any) -> AsyncIterator[Any]:
    if request.param == "pool":
        yield pool
    else:
        async with await connect(local.url) as conn:
            yield conn


@pytest.mark.parametrize("form", FORMS)
async def test_forms_retry_injected_conflicts(
    local: DsqlLocal, counter: str, source: Any, form: str, no_sleep: None
) -> None:
    events: list[RetryEvent] = []
    local.inject_conflicts(2, code="OC001")
    result, runs = await run_form(
        form, source, counter, base_delay=0.01, jitter=0, on_retry=events.append
    )
    assert runs == 3
    assert result == 1
    assert value_of(local, counter) == 1
    assert [(e.attempt, e.delay, e.sqlstate, e.code) for e in events] == [
        (1, 0.01, "40001", "OC001"),
        (2, 0.02, "40001", "OC001"),
    ]
    assert all(isinstance(e.error, pge.SerializationFailure) for e in events)


async def test_run_transaction_is_awaitable_for_async_sources(
    local: DsqlLocal, counter: str, source: Any, no_sleep: None
) -> None:
    local.inject_conflicts(1)
    assert await run_form("run_transaction", source, counter) == (1, 2)
    assert value_of(local, counter) == 1


@pytest.mark.parametrize("form", FORMS)
async def test_forms_exhaust_with_the_last_conflict(
    local: DsqlLocal, counter: str, source: Any, form: str, no_sleep: None
) -> None:
    local.inject_conflicts(5)
    with pytest.raises(OCCRetryExhausted) as info:
        await run_form(form, source, counter, max_attempts=3)
    assert info.value.attempts == 3
    cause = info.value.__cause__
    assert isinstance(cause, pge.SerializationFailure)
    assert "(OC000)" in str(cause)
    assert value_of(local, counter) == 0
    assert (await run_form(form, source, counter, max_attempts=3))[1] == 3


@pytest.mark.parametrize("form", FORMS)
async def test_forms_let_other_errors_through_after_one_run(
    local: DsqlLocal, counter: str, source: Any, form: str
) -> None:
    runs = 0
    error = None

    async def body(conn: AConn) -> None:
        nonlocal runs, error
        runs += 1
        await increment(conn, counter)
        try:
            await conn.execute(f"INSERT INTO {counter} VALUES (1, 0)")
        except pge.UniqueViolation as ex:
            error = ex
            raise

    async def run() -> None:
        if form == "iterator":
            async for attempt in transaction(source):
                async with attempt as conn:
                    await body(conn)
        elif form == "decorator":

            @retry_on_occ
            async def whole() -> None:
                await run_transaction(source, body)

            await whole()
        else:
            await transaction(source).run(body)

    with pytest.raises(pge.UniqueViolation) as info:
        await run()
    assert info.value is error
    assert runs == 1
    assert value_of(local, counter) == 0


async def test_exact_delays_are_awaited_without_the_testing_switch(
    local: DsqlLocal, counter: str, pool: Any
) -> None:
    slept: list[float] = []
    local.inject_conflicts(3)
    t0 = time.monotonic()
    await run_form(
        "iterator",
        pool,
        counter,
        base_delay=0.05,
        jitter=0,
        on_retry=lambda e: slept.append(e.delay),
    )
    assert slept == [0.05, 0.1, 0.2]
    assert time.monotonic() - t0 >= 0.35


# -- lost connections ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lonely_local() -> Iterator[DsqlLocal]:
    """A DSQL Local of our own: these tests drop every connection and add latency."""
    with DsqlLocal() as local:
        yield local


@pytest.fixture
def lonely_counter(lonely_local: DsqlLocal) -> Iterator[str]:
    with dsql.connect(lonely_local.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS counter")
        conn.execute("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)")
        conn.execute("INSERT INTO counter VALUES (1, 0)")
    yield "counter"
    lonely_local.latency = 0


@pytest.mark.parametrize("where", ["between statements", "after the last statement"])
async def test_connection_dropped_before_commit_reruns_on_a_fresh_one(
    lonely_local: DsqlLocal, lonely_counter: str, where: str, no_sleep: None
) -> None:
    events: list[RetryEvent] = []
    pids: list[int] = []
    async with dsql.create_async_pool(lonely_local.url, min_size=2, max_size=2) as p:
        async for attempt in transaction(p, on_retry=events.append):
            async with attempt as conn:
                pids.append(conn.info.backend_pid)
                await increment(conn, lonely_counter)
                if attempt.number == 1:
                    lonely_local.drop_connections()
                    if where == "between statements":
                        await increment(conn, lonely_counter)
    assert len(pids) == 2
    assert pids[0] != pids[1]
    assert [(e.attempt, e.reason, e.sqlstate) for e in events] == [
        (1, "connection_lost", None)
    ]
    assert value_of(lonely_local, lonely_counter) == 1


async def test_connection_dropped_before_commit_on_a_lone_connection_propagates(
    lonely_local: DsqlLocal, lonely_counter: str
) -> None:
    runs = 0
    async with await connect(lonely_local.url) as conn:
        with pytest.raises(psycopg.OperationalError) as info:  # noqa: PT012
            async for attempt in transaction(conn):
                async with attempt as c:
                    runs += 1
                    await increment(c, lonely_counter)
                    lonely_local.drop_connections()
                    await increment(c, lonely_counter)
        assert not isinstance(info.value, DsqlError)
        assert conn.closed
    assert runs == 1
    assert value_of(lonely_local, lonely_counter) == 0


def drop_during_commit(local: DsqlLocal) -> threading.Timer:
    """Drop every connection while the COMMIT sent next is held in flight."""
    local.latency = 0.4
    timer = threading.Timer(0.2, local.drop_connections)
    timer.start()
    return timer


async def test_connection_dropped_during_commit_is_not_rerun(
    lonely_local: DsqlLocal, lonely_counter: str
) -> None:
    runs = 0
    timers: list[threading.Timer] = []
    async with dsql.create_async_pool(lonely_local.url, min_size=1, max_size=1) as p:
        with pytest.raises(CommitOutcomeUnknown) as info:  # noqa: PT012
            async for attempt in transaction(p):
                async with attempt as conn:
                    runs += 1
                    await increment(conn, lonely_counter)
                    timers.append(drop_during_commit(lonely_local))
    timers[0].join()
    assert runs == 1
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    lonely_local.latency = 0
    assert value_of(lonely_local, lonely_counter) == 0


async def test_connection_dropped_during_commit_reruns_when_idempotent(
    lonely_local: DsqlLocal, lonely_counter: str, no_sleep: None
) -> None:
    events: list[RetryEvent] = []
    timers: list[threading.Timer] = []
    async with dsql.create_async_pool(lonely_local.url, min_size=1, max_size=1) as p:
        async for attempt in transaction(p, idempotent=True, on_retry=events.append):
            async with attempt as conn:
                await conn.execute(
                    f"UPDATE {lonely_counter} SET value = 7 WHERE id = 1"
                )
                if attempt.number == 1:
                    timers.append(drop_during_commit(lonely_local))
                else:
                    lonely_local.latency = 0
    timers[0].join()
    assert [(e.attempt, e.reason) for e in events] == [(1, "commit_outcome_unknown")]
    assert value_of(lonely_local, lonely_counter) == 7


async def test_decorator_reruns_a_connection_lost_before_commit_by_an_inner_transaction(
    lonely_local: DsqlLocal, lonely_counter: str, no_sleep: None
) -> None:
    runs = 0
    async with dsql.create_async_pool(lonely_local.url, min_size=1, max_size=2) as p:

        @retry_on_occ
        async def work() -> int:
            nonlocal runs
            runs += 1
            async with transaction(p) as conn:
                value = await increment(conn, lonely_counter)
                if runs == 1:
                    lonely_local.drop_connections()
                    await increment(conn, lonely_counter)
            return value

        assert await work() == 1
    assert runs == 2
    assert value_of(lonely_local, lonely_counter) == 1


@pytest.fixture
def ledger(local: DsqlLocal, dsql_schema: str) -> str:
    table = f"{dsql_schema}.ledger"
    with dsql.connect(local.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount int NOT NULL)")
    return table


def ledger_rows(local: DsqlLocal, table: str) -> list[tuple[int, int]]:
    with dsql.connect(local.url, autocommit=True) as conn:
        return conn.execute(f"SELECT id, amount FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize("kind", ["pool", "connection"])
async def test_connection_lost_after_commit_is_not_rerun(
    local: DsqlLocal, ledger: str, pool: Any, kind: str
) -> None:
    runs = 0

    async def body(conn: AConn) -> None:
        nonlocal runs
        runs += 1
        await conn.execute(f"INSERT INTO {ledger} VALUES (%s, 10)", (runs,))

    source = pool if kind == "pool" else await pool.getconn()
    local.inject_commit_drops(1)
    with pytest.raises(CommitOutcomeUnknown) as info:
        await run_transaction(source, body)
    if kind == "connection":
        assert source.closed
        await pool.putconn(source)
    assert runs == 1
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert ledger_rows(local, ledger) == [(1, 10)]

    async def one(conn: AConn) -> Any:
        return await (await conn.execute("SELECT 1")).fetchone()

    assert await run_transaction(pool, one) == (1,)


async def test_connection_lost_after_commit_reruns_an_idempotent_body(
    local: DsqlLocal, ledger: str, pool: Any, no_sleep: None
) -> None:
    runs = 0
    events: list[RetryEvent] = []

    async def upsert(conn: AConn) -> None:
        nonlocal runs
        runs += 1
        await conn.execute(
            f"INSERT INTO {ledger} VALUES (1, 10)"
            " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount"
        )

    local.inject_commit_drops(1)
    await transaction(pool, idempotent=True, on_retry=events.append).run(upsert)
    assert runs == 2
    assert [(e.attempt, e.reason) for e in events] == [(1, "commit_outcome_unknown")]
    assert ledger_rows(local, ledger) == [(1, 10)]


# -- transactions, nesting and misuse --------------------------------------------------


async def test_autocommit_connection_still_gets_one_transaction(
    local: DsqlLocal, counter: str
) -> None:
    async with await connect(local.url, autocommit=True) as conn:
        with pytest.raises(ZeroDivisionError):  # noqa: PT012
            async with transaction(conn) as c:
                await increment(c, counter)
                assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
                _ = 1 / 0
        assert value_of(local, counter) == 0
        async with transaction(conn) as c:
            await increment(c, counter)
        assert conn.autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert value_of(local, counter) == 1


async def test_inner_transaction_on_the_same_source_joins(
    local: DsqlLocal, counter: str, pool: Any
) -> None:
    async for attempt in transaction(pool):
        async with attempt as outer:
            await increment(outer, counter)
            async with transaction(pool) as inner:
                assert inner is outer
                await increment(inner, counter)
            async for inner_attempt in transaction(outer):
                async with inner_attempt as inner:
                    assert inner is outer
            assert value_of(local, counter) == 0
    assert value_of(local, counter) == 2


async def test_concurrent_tasks_never_join_each_other(
    local: DsqlLocal, counter: str, pool: Any
) -> None:
    # The enclosing scope is per task (a context variable): two tasks on one
    # pool run two transactions, on two connections.
    both_in = asyncio.Event()
    inside = 0
    seen: list[int] = []

    async def work() -> None:
        nonlocal inside
        async for attempt in transaction(pool, max_attempts=10):
            async with attempt as conn:
                seen.append(conn.info.backend_pid)
                inside += 1
                if inside >= 2:
                    both_in.set()
                await both_in.wait()
                await increment(conn, counter)

    with retry_testing():
        await asyncio.gather(work(), work())
    assert len(set(seen[:2])) == 2
    assert value_of(local, counter) == 2


async def test_conflict_in_a_joined_scope_reruns_the_whole_transaction(
    local: DsqlLocal, counter: str, pool: Any, no_sleep: None
) -> None:
    runs = []
    local.inject_conflicts(1)

    @retry_on_occ(max_attempts=1)
    async def add_one(conn: AConn) -> None:
        async with transaction(conn) as c:
            await increment(c, counter)

    async for attempt in transaction(pool):
        async with attempt as conn:
            runs.append(attempt.number)
            await add_one(conn)
            await add_one(conn)
    assert runs == [1, 2]
    assert value_of(local, counter) == 2


async def test_connection_in_a_foreign_transaction_is_refused(
    local: DsqlLocal, counter: str
) -> None:
    async with await connect(local.url) as conn:
        await conn.execute("SELECT 1")
        with pytest.raises(DsqlError, match="already in a transaction"):
            await transaction(conn).__aenter__()
        await conn.rollback()


async def test_swallowed_statement_error_does_not_commit_silently(
    local: DsqlLocal, counter: str, pool: Any
) -> None:
    async def swallow() -> None:
        async with transaction(pool) as conn:
            await increment(conn, counter)
            with contextlib.suppress(pge.DivisionByZero):
                await conn.execute("SELECT 1 / 0")

    with pytest.raises(pge.InFailedSqlTransaction, match="rolled back, not committed"):
        await swallow()
    assert value_of(local, counter) == 0


async def test_leaving_the_loop_with_a_conflict_pending_warns(
    local: DsqlLocal, counter: str, pool: Any, no_sleep: None
) -> None:
    async def sloppy() -> int:
        async for attempt in transaction(pool):
            async with attempt as conn:
                return await increment(conn, counter)
        raise AssertionError("unreachable")

    local.inject_conflicts(1)
    with pytest.warns(RuntimeWarning, match="did not commit"):
        assert await sloppy() == 1
    assert value_of(local, counter) == 0


async def test_policy_object_and_keywords_combine(
    local: DsqlLocal, counter: str, pool: Any, no_sleep: None
) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=2, base_delay=0.3, max_delay=0.3, jitter=0)
    local.inject_conflicts(1)
    retried = transaction(pool, policy=policy, on_retry=events.append)
    assert isinstance(retried, AsyncRetryingTransaction)
    assert await retried.run(increment, counter) == 1
    assert [e.delay for e in events] == [0.3]
    local.inject_conflicts(2)
    with pytest.raises(OCCRetryExhausted):
        await transaction(pool, policy=policy).run(increment, counter)


async def test_run_transaction_passes_every_keyword_to_the_function(
    local: DsqlLocal, counter: str, pool: Any, no_sleep: None
) -> None:
    seen: list[tuple[float, int]] = []

    async def add(
        conn: AConn, table: str, *, by: int, timeout: float, max_attempts: int
    ) -> int:
        seen.append((timeout, max_attempts))
        return await increment(conn, table, by)

    local.inject_conflicts(1)
    result = await run_transaction(
        pool, add, counter, by=5, timeout=3.0, max_attempts=1
    )
    assert result == 5
    assert seen == [(3.0, 1)] * 2


async def test_retry_logs_hold_no_parameters(
    local: DsqlLocal, counter: str, pool: Any, caplog: Any, no_sleep: None
) -> None:
    secret = "card-4111-1111-1111-1111"
    events: list[RetryEvent] = []
    caplog.set_level(logging.DEBUG, logger="dsql_psycopg")
    local.inject_conflicts(2)
    async for attempt in transaction(pool, on_retry=events.append):
        async with attempt as conn:
            await conn.execute(
                f"UPDATE {counter} SET value = length(%s) WHERE id = 1", (secret,)
            )
    assert len(events) == 2
    retry_lines = [r for r in caplog.records if r.name == "dsql_psycopg.retry"]
    assert len(retry_lines) == 2
    assert secret not in caplog.text + " ".join(repr(e) for e in events)


# -- the state machine's phases --------------------------------------------------------


async def test_a_conflict_at_commit_settles_its_attempt_once(
    local: DsqlLocal, counter: str, pool: Any, no_sleep: None
) -> None:
    events: list[RetryEvent] = []
    phases: list[Phase] = []
    local.inject_conflicts(1)
    async for attempt in transaction(pool, on_retry=events.append):
        machine = attempt._machine
        phases.append(machine.phase)
        async with attempt as conn:
            phases.append(machine.phase)
            await increment(conn, counter)
        phases.append(machine.phase)
    assert phases == [
        Phase.BEFORE_ATTEMPT,
        Phase.IN_BODY,
        Phase.RETRY_DUE,
        Phase.BEFORE_ATTEMPT,
        Phase.IN_BODY,
        Phase.DONE,
    ]
    assert [(e.attempt, e.reason) for e in events] == [(1, "conflict")]
    assert value_of(local, counter) == 1


async def test_next_attempt_inside_the_with_block_is_refused(
    local: DsqlLocal, counter: str, pool: Any
) -> None:
    attempts = aiter(transaction(pool))
    with pytest.raises(DsqlError, match="leave the `with attempt` block"):  # noqa: PT012
        async with await anext(attempts) as conn:
            await increment(conn, counter)
            await anext(attempts)
    assert value_of(local, counter) == 0


async def test_an_attempt_never_entered_ends_the_loop(pool: Any) -> None:
    handed_out = [attempt.number async for attempt in transaction(pool)]
    assert handed_out == [1]
