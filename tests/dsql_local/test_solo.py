"""Writes alone go unguarded; the first committer still wins (see `_solo`)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal
from dsql_local import _protocol as pq
from dsql_local._policy import Session
from dsql_local._pump import Pump
from dsql_local._relay import Relay
from dsql_local._solo import PATIENCE, Activity, Presence
from tests.dsql_local.helpers import open_connection
from tests.dsql_local.relay_wire import Holders, Host

# -- the decisions, without PostgreSQL ------------------------------------------


class _Woken:
    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _two(
    activity: Activity, clock: _Clock | None = None
) -> tuple[Presence, _Woken, Presence, _Woken]:
    wake_a, wake_b = _Woken(), _Woken()
    clock = clock or _Clock()
    return (
        Presence(activity, wake_a, clock),
        wake_a,
        Presence(activity, wake_b, clock),
        wake_b,
    )


def test_a_relay_alone_writes_unguarded_until_another_becomes_busy() -> None:
    a, _, b, _ = _two(Activity())
    assert a.arrive()
    assert a.write_alone(1)
    a.answered(1, idle=False)  # its transaction stays open
    assert a.write_alone(2)
    a.answered(2, idle=False)
    assert b.arrive()  # another connection starts work
    assert not a.write_alone(3)
    b.answered(1, idle=True)
    # Once another has been busy, not again in this busy stretch.
    assert not a.write_alone(3)
    a.answered(3, idle=True)
    assert a.arrive()  # a new transaction, no other busy: alone again
    assert a.write_alone(4)


def test_a_relay_that_became_busy_beside_another_is_guarded() -> None:
    a, _, b, _ = _two(Activity())
    assert b.arrive()  # say, a transaction left open
    assert a.arrive()
    b.answered(1, idle=True)
    assert not a.write_alone(1)


def test_arriving_while_a_write_flies_alone_waits_until_it_is_answered() -> None:
    a, _, b, wake_b = _two(Activity())
    assert a.arrive()
    assert a.write_alone(3)
    assert not b.arrive()
    assert b.waiting
    assert not b.arrive()  # more data of it waits as well
    a.answered(2, idle=False)  # what was sent before the write
    assert b.waiting
    assert wake_b.times == 0
    # The write's unit is answered, whatever follows it: B goes on.
    a.answered(3, idle=False)
    assert not b.waiting
    assert wake_b.times == 1
    assert b.arrive()
    assert not a.write_alone(4)


def test_a_wait_for_another_s_write_ends_at_its_patience() -> None:
    clock = _Clock()
    a, _, b, wake_b = _two(Activity(), clock)
    assert a.arrive()
    assert a.write_alone(1)
    assert not b.arrive()
    assert b.wait_until == clock.now + PATIENCE
    clock.now += PATIENCE - 0.01
    assert b.waited()
    clock.now += 0.01
    assert not b.waited()
    assert b.arrive()  # its data goes on
    a.answered(1, idle=False)
    assert wake_b.times == 0  # no longer among those waiting


def test_a_closed_relay_lands_its_write_and_leaves() -> None:
    activity = Activity()
    a, _, b, wake_b = _two(activity)
    assert a.arrive()
    assert a.write_alone(1)
    assert not b.arrive()
    a.close()
    assert wake_b.times == 1
    b.answered(1, idle=True)
    c = Presence(activity, _Woken())
    assert c.arrive()
    assert c.write_alone(1)
    assert not activity.busy - {c}


def test_a_waiting_relay_that_closes_is_not_woken() -> None:
    a, _, b, wake_b = _two(Activity())
    assert a.arrive()
    assert a.write_alone(1)
    assert not b.arrive()
    b.close()
    a.answered(1, idle=True)
    assert wake_b.times == 0


def test_without_an_activity_every_write_is_guarded() -> None:
    presence = Presence(None, _Woken())
    assert presence.arrive()
    assert not presence.write_alone(1)


def test_a_cancel_reaches_only_data_that_waits() -> None:
    a, _, b, _ = _two(Activity())
    assert not b.cancel()  # nothing waits
    assert a.arrive()
    assert a.write_alone(1)
    assert not b.arrive()
    assert b.cancel()
    assert b.cancelled


def test_a_relay_refuses_what_waited_if_its_backend_s_key_cancels_it() -> None:
    activity = Activity()
    key = pq.INT32.pack(4242) + b"secr"
    relay = Relay(
        Host(holders=Holders(activity=activity)),
        Session(user="admin"),
        backend_pid=4242,
        key=key,
    )
    writer = Presence(activity, _Woken())
    assert writer.arrive()
    assert writer.write_alone(1)
    query = pq.query("update t set n = 1")
    relay.from_client(query)
    assert relay.held == len(query)
    assert not relay.to_backend
    assert not relay.cancel_held(pq.INT32.pack(4242) + b"nope")  # not its key
    assert relay.cancel_held(key)
    writer.answered(1, idle=False)
    relay.woken()
    sent = bytes(relay.to_backend)
    assert b"57014" in sent
    assert b"update t" not in sent
    # A cancel reaches one statement: what follows runs.
    relay.to_backend.clear()
    relay.from_backend(pq.error_response("57014", "x") + pq.ready_for_query(b"I"))
    relay.from_client(pq.query("select 1"))
    assert bytes(relay.to_backend) == pq.query("select 1")


# -- over TLS, two sessions ---------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[DsqlLocal]:
    """A DSQL Local of these tests' own: no other test's connection is busy."""
    with DsqlLocal() as local:
        yield local


@pytest.fixture
def sessions(local: DsqlLocal) -> Iterator[list[psycopg.Connection[Any]]]:
    """Two sessions, and a counter table with one row; nothing else busy."""
    with open_connection(local, autocommit=True) as conn:
        conn.execute("drop table if exists counter")
        conn.execute("create table counter (id int primary key, n int not null)")
        conn.execute("insert into counter values (1, 0)")
    # The relays of connections closed are done a little later, in their thread.
    activity = next(iter(local._endpoints.values())).holders.activity  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while activity.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not activity.busy
    with open_connection(local) as first, open_connection(local) as second:
        yield [first, second]


def _transaction_ids(local: DsqlLocal, conn: psycopg.Connection[Any]) -> int:
    """How many transaction ids `conn`'s backend holds: one per savepoint
    that wrote, besides its transaction's own."""
    with psycopg.connect(local.backend_dsn, autocommit=True) as admin:
        row = admin.execute(
            "select count(*) from pg_catalog.pg_locks"
            " where pid = %s and locktype = 'transactionid'",
            [conn.info.backend_pid],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _fails_at_commit(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.SerializationFailure) as info:
        conn.commit()
    assert str(info.value) == "change conflicts with another transaction (OC000)"
    assert conn.info.transaction_status == TransactionStatus.IDLE


@pytest.mark.parametrize("winner", ["alone", "guarded"])
def test_a_write_alone_then_a_guarded_one_the_first_committer_wins(
    local: DsqlLocal, sessions: list[psycopg.Connection[Any]], winner: str
) -> None:
    first, second = sessions
    first.execute("update counter set n = n + 1 where id = %s", [1])
    # Nothing else was busy: no hidden savepoint, one transaction id.
    assert _transaction_ids(local, first) == 1
    second.execute("update counter set n = n + 10 where id = %s", [1])
    assert second.info.transaction_status == TransactionStatus.INTRANS
    # The first writer's next write is guarded: the second is busy now.
    first.execute("update counter set n = n + 1 where id = %s", [1])
    assert _transaction_ids(local, first) == 2
    won, lost = (first, second) if winner == "alone" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    expected = 2 if winner == "alone" else 10
    assert lost.execute("select n from counter").fetchone() == (expected,)


def test_work_begun_while_a_write_flies_alone_waits_for_its_answer(
    sessions: list[psycopg.Connection[Any]],
) -> None:
    """Else the later writer takes the row first; the lone write, unguarded,
    would wait for it and fail at the statement."""
    first, second = sessions
    first.execute("select 1")  # its transaction begins, alone
    errors_seen: list[BaseException] = []

    def slow_write() -> None:
        try:
            # The row is locked once the sleep in its condition is over.
            first.execute(
                "update counter set n = n + 1"
                " where id = 1 and pg_sleep(0.5) is not null"
            )
        except BaseException as exc:  # reported below
            errors_seen.append(exc)

    writer = threading.Thread(target=slow_write)
    writer.start()
    try:
        threading.Event().wait(0.15)  # the slow write is in flight
        second.execute("update counter set n = n + 10 where id = %s", [1])
    finally:
        writer.join()
    assert not errors_seen
    assert first.info.transaction_status == TransactionStatus.INTRANS
    first.commit()
    _fails_at_commit(second)
    assert second.execute("select n from counter").fetchone() == (1,)


# -- found by the review of the writes alone (#25) ------------------------------


def _backend_waits(admin: psycopg.Connection[Any], pid: int, event: str) -> None:
    """Wait until backend `pid` waits on `event` (it holds its row by then)."""
    for _ in range(3000):
        row = admin.execute(
            "select wait_event from pg_catalog.pg_stat_activity where pid = %s",
            [pid],
        ).fetchone()
        if row is not None and row[0] == event:
            return
        threading.Event().wait(0.01)
    pytest.fail(f"backend {pid} never waited on {event}")


def _backend_ends(admin: psycopg.Connection[Any], pid: int) -> None:
    """Cancel what backend `pid` runs; wait until it has exited."""
    admin.execute("select pg_catalog.pg_cancel_backend(%s)", [pid])
    for _ in range(3000):
        row = admin.execute(
            "select count(*) from pg_catalog.pg_stat_activity where pid = %s", [pid]
        ).fetchone()
        if row == (0,):
            return
        threading.Event().wait(0.01)
    pytest.fail(f"backend {pid} never exited")


def test_a_write_meeting_the_row_of_a_vanished_connection_is_judged_at_commit(
    local: DsqlLocal,
    sessions: list[psycopg.Connection[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that vanishes mid-statement (a crash, drop_connections(), a
    failed Region, the age cap): its backend runs on, holding the row, until
    the statement ends. Before 3974729 the next writer's UPDATE was answered
    and judged at COMMIT (which succeeds: the vanished one never commits)."""
    ended: list[int] = []
    closed = threading.Event()
    run = Pump.run

    def noting_the_end(self: Pump) -> None:
        run(self)  # (its relay is closed by then)
        ended.append(self.protocol.backend_pid)
        closed.set()

    monkeypatch.setattr(Pump, "run", noting_the_end)  # before it runs
    writer, _ = sessions
    gone = open_connection(local)  # its relay's end is seen
    gone.execute("select 1")
    pid = gone.info.backend_pid
    errors_seen: list[BaseException] = []

    def slow_write() -> None:
        try:
            gone.execute(
                "update counter set n = n + 10 where id = 1 returning pg_sleep(60)"
            )
        except BaseException as exc:  # the connection is cut: expected
            errors_seen.append(exc)

    thread = threading.Thread(target=slow_write)
    thread.start()
    with psycopg.connect(local.backend_dsn, autocommit=True) as admin:
        try:
            _backend_waits(admin, pid, "PgSleep")
            # The client's end of the connection goes, as if it crashed.
            with socket.socket(fileno=os.dup(gone.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            assert closed.wait(60)
            assert ended == [pid]
            thread.join(60)
            assert isinstance(errors_seen[0], psycopg.OperationalError)
            writer.execute("select 1")  # its transaction begins
            # Expected: answered (the row is held), judged at COMMIT.
            writer.execute("update counter set n = n + 1 where id = %s", [1])
        finally:
            _backend_ends(admin, pid)
            gone.close()
    writer.commit()
    assert writer.execute("select n from counter").fetchone() == (1,)


def test_work_begun_while_a_lone_write_s_pipeline_runs_on_waits_only_for_the_write(
    local: DsqlLocal, sessions: list[psycopg.Connection[Any]]
) -> None:
    """A pipeline: the lone write, then a read whose large answer the client
    reads at the pipeline's end; meanwhile it uses another connection. Before
    3974729 that one ran at once; since, it waits for the pipeline's whole
    answer, which the relay stops reading once 4 MiB wait for the client: a
    single-threaded client hangs for ever."""
    first, second = sessions
    second.autocommit = True
    first.execute("select 1")  # its transaction begins, alone
    done = threading.Event()

    def read() -> None:
        second.execute("select 1")
        done.set()

    reader = threading.Thread(target=read)
    with first.pipeline():
        first.execute("update counter set n = n + 1 where id = %s", [1])
        first.execute("select repeat('x', 1048576) from generate_series(1, 32)")
        # The write is in (the relay decided on it): it holds a transaction id.
        for _ in range(3000):
            if _transaction_ids(local, first) >= 1:
                break
            threading.Event().wait(0.01)
        reader.start()
        # A hang detector: the read took milliseconds before 3974729.
        answered = done.wait(30)
    reader.join()
    assert answered
    first.commit()
    assert second.execute("select n from counter").fetchone() == (1,)


def _backend_sleeps(admin: psycopg.Connection[Any], pid: int) -> bool:
    """Whether backend `pid` runs a statement's pg_sleep now (not, say, the
    hidden BEGIN of an autocommit write, or a refusal)."""
    row = admin.execute(
        "select wait_event from pg_catalog.pg_stat_activity where pid = %s", [pid]
    ).fetchone()
    return row is not None and row[0] == "PgSleep"


def test_a_statement_cancelled_while_it_waits_for_a_lone_write_never_runs(
    local: DsqlLocal, sessions: list[psycopg.Connection[Any]]
) -> None:
    """The relay refuses it as the backend would have cancelled it (before
    3974729 the statement ran at once and the cancel stopped it)."""
    activity = next(iter(local._endpoints.values())).holders.activity  # type: ignore[union-attr]
    first, second = sessions
    second.autocommit = True
    first.execute("select 1")  # its transaction begins, alone
    first_pid, second_pid = first.info.backend_pid, second.info.backend_pid
    errors_seen: dict[str, BaseException] = {}

    def run(name: str, conn: psycopg.Connection[Any], sql: str) -> threading.Thread:
        def target() -> None:
            try:
                conn.execute(sql)
            except BaseException as exc:  # checked below
                errors_seen[name] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    with psycopg.connect(local.backend_dsn, autocommit=True) as admin:
        threads = [
            run(
                "write",
                first,
                "update counter set n = n + 1"
                " where id = 1 and pg_sleep(60) is not null",
            )
        ]
        try:
            _backend_waits(admin, first_pid, "PgSleep")
            threads.append(
                run(
                    "insert",
                    second,
                    "insert into counter select 2, 10 from pg_sleep(60)",
                )
            )
            # It waits for the lone write (or, as before, runs at once).
            for _ in range(3000):
                if activity.waiting or _backend_sleeps(admin, second_pid):
                    break
                threading.Event().wait(0.01)
            second.cancel_safe()
            _backend_ends_statement(admin, first_pid)  # the write is answered
            ran = False
            for _ in range(3000):
                ran = _backend_sleeps(admin, second_pid)
                if ran or not threads[1].is_alive():
                    break
                threading.Event().wait(0.01)
        finally:
            for pid in (first_pid, second_pid):
                admin.execute("select pg_catalog.pg_cancel_backend(%s)", [pid])
            for thread in threads:
                thread.join(60)
    assert not ran, "the cancelled INSERT ran"
    assert isinstance(errors_seen.get("insert"), errors.QueryCanceled)
    assert str(errors_seen["insert"]) == "canceling statement due to user request"
    second.execute("select 1")  # the connection goes on
    assert second.execute("select count(*) from counter").fetchone() == (1,)


def _backend_ends_statement(admin: psycopg.Connection[Any], pid: int) -> None:
    """Cancel what backend `pid` runs; wait until it is no longer active."""
    admin.execute("select pg_catalog.pg_cancel_backend(%s)", [pid])
    for _ in range(3000):
        if not _backend_sleeps(admin, pid):
            return
        threading.Event().wait(0.01)
    pytest.fail(f"backend {pid} went on")


def _executemany(conn: psycopg.Connection[Any]) -> None:
    conn.cursor().executemany("select %s", [(1,), (2,)])


def _copy(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor().copy("copy counter from stdin") as copy:
        copy.write_row((2, 0))


@pytest.mark.parametrize("work", [_executemany, _copy])
def test_a_connection_idle_after_a_pipeline_or_a_copy_is_not_busy(
    local: DsqlLocal,
    sessions: list[psycopg.Connection[Any]],
    work: Callable[[psycopg.Connection[Any]], None],
) -> None:
    writer, other = sessions
    other.autocommit = True
    work(other)
    writer.execute("select 1")
    writer.execute("update counter set n = n + 1 where id = %s", [1])
    # Nothing else is busy: no hidden savepoint, one transaction id.
    assert _transaction_ids(local, writer) == 1
