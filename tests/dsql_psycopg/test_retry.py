"""The retry loop: on plain functions and by hand, then against DSQL Local."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import errors as pge

import dsql_psycopg as dsql
import dsql_psycopg.retry as retry
from dsql_local import DsqlLocal
from dsql_psycopg.errors import (
    CommitOutcomeUnknown,
    ConfigurationError,
    DsqlError,
    OCCRetryExhausted,
)
from dsql_psycopg.pool import create_pool
from dsql_psycopg.retry import (
    Phase,
    RetryEvent,
    RetryPolicy,
    is_occ_error,
    retry_on_occ,
    retry_testing,
    run_transaction,
    transaction,
)
from tests.fixtures.drivers import Driver

Conn = dsql.DsqlConnection[Any]

OC000 = "change conflicts with another transaction, please retry: (OC000)"
OC001 = "schema has been updated by another transaction, please retry: (OC001)"


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
def pool(local: DsqlLocal) -> Iterator[Any]:
    with create_pool(local.url, min_size=1, max_size=6) as pool:
        yield pool


@pytest.fixture
def no_sleep() -> Iterator[None]:
    with retry_testing():
        yield


# -- the loop, on plain functions (no server) ----------------------------------


class Flaky:
    """Fails with the given errors, one per call, then returns the call count."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def test_decorator_retries_conflicts_and_reports_each_retry(no_sleep, caplog):
    events: list[RetryEvent] = []
    flaky = Flaky(pge.SerializationFailure(OC000), psycopg.OperationalError(OC001))
    policy = RetryPolicy(
        max_attempts=10, base_delay=0.5, max_delay=5.0, jitter=0, on_retry=events.append
    )
    caplog.set_level(logging.DEBUG, logger="dsql_psycopg.retry")

    assert retry_on_occ(policy=policy)(flaky)() == 3
    assert flaky.calls == 3
    assert [(e.attempt, e.delay, e.reason, e.sqlstate, e.code) for e in events] == [
        (1, 0.5, "conflict", "40001", "OC000"),
        (2, 1.0, "conflict", None, "OC001"),
    ]
    assert all(e.elapsed >= 0 for e in events)
    lines = [r.getMessage() for r in caplog.records if r.name == "dsql_psycopg.retry"]
    assert len(lines) == 2
    assert "attempt 1 of 10 failed" in lines[0]
    assert "OC000" in lines[0]
    assert "retrying in 0.500 s" in lines[0]
    # Codes only: the server's text (which might quote data) stays out.
    assert "conflicts with another" not in " ".join(lines)


