"""Writes alone go unguarded; the first committer still wins (see `_solo`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal
from dsql_local._solo import Activity, Presence
from tests.dsql_local.helpers import open_connection

# -- the decisions, without PostgreSQL ------------------------------------------


class _Woken:
    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


def _two(activity: Activity) -> tuple[Presence, _Woken, Presence, _Woken]:
    wake_a, wake_b = _Woken(), _Woken()
    return Presence(activity, wake_a), wake_a, Presence(activity, wake_b), wake_b


def test_a_relay_alone_writes_unguarded_until_another_becomes_busy() -> None:
    a, _, b, _ = _two(Activity())
    assert a.arrive()
    assert a.write_alone()
    a.answered(idle=False)  # its transaction stays open
    assert a.write_alone()
    a.answered(idle=False)
    assert b.arrive()  # another connection starts work
    assert not a.write_alone()
    b.answered(idle=True)
    # Once another has been busy, not again in this busy stretch.
    assert not a.write_alone()
    a.answered(idle=True)
    assert a.arrive()  # a new transaction, no other busy: alone again
    assert a.write_alone()


def test_a_relay_that_became_busy_beside_another_is_guarded() -> None:
    a, _, b, _ = _two(Activity())
    assert b.arrive()  # say, a transaction left open
    assert a.arrive()
    b.answered(idle=True)
    assert not a.write_alone()


def test_arriving_while_a_write_flies_alone_waits_until_it_is_answered() -> None:
    a, _, b, wake_b = _two(Activity())
    assert a.arrive()
    assert a.write_alone()
    assert not b.arrive()
    assert b.waiting
    assert not b.arrive()  # more data of it waits as well
    assert wake_b.times == 0
    a.answered(idle=False)
    assert not b.waiting
    assert wake_b.times == 1
    assert b.arrive()
    assert not a.write_alone()


def test_a_closed_relay_lands_its_write_and_leaves() -> None:
    activity = Activity()
    a, _, b, wake_b = _two(activity)
    assert a.arrive()
    assert a.write_alone()
    assert not b.arrive()
    a.close()
    assert wake_b.times == 1
    b.answered(idle=True)
    c = Presence(activity, _Woken())
    assert c.arrive()
    assert c.write_alone()
    assert not activity.busy - {c}


def test_a_waiting_relay_that_closes_is_not_woken() -> None:
    a, _, b, wake_b = _two(Activity())
    assert a.arrive()
    assert a.write_alone()
    assert not b.arrive()
    b.close()
    a.answered(idle=True)
    assert wake_b.times == 0


def test_without_an_activity_every_write_is_guarded() -> None:
    presence = Presence(None, _Woken())
    assert presence.arrive()
    assert not presence.write_alone()


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