def test_bare_decorator_and_wraps():
    @retry_on_occ
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(2, 3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."


def test_exhaustion_carries_attempts_and_last_error(no_sleep):
    errors = [pge.SerializationFailure(OC000) for _ in range(4)]
    flaky = Flaky(*errors)
    with pytest.raises(OCCRetryExhausted) as info:
        retry_on_occ(max_attempts=3)(flaky)()
    assert flaky.calls == 3
    assert info.value.attempts == 3
    assert info.value.__cause__ is errors[2]
    assert "after 3 attempt(s)" in str(info.value)
    assert "max_attempts=3" in str(info.value)
    assert "OC000" in str(info.value)
    assert is_occ_error(info.value)


def test_time_budget_stops_before_a_wait_that_would_overrun_it(no_sleep):
    flaky = Flaky(*(pge.SerializationFailure(OC000) for _ in range(5)))
    decorated = retry_on_occ(base_delay=0.2, max_delay=2.0, jitter=0, timeout=0.5)(
        flaky
    )
    with pytest.raises(OCCRetryExhausted, match=r"0\.5 s time limit") as info:
        decorated()
    # Waits of 0.2 and 0.4 s: the second would end past the 0.5 s budget.
    assert flaky.calls == 2
    assert info.value.attempts == 2


def test_non_occ_error_runs_once_and_propagates_unchanged():
    boom = pge.UniqueViolation("duplicate key")
    flaky = Flaky(boom)
    with pytest.raises(pge.UniqueViolation) as info:
        retry_on_occ(flaky)()
    assert info.value is boom
    assert flaky.calls == 1


def test_keyboard_interrupt_is_not_retried():
    flaky = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry_on_occ(flaky)()
    assert flaky.calls == 1


def test_connection_loss_is_retried_only_when_idempotent(no_sleep):
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    flaky = Flaky(lost)
    with pytest.raises(psycopg.OperationalError) as info:
        retry_on_occ(flaky)()
    assert info.value is lost
    assert flaky.calls == 1

    flaky = Flaky(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert retry_on_occ(idempotent=True)(flaky)() == 2


def test_nested_retrying_scopes_leave_retries_to_the_outermost(no_sleep):
    inner = Flaky(pge.SerializationFailure(OC000), pge.SerializationFailure(OC000))
    outer_calls = 0

    @retry_on_occ(max_attempts=5)
    def outer() -> int:
        nonlocal outer_calls
        outer_calls += 1
        return retry_on_occ(max_attempts=5)(inner)()

    assert outer() == 3
    # The inner decorator ran once per outer run: retries did not multiply.
    assert outer_calls == 3
    assert inner.calls == 3


def test_hook_errors_propagate(no_sleep):
    def hook(event: RetryEvent) -> None:
        raise LookupError("hook failed")

    flaky = Flaky(pge.SerializationFailure(OC000))
    with pytest.raises(LookupError, match="hook failed"):
        retry_on_occ(on_retry=hook)(flaky)()


def test_policy_argument_is_checked():
    with pytest.raises(ConfigurationError, match="policy must be a RetryPolicy"):
        retry_on_occ(policy={"max_attempts": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ConnectionPool or a psycopg"):
        retry.transaction("host=localhost")  # type: ignore[call-overload]


# -- the article's Verification 2 ---------------------------------------------


def race(pool: Any, table: str, max_attempts: int) -> tuple[int, list[BaseException]]:
    """Five tasks read the counter, then write it back plus one, all at once."""
    start = threading.Barrier(5, timeout=30)
    successes = 0
    failures: list[BaseException] = []
    lock = threading.Lock()

    def task() -> None:
        nonlocal successes
        try:
            for attempt in transaction(pool, max_attempts=max_attempts):
                with attempt as conn:
                    row = conn.execute(
                        f"SELECT value FROM {table} WHERE id = 1"
                    ).fetchone()
                    assert row is not None
                    if attempt.number == 1:
                        start.wait()  # everyone has read the same value
                    conn.execute(
                        f"UPDATE {table} SET value = %s WHERE id = 1", (row[0] + 1,)
                    )
        except OCCRetryExhausted as ex:
            with lock:
                failures.append(ex)
        else:
            with lock:
                successes += 1

    threads = [threading.Thread(target=task) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return successes, failures


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_verification_2_no_lost_or_double_update(local, counter, max_attempts):
    with create_pool(local.url, min_size=5, max_size=5) as pool:
        successes, failures = race(pool, counter, max_attempts)
    assert successes + len(failures) == 5
    assert value_of(local, counter) == successes
    assert all(is_occ_error(f) and f.attempts == max_attempts for f in failures)
    if max_attempts == 1:
        # All five read 0 before anyone wrote: exactly one can win.
        assert successes == 1


def test_verification_2_ten_attempts_all_succeed(local, counter):
    with create_pool(local.url, min_size=5, max_size=5) as pool:
        successes, failures = race(pool, counter, max_attempts=10)
    assert failures == []
    assert successes == 5
    assert value_of(local, counter) == 5


# -- the three forms, on a pool and on one connection ------------------------------


def increment(conn: Conn, table: str, by: int = 1) -> int:
    row = conn.execute(
        f"UPDATE {table} SET value = value + %s WHERE id = 1 RETURNING value", (by,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_form(form: str, source: Any, table: str, **options: Any) -> tuple[int, int]:
    """Increment in a retried transaction; return (result, body runs)."""
    runs = 0

    def body(conn: Conn, by: int) -> int:
        nonlocal runs
        runs += 1
        return increment(conn, table, by)

    if form == "iterator":
        for attempt in transaction(source, **options):
            with attempt as conn:
                result = body(conn, 1)
    elif form == "decorator":

        @retry_on_occ(**options)
        def decorated(by: int) -> int:
            with transaction(source) as conn:
                return body(conn, by)

        result = decorated(1)
    else:
        result = transaction(source, **options).run(body, 1)
    return result, runs


FORMS = ["iterator", "decorator", "run_transaction"]


@pytest.fixture(params=["pool", "connection"])
def source(request, local, pool) -> Iterator[Any]:
    if request.param == "pool":
        yield pool
    else:
        with dsql.connect(local.url) as conn:
            yield conn


@pytest.mark.parametrize("form", FORMS)
def test_forms_retry_injected_conflicts(local, counter, source, form, no_sleep):
    events: list[RetryEvent] = []
    local.inject_conflicts(2, code="OC001")
    result, runs = run_form(
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


@pytest.mark.parametrize("form", FORMS)
def test_forms_exhaust_with_the_last_conflict(local, counter, source, form, no_sleep):
    local.inject_conflicts(5)
    with pytest.raises(OCCRetryExhausted) as info:
        run_form(form, source, counter, max_attempts=3)
    assert info.value.attempts == 3
    cause = info.value.__cause__
    assert isinstance(cause, pge.SerializationFailure)
    assert cause.sqlstate == "40001"
    assert "(OC000)" in str(cause)
    assert "after 3 attempt(s)" in str(info.value)
    assert value_of(local, counter) == 0
    # Two injected conflicts are left: nothing ran a fourth time.
    assert run_form(form, source, counter, max_attempts=3)[1] == 3


@pytest.mark.parametrize("form", FORMS)
def test_forms_let_other_errors_through_after_one_run(local, counter, source, form):
    runs = 0
    error = None

    def body(conn: Conn) -> None:
        nonlocal runs, error
        runs += 1
        increment(conn, counter)
        try:
            conn.execute(f"INSERT INTO {counter} VALUES (1, 0)")
        except pge.UniqueViolation as ex:
            error = ex
            raise

    def run() -> None:
        if form == "iterator":
            for attempt in transaction(source):
                with attempt as conn:
                    body(conn)
        elif form == "decorator":
            retry_on_occ(lambda: run_transaction(source, body))()
        else:
            run_transaction(source, body)

    with pytest.raises(pge.UniqueViolation) as info:
        run()
    assert info.value is error
    assert runs == 1
    assert value_of(local, counter) == 0  # rolled back


def test_exact_delays_are_slept_without_the_testing_switch(local, counter, pool):
    slept: list[float] = []
    local.inject_conflicts(3)
    t0 = time.monotonic()
    run_form(
        "iterator",
        pool,
        counter,
        base_delay=0.05,
        jitter=0,
        on_retry=lambda e: slept.append(e.delay),
    )
    assert slept == [0.05, 0.1, 0.2]
    assert time.monotonic() - t0 >= 0.35


# -- lost connections ---------------------------------------------------------


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
def test_connection_dropped_before_commit_reruns_on_a_fresh_one(
    lonely_local, lonely_counter, where, no_sleep
):
    events: list[RetryEvent] = []
    pids: list[int] = []
    with create_pool(lonely_local.url, min_size=2, max_size=2) as pool:
        for attempt in transaction(pool, on_retry=events.append):
            with attempt as conn:
                pids.append(conn.info.backend_pid)
                increment(conn, lonely_counter)
                if attempt.number == 1:
                    lonely_local.drop_connections()
                    if where == "between statements":
                        increment(conn, lonely_counter)
    assert len(pids) == 2
    assert pids[0] != pids[1]
    assert [(e.attempt, e.reason, e.sqlstate) for e in events] == [
        (1, "connection_lost", None)
    ]
    assert value_of(lonely_local, lonely_counter) == 1


def test_connection_dropped_before_commit_on_a_lone_connection_propagates(
    lonely_local, lonely_counter
):
    runs = 0

    def run(conn: Conn) -> None:
        nonlocal runs
        for attempt in transaction(conn):
            with attempt as c:
                runs += 1
                increment(c, lonely_counter)
                lonely_local.drop_connections()
                increment(c, lonely_counter)

    with dsql.connect(lonely_local.url) as conn:
        with pytest.raises(psycopg.OperationalError) as info:
            run(conn)
        assert not isinstance(info.value, DsqlError)
        assert conn.closed
    assert runs == 1  # no fresh connection to run it on
    assert value_of(lonely_local, lonely_counter) == 0


def drop_during_commit(local: DsqlLocal) -> threading.Timer:
    """Drop every connection while the COMMIT sent next is held in flight.

    With 0.4 s of latency the endpoint holds each client message that long:
    dropping 0.2 s after the body ends cuts the connection while COMMIT is on
    its way to the server, and before any answer can come back.
    """
    local.latency = 0.4
    timer = threading.Timer(0.2, local.drop_connections)
    timer.start()
    return timer


@pytest.mark.parametrize("kind", ["pool", "connection"])
def test_connection_dropped_during_commit_is_not_rerun(
    lonely_local, lonely_counter, kind
):
    runs = 0
    timers: list[threading.Timer] = []

    def run(source: Any) -> None:
        nonlocal runs
        for attempt in transaction(source):
            with attempt as conn:
                runs += 1
                increment(conn, lonely_counter)
                timers.append(drop_during_commit(lonely_local))

    with create_pool(lonely_local.url, min_size=1, max_size=1) as pool:
        source = pool if kind == "pool" else pool.getconn()
        with pytest.raises(CommitOutcomeUnknown) as info:
            run(source)
        if kind == "connection":
            pool.putconn(source)
    timers[0].join()
    assert runs == 1
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert "may or may not have committed" in str(info.value)
    lonely_local.latency = 0
    # Here the COMMIT never reached the server; in DSQL it might have.
    assert value_of(lonely_local, lonely_counter) == 0


def test_connection_dropped_during_commit_reruns_when_idempotent(
    lonely_local, lonely_counter, no_sleep
):
    events: list[RetryEvent] = []
    timers: list[threading.Timer] = []
    with create_pool(lonely_local.url, min_size=1, max_size=1) as pool:
        for attempt in transaction(pool, idempotent=True, on_retry=events.append):
            with attempt as conn:
                conn.execute(f"UPDATE {lonely_counter} SET value = 7 WHERE id = 1")
                if attempt.number == 1:
                    timers.append(drop_during_commit(lonely_local))
                else:
                    lonely_local.latency = 0
    timers[0].join()
    assert [(e.attempt, e.reason) for e in events] == [(1, "commit_outcome_unknown")]
    assert isinstance(events[0].error, CommitOutcomeUnknown)
    assert value_of(lonely_local, lonely_counter) == 7


def test_decorator_reruns_a_connection_lost_before_commit_by_an_inner_transaction(
    lonely_local, lonely_counter, no_sleep
):
    runs = 0
    with create_pool(lonely_local.url, min_size=1, max_size=2) as pool:

        @retry_on_occ
        def work() -> int:
            nonlocal runs
            runs += 1
            with transaction(pool) as conn:
                value = increment(conn, lonely_counter)
                if runs == 1:
                    lonely_local.drop_connections()
                    increment(conn, lonely_counter)
            return value

        assert work() == 1
    assert runs == 2
    assert value_of(lonely_local, lonely_counter) == 1


@pytest.fixture
def ledger(local: DsqlLocal, dsql_schema: str) -> str:
    """An empty table of (id, amount) rows; returns its qualified name."""
    table = f"{dsql_schema}.ledger"
    with dsql.connect(local.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount int NOT NULL)")
    return table


def ledger_rows(local: DsqlLocal, table: str) -> list[tuple[int, int]]:
    with dsql.connect(local.url, autocommit=True) as conn:
        return conn.execute(f"SELECT id, amount FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize("form", ["iterator", "run_transaction"])
@pytest.mark.parametrize("kind", ["pool", "connection"])
def test_connection_lost_after_commit_is_not_rerun(local, ledger, pool, form, kind):
    runs = 0

    def body(conn: Conn) -> None:
        nonlocal runs
        runs += 1
        conn.execute(f"INSERT INTO {ledger} VALUES (%s, 10)", (runs,))

    source = pool if kind == "pool" else pool.getconn()
    local.inject_commit_drops(1)
    with pytest.raises(CommitOutcomeUnknown) as info:  # noqa: PT012
        if form == "iterator":
            for attempt in transaction(source):
                with attempt as conn:
                    body(conn)
        else:
            run_transaction(source, body)
    if kind == "connection":
        assert source.closed
        pool.putconn(source)
    assert runs == 1
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    # The COMMIT reached the server: the row is there, exactly once.
    assert ledger_rows(local, ledger) == [(1, 10)]
    # The pool replaced the broken connection.
    assert run_transaction(pool, lambda c: c.execute("SELECT 1").fetchone()) == (1,)


def test_connection_lost_after_commit_reruns_an_idempotent_body(
    local, ledger, pool, no_sleep
):
    runs = 0
    events: list[RetryEvent] = []

    def upsert(conn: Conn) -> None:
        nonlocal runs
        runs += 1
        conn.execute(
            f"INSERT INTO {ledger} VALUES (1, 10)"
            " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount"
        )

    local.inject_commit_drops(1)
    transaction(pool, idempotent=True, on_retry=events.append).run(upsert)
    assert runs == 2
    assert [(e.attempt, e.reason) for e in events] == [(1, "commit_outcome_unknown")]
    # Both runs committed; an idempotent body leaves what one run would.
    assert ledger_rows(local, ledger) == [(1, 10)]


def test_idempotent_is_a_promise_the_body_must_keep(local, counter, pool, no_sleep):
    local.inject_commit_drops(1)
    assert transaction(pool, idempotent=True).run(increment, counter) == 2
    # An increment is not idempotent: the lost confirmation made it count twice.
    assert value_of(local, counter) == 2


# -- transactions, nesting and misuse --------------------------------------------


def test_autocommit_connection_still_gets_one_transaction(local, counter):
    def fail_halfway(conn: Conn) -> None:
        with transaction(conn) as c:
            increment(c, counter)
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            _ = 1 / 0

    with dsql.connect(local.url, autocommit=True) as conn:
        with pytest.raises(ZeroDivisionError):
            fail_halfway(conn)
        assert value_of(local, counter) == 0
        with transaction(conn) as c:
            increment(c, counter)
        assert conn.autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert value_of(local, counter) == 1


def test_inner_transaction_on_the_same_source_joins(local, counter, pool):
    for attempt in transaction(pool):
        with attempt as outer:
            increment(outer, counter)
            with transaction(pool) as inner:
                assert inner is outer
                increment(inner, counter)
            for inner_attempt in transaction(outer):
                with inner_attempt as inner:
                    assert inner is outer
            # Nothing committed yet: the outer transaction owns COMMIT.
            assert value_of(local, counter) == 0
    assert value_of(local, counter) == 2


def test_conflict_in_a_joined_scope_reruns_the_whole_transaction(
    local, counter, pool, no_sleep
):
    runs = []
    local.inject_conflicts(1)

    @retry_on_occ(max_attempts=1)  # inside a retrying scope it would not retry anyway
    def add_one(conn: Conn) -> None:
        with transaction(conn) as c:
            increment(c, counter)

    for attempt in transaction(pool):
        with attempt as conn:
            runs.append(attempt.number)
            add_one(conn)
            add_one(conn)
    assert runs == [1, 2]
    assert value_of(local, counter) == 2


def test_connection_in_a_foreign_transaction_is_refused(local, counter):
    with dsql.connect(local.url) as conn:
        conn.execute("SELECT 1")  # psycopg opened a transaction
        with pytest.raises(DsqlError, match="already in a transaction"):
            transaction(conn).__enter__()
        conn.rollback()


def test_swallowed_statement_error_does_not_commit_silently(local, counter, pool):
    def swallow() -> None:
        with transaction(pool) as conn:
            increment(conn, counter)
            with contextlib.suppress(pge.DivisionByZero):
                conn.execute("SELECT 1 / 0")

    with pytest.raises(pge.InFailedSqlTransaction, match="rolled back, not committed"):
        swallow()
    assert value_of(local, counter) == 0


def test_leaving_the_loop_with_a_conflict_pending_warns(local, counter, pool, no_sleep):
    def sloppy() -> int:
        for attempt in transaction(pool):
            with attempt as conn:
                return increment(conn, counter)
        raise AssertionError("unreachable")

    local.inject_conflicts(1)
    with pytest.warns(RuntimeWarning, match="did not commit"):
        assert sloppy() == 1
    assert value_of(local, counter) == 0


def test_policy_object_and_keywords_combine(local, counter, pool, no_sleep):
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=2, base_delay=0.3, max_delay=0.3, jitter=0)
    local.inject_conflicts(1)
    result = transaction(pool, policy=policy, on_retry=events.append).run(
        increment, counter
    )
    assert result == 1
    assert [e.delay for e in events] == [0.3]
    local.inject_conflicts(2)
    with pytest.raises(OCCRetryExhausted):
        transaction(pool, policy=policy).run(increment, counter)


def test_run_transaction_passes_every_keyword_to_the_function(
    local, counter, pool, no_sleep
):
    # Keywords named like retry settings belong to the function (#24): before,
    # run_transaction took `timeout` and `max_attempts` away from it.
    seen: list[tuple[float, int, object]] = []

    def add(
        conn: Conn, table: str, *, by: int, timeout: float, max_attempts: int, policy
    ) -> int:
        seen.append((timeout, max_attempts, policy))
        return increment(conn, table, by)

    local.inject_conflicts(1)
    result = run_transaction(
        pool, add, counter, by=5, timeout=3.0, max_attempts=1, policy="mine"
    )
    assert result == 5
    # max_attempts=1 went to the function: the default policy still retried.
    assert seen == [(3.0, 1, "mine")] * 2


def test_transaction_run_takes_the_retry_settings(local, counter, pool, no_sleep):
    local.inject_conflicts(1)
    with pytest.raises(OCCRetryExhausted):
        transaction(pool, max_attempts=1).run(increment, counter)
    assert transaction(pool, max_attempts=2).run(increment, counter, 2) == 2


def test_retry_logs_hold_no_parameters_and_no_token(local, counter, caplog, no_sleep):
    client = boto3.client("dsql", region_name=local.region)
    tokens: list[str] = []

    def provide(*, host: str, region: str, user: str, expires_in: int) -> str:
        tokens.append(
            client.generate_db_connect_admin_auth_token(host, region, expires_in)
        )
        return tokens[-1]

    secret = "card-4111-1111-1111-1111"
    events: list[RetryEvent] = []
    caplog.set_level("DEBUG", logger="dsql_psycopg")
    local.inject_conflicts(2)
    with create_pool(local.url, min_size=1, token_provider=provide) as pool:
        for attempt in transaction(pool, on_retry=events.append):
            with attempt as conn:
                conn.execute(
                    f"UPDATE {counter} SET value = length(%s) WHERE id = 1", (secret,)
                )
    assert len(events) == 2
    assert tokens
    retry_lines = [r for r in caplog.records if r.name == "dsql_psycopg.retry"]
    assert len(retry_lines) == 2
    text = caplog.text + " ".join(repr(e) for e in events)
    assert secret not in text
    assert not any(token in text for token in tokens)
    assert "X-Amz-Signature" not in text


# -- the state machine's phases ----------------------------------------------------


def test_a_conflict_at_commit_settles_its_attempt_once(local, counter, pool, no_sleep):
    events: list[RetryEvent] = []
    phases: list[Phase] = []
    local.inject_conflicts(1)
    for attempt in transaction(pool, on_retry=events.append):
        machine = attempt._machine
        phases.append(machine.phase)
        with attempt as conn:
            phases.append(machine.phase)
            increment(conn, counter)
        phases.append(machine.phase)
    assert phases == [
        Phase.BEFORE_ATTEMPT,
        Phase.IN_BODY,
        Phase.RETRY_DUE,  # the COMMIT's conflict, settled once
        Phase.BEFORE_ATTEMPT,
        Phase.IN_BODY,
        Phase.DONE,
    ]
    assert [(e.attempt, e.reason) for e in events] == [(1, "conflict")]
    assert value_of(local, counter) == 1


def test_next_attempt_inside_the_with_block_is_refused(local, counter, pool):
    attempts = iter(transaction(pool))
    with (  # noqa: PT012
        pytest.raises(DsqlError, match="leave the `with attempt` block"),
        next(attempts) as conn,
    ):
        increment(conn, counter)
        next(attempts)
    assert value_of(local, counter) == 0  # the body's error rolled it back


def test_an_attempt_never_entered_ends_the_loop(local, pool):
    handed_out = [attempt.number for attempt in transaction(pool)]
    assert handed_out == [1]


# -- per driver (sync; async when present) -------------------------------------


@pytest.mark.parametrize("on", ["pool", "connection"])
def test_conflicts_are_retried_and_reported_per_driver(
    driver: Driver, local: DsqlLocal, counter: str, on: str
) -> None:
    if on == "pool":
        source = driver.create_pool(local.url, min_size=1, max_size=2)
    else:
        source = driver.connect(local.url)
    events: list[RetryEvent] = []
    local.inject_conflicts(2)
    try:
        with retry_testing():
            rows = driver.run_sql_transaction(
                source,
                [
                    (f"SELECT value FROM {counter} WHERE id = 1", ()),
                    (
                        f"UPDATE {counter} SET value = value + 1 WHERE id = 1"
                        " RETURNING value",
                        (),
                    ),
                ],
                on_retry=events.append,
            )
    finally:
        if on == "pool":
            driver.close_pool(source)
        else:
            driver.close(source)
    assert rows == [(1,)]
    assert [(e.attempt, e.reason) for e in events] == [(1, "conflict"), (2, "conflict")]
    assert value_of(local, counter) == 1


def test_exhaustion_per_driver(driver: Driver, local: DsqlLocal, counter: str) -> None:
    source = driver.connect(local.url)
    local.inject_conflicts(3)
    try:
        with retry_testing(), pytest.raises(OCCRetryExhausted) as info:
            driver.run_sql_transaction(
                source,
                [(f"UPDATE {counter} SET value = value + 1 WHERE id = 1", ())],
                max_attempts=3,
            )
    finally:
        driver.close(source)
    assert info.value.attempts == 3
    assert is_occ_error(info.value.__cause__)
    assert value_of(local, counter) == 0
