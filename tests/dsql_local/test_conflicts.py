"""Optimistic concurrency as DSQL has it: nothing waits, the first committer wins.

The loser of a write race learns at COMMIT, with SQLSTATE 40001 (OC000).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal, DsqlLocalError
from dsql_local._clones import (
    answer_sql,
    clone_sql,
    fill_sql,
    insert_rows_sql,
    upsert_rows_sql,
)
from dsql_local._conflicts import Guard, guard
from dsql_local._hidden import HiddenTransactions
from dsql_local._yield import Holders, holder_check, kept_check
from tests.dsql_local.helpers import Connect, make_token, open_connection

PROTOCOLS = ["extended", "simple", "prepared"]


@pytest.fixture
def counter(dsql_schema: str, connect: Connect) -> str:
    table = f"{dsql_schema}.counter"
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {table} (id int primary key, n int not null)")
        conn.execute(f"insert into {table} values (1, 0)")
    return table


@pytest.fixture
def counters(counter: str, connect: Connect) -> str:
    """The counter table with a second row."""
    with connect(autocommit=True) as conn:
        conn.execute(f"insert into {counter} values (2, 0)")
    return counter


HeldRow = tuple[psycopg.Connection[Any], psycopg.Connection[Any]]


@pytest.fixture
def held_row(counters: str, connect: Connect) -> HeldRow:
    """A transaction holding row 1 of `counters` (n = 1), and a session in
    autocommit."""
    holder = connect()
    later = connect(autocommit=True)
    holder.execute(f"update {counters} set n = 1 where id = 1")
    return holder, later


def _cursor(conn: psycopg.Connection[Any], protocol: str) -> psycopg.Cursor[Any]:
    return psycopg.ClientCursor(conn) if protocol == "simple" else conn.cursor()


def _connect(connect: Connect, protocol: str) -> psycopg.Connection[Any]:
    return connect(prepare_threshold=0 if protocol == "prepared" else 5)


def _fails_at_commit(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.SerializationFailure) as info:
        conn.commit()
    assert info.value.sqlstate == "40001"
    assert str(info.value) == "change conflicts with another transaction (OC000)"
    # As in DSQL: rolled back, and the connection is idle and reusable.
    assert conn.info.transaction_status == TransactionStatus.IDLE


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_two_writers_both_succeed_and_the_first_committer_wins(
    connect: Connect, counters: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    one, two = _cursor(first, protocol), _cursor(second, protocol)
    one.execute(f"update {counters} set n = n + 1 where id = %s", [1])
    assert one.rowcount == 1
    # Nothing waits: the second writer's UPDATE is answered as DSQL answers it.
    two.execute(f"update {counters} set n = n + 10 where id = %s", [1])
    assert two.rowcount == 1
    assert second.info.transaction_status == TransactionStatus.INTRANS
    two.execute(f"update {counters} set n = n + 10 where id >= %s", [0])
    assert two.rowcount == 2
    two.execute(f"update {counters} set n = n + 10 where id = %s", [3])
    assert two.rowcount == 0
    first.commit()
    _fails_at_commit(second)
    assert two.execute(f"select id, n from {counters} order by id").fetchall() == [
        (1, 1),
        (2, 0),
    ]
    second.commit()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_refused_write_returns_the_rows_dsql_would_return(
    connect: Connect, counters: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {counters} set n = 5 where id = 1")
    two = _cursor(second, protocol)
    two.execute(
        f"update {counters} as c set n = c.n + %s where id = %s"
        " returning c.n, id, n * 2",
        [7, 1],
    )
    assert two.fetchall() == [(7, 1, 14)]
    assert [d.name for d in two.description or ()] == ["n", "id", "?column?"]
    two.execute(f"delete from {counters} where id = %s returning id, n", [1])
    assert two.fetchall() == [(1, 0)]
    two.execute(f"select id, n from {counters} where id <= %s for update", [2])
    assert two.fetchall() == [(1, 0), (2, 0)]
    two.execute(f"insert into {counters} values (%s, %s), (%s, %s)", [5, 0, 6, 0])
    assert two.rowcount == 2
    first.commit()
    _fails_at_commit(second)


def test_a_write_after_another_commit_fails_at_commit(
    connect: Connect, counters: str
) -> None:
    first, second = connect(), connect()
    # The snapshot is taken before the other transaction commits its change.
    assert second.execute(f"select n from {counters} where id = 1").fetchone() == (0,)
    with first.transaction():
        first.execute(f"update {counters} set n = 5 where id = 1")
    cursor = second.execute(f"update {counters} set n = 7 where id = 1")
    assert cursor.rowcount == 1
    _fails_at_commit(second)
    assert second.execute(f"select n from {counters} where id = 1").fetchone() == (5,)


def test_the_snapshot_is_taken_at_begin(connect: Connect, counters: str) -> None:
    reader = connect(autocommit=True)
    writer = connect(autocommit=True)
    reader.execute("begin")
    writer.execute(f"update {counters} set n = 3 where id = 1")
    # PostgreSQL would take the snapshot now, and see 3.
    assert reader.execute(f"select n from {counters} where id = 1").fetchone() == (0,)
    reader.execute("commit")
    assert reader.execute(f"select n from {counters} where id = 1").fetchone() == (3,)


def test_plain_reads_take_no_part(connect: Connect, counters: str) -> None:
    first, second = connect(), connect()
    # Write skew, as in DSQL: each reads the row the other one writes.
    first.execute(f"select n from {counters} where id = 2")
    second.execute(f"select n from {counters} where id = 1")
    first.execute(f"update {counters} set n = 1 where id = 1")
    second.execute(f"update {counters} set n = 2 where id = 2")
    first.commit()
    second.commit()
    rows = first.execute(f"select n from {counters} order by id").fetchall()
    assert rows == [(1,), (2,)]


@pytest.mark.parametrize("lock", ["for update", "for key share"])
def test_a_locking_read_conflicts_with_a_later_committed_delete(
    connect: Connect, counters: str, lock: str
) -> None:
    reader, writer = connect(), connect()
    rows = reader.execute(f"select id, n from {counters} where id = 1 {lock}")
    assert rows.fetchall() == [(1, 0)]
    assert writer.execute(f"delete from {counters} where id = 1").rowcount == 1
    reader.commit()
    _fails_at_commit(writer)
    assert writer.execute(f"select count(*) from {counters}").fetchone() == (2,)


def test_for_update_conflicts_with_a_non_key_update(
    connect: Connect, counters: str
) -> None:
    writer, reader = connect(), connect()
    writer.execute(f"update {counters} set n = 4 where id = 1")
    rows = reader.execute(f"select id, n from {counters} where id = 1 for update")
    assert rows.fetchall() == [(1, 0)]  # its snapshot's row, at once
    writer.commit()
    _fails_at_commit(reader)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tail", ["skip locked", "of counter skip locked", "nowait"])
def test_locking_read_tails_neither_skip_nor_wait(
    connect: Connect, counters: str, protocol: str, tail: str
) -> None:
    holder, reader = connect(), _connect(connect, protocol)
    holder.execute(f"select id from {counters} where id = 1 for update")
    # DSQL locks no row: nothing is skipped or refused at the read, and the
    # later of the two to commit fails.
    read = f"select id from {counters} as counter order by id for update {tail}"
    for _ in range(2 if protocol == "prepared" else 1):
        assert _cursor(reader, protocol).execute(read).fetchall() == [(1,), (2,)]
    holder.commit()
    _fails_at_commit(reader)


@pytest.mark.parametrize("holder_ends", ["commit", "rollback"])
def test_a_skip_locked_inside_a_write_skips_nothing(
    connect: Connect, counters: str, holder_ends: str
) -> None:
    holder, writer = connect(), connect()
    holder.execute(f"select id from {counters} where id = 1 for update")
    # The held row is not skipped: the write meets it, and is answered at
    # once from its snapshot, the locking clause in its subquery left out.
    cursor = writer.execute(
        f"delete from {counters} where id in"
        f" (select id from {counters} for update skip locked)"
    )
    assert cursor.rowcount == 2
    if holder_ends == "commit":
        holder.commit()  # the first committer: the write fails at COMMIT
        _fails_at_commit(writer)
        assert writer.execute(f"select count(*) from {counters}").fetchone() == (2,)
    else:
        holder.rollback()
        writer.commit()
        assert writer.execute(f"select count(*) from {counters}").fetchone() == (0,)


@pytest.mark.parametrize("winner", ["first", "second"])
def test_two_workers_of_a_job_queue_take_the_same_job(
    connect: Connect, counters: str, winner: str
) -> None:
    """``FOR UPDATE SKIP LOCKED`` in a subquery: DSQL skips nothing, and of
    two workers that took the same job, the later to commit fails."""
    take = (
        f"delete from {counters} where id = (select id from {counters}"
        " order by id limit 1 for update skip locked) returning id"
    )
    first, second = connect(), connect()
    assert first.execute(take).fetchall() == [(1,)]
    assert second.execute(take).fetchall() == [(1,)]  # at once
    won, lost = (first, second) if winner == "first" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    assert lost.execute(f"select id from {counters}").fetchall() == [(2,)]


def test_for_key_share_does_not_conflict_with_a_non_key_update(
    connect: Connect, counters: str
) -> None:
    reader, writer = connect(), connect()
    reader.execute(f"select id from {counters} where id = 1 for key share")
    writer.execute(f"update {counters} set n = 8 where id = 1")
    writer.commit()
    reader.commit()
    assert reader.execute(f"select n from {counters} where id = 1").fetchone() == (8,)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_autocommit_write_commits_first_and_wins(
    connect: Connect, counters: str, protocol: str
) -> None:
    """Its COMMIT is the statement's end: it commits before the holder does."""
    holder = connect()
    single = connect(
        autocommit=True, prepare_threshold=0 if protocol == "prepared" else 5
    )
    holder.execute(f"update {counters} set n = 1 where id = 1")
    cursor = _cursor(single, protocol).execute(
        f"update {counters} set n = %s where id = %s returning n", [2, 1]
    )
    assert cursor.fetchall() == [(2,)]
    _fails_at_commit(holder)
    single.execute(f"update {counters} set n = n + 1 where id = 1")
    assert single.execute(f"select n from {counters} where id = 1").fetchone() == (3,)


def test_a_winner_is_answered_while_its_holders_are_still_looked_for(
    dsql_local: DsqlLocal,
    connect: Connect,
    counters: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing waits in DSQL: the look-up for the holders that must give way
    runs beside the winner's relay. It lasts until the winner's transaction
    ends, which takes the relay's hidden COMMIT: while the relay's own thread
    looked, that came only once the look-up gave up (about 200 ms late)."""
    if dsql_local.own_process:
        pytest.skip("patches the endpoint in this process")
    looked_up = threading.Event()
    release = threading.Event()
    make_yield = Holders.make_yield

    def and_linger(self: Holders, waiter: int) -> None:
        make_yield(self, waiter)
        looked_up.set()
        release.wait(60)

    monkeypatch.setattr(Holders, "make_yield", and_linger)
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"update {counters} set n = 1 where id = 1")
    answered = threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(
                lambda: single.execute(f"update {counters} set n = 2 where id = 1")
            )
            done.add_done_callback(lambda _: answered.set())
            assert looked_up.wait(60)
            # A hang detector: the look-up goes on until released.
            assert answered.wait(30), "the winner waited for the look-up"
            assert done.result().rowcount == 1
    finally:
        release.set()
    _fails_at_commit(holder)


def test_an_autocommit_insert_of_a_held_key_commits_first_and_wins(
    connect: Connect, counters: str
) -> None:
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"insert into {counters} values (5, 1)")
    assert single.execute(f"insert into {counters} values (5, 2)").rowcount == 1
    _fails_at_commit(holder)
    assert single.execute(f"select n from {counters} where id = 5").fetchone() == (2,)


def test_an_autocommit_write_after_the_holder_committed_fails(
    connect: Connect, counters: str
) -> None:
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"insert into {counters} values (5, 1)")
    holder.commit()
    with pytest.raises(errors.UniqueViolation):
        single.execute(f"insert into {counters} values (5, 2)")


def _blockers_running(
    watcher: psycopg.Connection[Any], pid: int, call: Future[Any]
) -> None:
    """Wait until backend `pid` runs ``dsql_local.blockers`` for `call`, or
    `call` returned."""
    deadline = time.monotonic() + 30  # a safety net, not a goal
    while time.monotonic() < deadline and not call.done():
        row = watcher.execute(
            "select state = 'active' and query like '%%dsql_local.blockers%%'"
            " from pg_stat_activity where pid = %s",
            [pid],
        ).fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.01)
    assert call.done(), "dsql_local.blockers did not start"


@pytest.mark.usefixtures("counters")
def test_holders_are_looked_for_once_the_waiter_s_transaction_began(
    dsql_local: DsqlLocal, counters: str
) -> None:
    """The relay asks who its backend waits for as soon as it sent a run
    again: ROLLBACK, BEGIN, the statement. Until the backend has read them,
    it is in the first run's failed transaction, which holds no virtualxid
    as an ended transaction: ``dsql_local.blockers`` waits for the run
    again's transaction to begin (it took the failed one for the run
    again's end, the holder did not give way, and the run again failed at
    its lock timeout: test_an_autocommit_write_commits_first_and_wins's
    flake). Once it began, its end ends the wait."""
    dsn = dsql_local.backend_dsn
    with (
        psycopg.connect(dsn) as holder,
        psycopg.connect(dsn) as waiter,
        psycopg.connect(dsn, autocommit=True) as looker,
        psycopg.connect(dsn, autocommit=True) as watcher,
        ThreadPoolExecutor(2) as pool,
    ):
        holder.execute(f"update {counters} set n = 1 where id = 1")
        with pytest.raises(errors.DivisionByZero):
            waiter.execute("select 1 / 0")  # the failed first run
        look = "select dsql_local.blockers(%s, %s, '60 s')"
        pid, held_by = waiter.info.backend_pid, holder.info.backend_pid
        found = pool.submit(lambda: looker.execute(look, [pid, []]).fetchone())
        _blockers_running(watcher, looker.info.backend_pid, found)
        waiter.rollback()
        update = f"update {counters} set n = 2 where id = 1"
        ran = pool.submit(waiter.execute, update)
        assert found.result(timeout=30) == ([held_by],)
        # The holder known, the wait ends with the waiter's transaction.
        found = pool.submit(lambda: looker.execute(look, [pid, [held_by]]).fetchone())
        _blockers_running(watcher, looker.info.backend_pid, found)
        watcher.execute("select pg_cancel_backend(%s)", [pid])
        assert found.result(timeout=30) == ([],)
        with pytest.raises(errors.QueryCanceled):
            ran.result(timeout=30)
        waiter.rollback()


# Its name, as written the second time: with its schema, or found on the
# search path (the test's schema), which is the same table.
@pytest.mark.parametrize("written", ["{counters}", "counter"])
def test_a_write_that_cannot_be_answered_fails_at_the_statement(
    connect: Connect, counters: str, written: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    # Two writes of one table in one statement: not answered.
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        second.execute(
            f"with d as (delete from {counters} where id = 1 returning id)"
            f" insert into {written.format(counters=counters)}"
            " select id + 10, 0 from d"
        )
    second.rollback()
    # Alone, the DELETE is answered, and fails at COMMIT.
    assert second.execute(f"delete from {counters} where id = 1").rowcount == 1
    first.commit()
    _fails_at_commit(second)


@pytest.fixture
def parent_child(connect: Connect) -> None:
    """Tables p (parent) and c (child, p_id references p), in the test's schema."""
    with connect(autocommit=True) as conn:
        conn.execute("create table p (id int primary key, note text)")
        conn.execute(
            "create table c (id int primary key, p_id int not null references p (id))"
        )
        conn.execute("insert into p values (1, 'a'), (2, 'b')")


@pytest.mark.usefixtures("parent_child")
@pytest.mark.parametrize("first", ["child insert", "parent delete"])
def test_child_insert_and_parent_delete_conflict_at_commit(
    connect: Connect, first: str
) -> None:
    inserter, deleter = connect(), connect()
    insert, delete = "insert into c values (10, 1)", "delete from p where id = 1"
    if first == "child insert":
        assert inserter.execute(insert).rowcount == 1
        assert deleter.execute(delete).rowcount == 1
        winner, loser = inserter, deleter
    else:
        assert deleter.execute(delete).rowcount == 1
        assert inserter.execute(insert).rowcount == 1
        winner, loser = deleter, inserter
    winner.commit()
    _fails_at_commit(loser)


@pytest.mark.usefixtures("parent_child")
def test_child_insert_and_non_key_parent_update_do_not_conflict(
    connect: Connect,
) -> None:
    inserter, updater = connect(), connect()
    updater.execute("update p set note = 'z' where id = 1")
    inserter.execute("insert into c values (11, 1)")
    updater.commit()
    inserter.commit()
    assert inserter.execute("select count(*) from c").fetchone() == (1,)


@pytest.mark.parametrize("protocol", ["extended", "simple", "method"])
def test_injected_conflicts_fail_the_next_commits(
    dsql_local: DsqlLocal, connect: Connect, counter: str, protocol: str
) -> None:
    conn = connect()
    cursor = psycopg.ClientCursor(conn) if protocol == "simple" else conn.cursor()
    dsql_local.inject_conflicts(2)
    for _ in range(2):
        cursor.execute(f"update {counter} set n = n + 1 where id = 1")
        with pytest.raises(errors.SerializationFailure) as info:
            conn.commit() if protocol == "method" else cursor.execute("commit")
        assert info.value.sqlstate == "40001"
        assert str(info.value) == ("change conflicts with another transaction (OC000)")
        assert info.value.diag.severity == "ERROR"
        # As in DSQL: rolled back, and the connection is idle and reusable.
        assert conn.info.transaction_status == TransactionStatus.IDLE
    cursor.execute(f"update {counter} set n = n + 1 where id = 1")
    conn.commit()
    cursor.execute(f"select n from {counter}")
    assert cursor.fetchone() == (1,)
    conn.commit()


def test_injected_schema_conflict(
    dsql_local: DsqlLocal, connect: Connect, counter: str
) -> None:
    conn = connect()
    dsql_local.inject_conflicts(1, code="OC001")
    conn.execute(f"update {counter} set n = 3 where id = 1")
    with pytest.raises(
        errors.SerializationFailure, match=r"schema has been updated.*\(OC001\)"
    ):
        conn.commit()
    assert conn.execute(f"select n from {counter}").fetchone() == (0,)


@pytest.mark.parametrize(
    ("query", "autocommit"),
    [
        ("begin; update {t} set n = 5 where id = 1; commit", True),
        ("update {t} set n = 5 where id = 1; commit; update {t} set n = 6", False),
    ],
    ids=["begin-update-commit", "update-commit-more"],
)
def test_injected_conflict_at_a_commit_inside_a_query(
    dsql_local: DsqlLocal, connect: Connect, counter: str, query: str, autocommit: bool
) -> None:
    conn = connect(autocommit=autocommit)
    dsql_local.inject_conflicts(1)
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        conn.execute(query.format(t=counter))  # one simple Query message
    assert conn.info.transaction_status == TransactionStatus.IDLE
    # Rolled back, and nothing after the COMMIT ran.
    assert conn.execute(f"select n from {counter}").fetchone() == (0,)
    conn.rollback()
    conn.execute(query.format(t=counter))
    conn.commit()
    assert conn.execute(f"select n from {counter}").fetchone() == (
        5 if autocommit else 6,
    )


def test_injection_spares_autocommit_and_empty_commits(
    dsql_local: DsqlLocal, connect: Connect, counter: str
) -> None:
    conn = connect(autocommit=True)
    dsql_local.inject_conflicts(1)
    conn.execute(f"update {counter} set n = 9 where id = 1")
    conn.execute("commit")  # no transaction in progress: nothing to fail
    other = connect()
    other.execute(f"update {counter} set n = 10 where id = 1")
    with pytest.raises(errors.SerializationFailure):
        other.commit()
    assert conn.execute(f"select n from {counter}").fetchone() == (9,)


def test_injected_conflict_in_pipeline_mode(
    dsql_local: DsqlLocal, connect: Connect, counter: str
) -> None:
    conn = connect()
    dsql_local.inject_conflicts(1)
    with pytest.raises(errors.SerializationFailure), conn.pipeline():  # noqa: PT012
        conn.execute(f"update {counter} set n = 4 where id = 1")
        conn.commit()
    assert conn.info.transaction_status == TransactionStatus.IDLE
    with conn.pipeline():
        conn.execute(f"update {counter} set n = 6 where id = 1")
        conn.commit()
    assert conn.execute(f"select n from {counter}").fetchone() == (6,)


def test_inject_conflicts_validates_its_arguments(dsql_local: DsqlLocal) -> None:
    with pytest.raises(DsqlLocalError, match="OC000"):
        dsql_local.inject_conflicts(1, code="OC999")
    with pytest.raises(DsqlLocalError, match="zero or more"):
        dsql_local.inject_conflicts(-1)


def test_injected_conflict_on_a_prepared_commit(
    dsql_local: DsqlLocal, connect: Connect, counter: str
) -> None:
    conn = connect(prepare_threshold=0)  # every statement is prepared at once
    cur = conn.cursor()
    for n in range(1, 4):
        cur.execute(f"update {counter} set n = %s where id = 1", [n])
        if n == 2:
            dsql_local.inject_conflicts(1)
            with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
                cur.execute("commit")
            assert conn.info.transaction_status == TransactionStatus.IDLE
        else:
            cur.execute("commit")
    assert cur.execute(f"select n from {counter}").fetchone() == (3,)
    assert cur.execute("select count(*) from pg_prepared_statements").fetchone()[0] >= 2
    conn.commit()


@pytest.fixture(scope="module")
def schema_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(strict=False, schema_conflicts=True) as local:
        yield local


def test_schema_change_fails_older_transactions(schema_local: DsqlLocal) -> None:
    with (
        open_connection(schema_local) as older,
        open_connection(schema_local, autocommit=True) as ddl,
    ):
        older.execute("select 1")
        ddl.execute("create table changed (id int primary key)")
        with pytest.raises(errors.SerializationFailure) as info:
            older.execute("select 2")
        assert str(info.value) == (
            "schema has been updated by another transaction, please retry: (OC001)"
        )
        assert older.info.transaction_status == TransactionStatus.INERROR
        older.rollback()
        # A transaction that begins after the change sees the new schema.
        assert older.execute("select count(*) from changed").fetchone() == (0,)
        older.commit()


def test_schema_change_fails_an_older_commit(schema_local: DsqlLocal) -> None:
    with (
        open_connection(schema_local) as older,
        open_connection(schema_local, autocommit=True) as ddl,
    ):
        older.execute("select 1")
        ddl.execute("create table changed_at_commit (id int primary key)")
        with pytest.raises(errors.SerializationFailure, match=r"\(OC001\)"):
            older.commit()
        assert older.info.transaction_status == TransactionStatus.IDLE


def test_own_and_rolled_back_schema_changes_do_not_conflict(
    schema_local: DsqlLocal,
) -> None:
    with (
        open_connection(schema_local) as older,
        open_connection(schema_local) as ddl,
    ):
        older.execute("select 1")
        ddl.execute("create table never_made (id int primary key)")
        ddl.rollback()
        older.execute("create table own_change (id int primary key)")
        assert older.execute("select count(*) from own_change").fetchone() == (0,)
        older.commit()


def test_schema_conflicts_are_off_by_default(connect: Connect) -> None:
    older = connect()
    ddl = connect(autocommit=True)
    older.execute("select 1")
    ddl.execute("create table unnoticed (id int primary key)")
    assert older.execute("select 2").fetchone() == (2,)
    older.commit()


@pytest.mark.parametrize(
    ("sql", "read", "verb", "rows"),
    [
        (
            "update t set n = n + 1 where id = 1",
            "SELECT FROM t WHERE id = 1",
            "UPDATE",
            False,
        ),
        (
            "update t as x set n = $2 where x.id = $1 returning x.n, id",
            "SELECT (SELECT $2 AS n), id FROM t AS x WHERE x.id = $1",
            "UPDATE",
            True,
        ),
        (
            "delete from t using u where t.id = u.id returning t.n",
            "SELECT t.n FROM t, u WHERE t.id = u.id",
            "DELETE",
            True,
        ),
        (
            "insert into t values ($1, 0), (2, 0)",
            "SELECT FROM ((VALUES ($1, 0), (2, 0))) AS dsql_local_rows",
            "INSERT 0",
            False,
        ),
        ("insert into t default values", "SELECT", "INSERT 0", False),
        (
            "select n from t where id = $1 for key share",
            "SELECT n FROM t WHERE id = $1",
            "SELECT",
            True,
        ),
        (
            "delete from t where id = (select id from t order by id limit 1"
            " for update) returning id",
            "SELECT id FROM t WHERE id = (SELECT id FROM t ORDER BY id LIMIT 1)",
            "DELETE",
            True,
        ),
        (
            "select * from t where id in (select id from u for update)",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
            "SELECT",
            True,
        ),
        (
            "update t set n = $1 where id = $2",
            "WITH dsql_local_params AS (SELECT CAST($1 AS text))"
            " SELECT FROM t WHERE id = $2",
            "UPDATE",
            False,
        ),
    ],
)
def test_a_refused_write_is_answered_by_a_plain_read(
    sql: str, read: str, verb: str, rows: bool
) -> None:
    assert guard(sql) == Guard(read, verb, rows)


@pytest.mark.parametrize(
    ("sql", "read", "target"),
    [
        (
            "insert into s.t (name) values ($1) returning s.t.id",
            "INSERT INTO pg_temp.dsql_local_rows_4 AS t (name) VALUES ($1)"
            " RETURNING t.id",
            "s.t",
        ),
        (
            'insert into "T" as x select * from u returning *',
            "INSERT INTO pg_temp.dsql_local_rows_4 AS x SELECT * FROM u RETURNING *",
            '"T"',
        ),
    ],
)
def test_an_insert_returning_is_answered_by_the_same_insert_into_a_clone(
    sql: str, read: str, target: str
) -> None:
    found = guard(sql)
    assert found is not None
    assert (found.verb, found.rows, found.target) == ("INSERT 0", True, target)
    assert answer_sql(found, 4) == read
    assert clone_sql(found, 4) == (
        f"SELECT dsql_local.clone_for_insert('{target}'::regclass, 4)"
    )
    assert insert_rows_sql(found, 4) == (
        f"SELECT dsql_local.insert_rows('{target}'::regclass, 4)"
    )


def test_the_row_a_lock_timeout_names_is_checked_by_its_relation_and_tuple() -> None:
    met = 'while updating tuple (3,14) in relation "it\'s"'
    assert holder_check(met) == "SELECT dsql_local.check_holder('it''s', '(3,14)')"
    assert kept_check(met) == "SELECT dsql_local.check_kept('it''s', '(3,14)')"
    # A key met: the replay tells; NOWAIT names nothing.
    key = 'while inserting index tuple (0,1) in relation "t"'
    assert (holder_check(key), kept_check(key)) == ("", "")
    assert (holder_check(""), kept_check("")) == (None, "")


def test_an_update_returning_star_is_answered_by_the_same_update_in_a_clone() -> None:
    found = guard("update s.t as x set n = $1, m = default where x.id = $2 returning *")
    assert found is not None
    assert (found.verb, found.rows, found.target) == ("UPDATE", True, "s.t")
    # The rows it touches go into the clone, every parameter taken.
    assert fill_sql(found, 2) == (
        "INSERT INTO pg_temp.dsql_local_rows_2 WITH dsql_local_params AS"
        " (SELECT CAST($1 AS text)) SELECT x.* FROM s.t AS x WHERE x.id = $2"
    )
    assert answer_sql(found, 2) == (
        "UPDATE pg_temp.dsql_local_rows_2 AS x SET n = $1, m = DEFAULT"
        " WHERE x.id = $2 RETURNING *"
    )
    assert clone_sql(found, 2).endswith("'s.t'::regclass, 2, true)")


@pytest.mark.parametrize(
    ("sql", "answer", "target", "rows", "assigned"),
    [
        (
            "insert into s.t as x (id, n) values ($1, $2) on conflict (id)"
            " do update set n = s.t.n + excluded.n where x.n > 0 returning s.t.id",
            "INSERT INTO pg_temp.dsql_local_rows_3 AS x (id, n) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET n = x.n + excluded.n WHERE x.n > 0"
            " RETURNING x.id",
            "s.t",
            True,
            "'n'",
        ),
        (
            "insert into t values (1) on conflict on constraint t_pkey do nothing",
            "INSERT INTO pg_temp.dsql_local_rows_3 AS t VALUES (1)"
            " ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING",
            "t",
            False,
            "",
        ),
        (
            'insert into t values (1) on conflict (id) do update set ("N", m)'
            ' = (excluded."N", 2), o[1] = 3',
            "INSERT INTO pg_temp.dsql_local_rows_3 AS t VALUES (1)"
            ' ON CONFLICT (id) DO UPDATE SET ( "N", m) = (excluded."N", 2),'
            " o[1] = 3",
            "t",
            False,
            "'N', 'm', 'o'",
        ),
    ],
)
def test_an_upsert_is_answered_by_the_same_upsert_in_a_clone(
    sql: str, answer: str, target: str, rows: bool, assigned: str
) -> None:
    found = guard(sql)
    assert found is not None
    assert (found.verb, found.rows, found.target, found.upsert) == (
        "INSERT 0",
        rows,
        target,
        True,
    )
    assert answer_sql(found, 3) == answer
    # The clone holds the table's rows and unique constraints; the replay
    # writes what the upsert wrote there: the columns its DO UPDATE sets.
    assert clone_sql(found, 3) == (
        f"SELECT dsql_local.clone_for_upsert('{target}'::regclass, 3)"
    )
    assert upsert_rows_sql(found, 3) == (
        f"SELECT dsql_local.upsert_rows('{target}'::regclass, 3,"
        f" ARRAY[{assigned}]::text[])"
    )


@pytest.mark.parametrize(
    ("sql", "answer", "fill", "upsert"),
    [
        (
            "with u as (update s.t set n = n + $1 where id = $2 returning id, n)"
            " select id, n from u",
            "WITH u AS (UPDATE pg_temp.dsql_local_rows_3 AS t SET n = n + $1"
            " WHERE id = $2 RETURNING id, n) SELECT id, n FROM u",
            "INSERT INTO pg_temp.dsql_local_rows_3 WITH dsql_local_params AS"
            " (SELECT CAST($1 AS text)) SELECT t.* FROM s.t WHERE id = $2",
            False,
        ),
        (
            "with ids as (select 1 as id), d as (delete from s.t as x"
            " where x.id in (select id from ids) returning x.id)"
            " select count(*) from d",
            "WITH ids AS (SELECT 1 AS id), d AS (DELETE FROM"
            " pg_temp.dsql_local_rows_3 AS x WHERE x.id IN (SELECT id FROM ids)"
            " RETURNING x.id) SELECT count(*) FROM d",
            "INSERT INTO pg_temp.dsql_local_rows_3 WITH ids AS (SELECT 1 AS id)"
            " SELECT x.* FROM s.t AS x WHERE x.id IN (SELECT id FROM ids)",
            False,
        ),
        (
            "with i as (insert into s.t (name) values ($1) returning id)"
            " select id from i",
            "WITH i AS (INSERT INTO pg_temp.dsql_local_rows_3 AS t (name)"
            " VALUES ($1) RETURNING id) SELECT id FROM i",
            "",
            False,
        ),
        (
            "with i as (insert into s.t values (1) on conflict do nothing"
            " returning id) select id from i",
            "WITH i AS (INSERT INTO pg_temp.dsql_local_rows_3 AS t VALUES (1)"
            " ON CONFLICT DO NOTHING RETURNING id) SELECT id FROM i",
            "",
            True,
        ),
    ],
)
def test_a_data_modifying_with_runs_its_write_in_a_clone(
    sql: str, answer: str, fill: str, upsert: bool
) -> None:
    found = guard(sql)
    assert found is not None
    assert (found.verb, found.rows, found.target, found.upsert) == (
        "SELECT",
        True,
        "s.t",
        upsert,
    )
    assert answer_sql(found, 3) == answer
    assert (fill_sql(found, 3) if found.fill else "") == fill


def test_each_write_of_a_statement_runs_in_a_clone_of_its_own() -> None:
    found = guard(
        "with d as (delete from q where id = $1 returning id, n)"
        " insert into a (q_id, n) select id, n from d returning id"
    )
    assert found is not None
    assert (found.verb, found.rows, len(found.parts)) == ("INSERT 0", True, 2)
    assert answer_sql(found, 3) == (
        "WITH d AS (DELETE FROM pg_temp.dsql_local_rows_3 AS q WHERE id = $1"
        " RETURNING id, n) INSERT INTO pg_temp.dsql_local_rows_4 AS a (q_id, n)"
        " SELECT id, n FROM d RETURNING id"
    )
    delete, insert = found.parts
    # The DELETE is replayed alone; the INSERT's rows go in from its clone.
    assert (delete.target, delete.stand_in) == ("q", "DELETE FROM q WHERE id = $1")
    assert fill_sql(delete, 3) == (
        "INSERT INTO pg_temp.dsql_local_rows_3 SELECT q.* FROM q WHERE id = $1"
    )
    assert (insert.target, insert.fill, insert.upsert) == ("a", "", False)


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "merge into t using u on t.id = u.id when matched then delete",
        "with d as (delete from t returning id)"
        " insert into t select id from d on conflict do nothing",
        "with d as (delete from u returning id)"
        " update t set n = 1 where id in (select id from d)",
        "with d as (delete from t returning id), e as (delete from t) select 1",
        "with d as (delete from s.t returning id) insert into t select 1",
        "with i as (insert into u values (1) returning id), p as (select id from i)"
        " update t set n = 1 where id in (select id from p)",
        "with i as (insert into t values (1) on conflict do nothing)"
        " insert into u values (1) on conflict do nothing",
        'with i as (insert into s.t values (1)) insert into "t" values (2)',
        "with d as (delete from u returning id), e as (update v set n = 1) select 1",
        "with d as (delete from u returning id) update v set n = 1",
        "with u as (update t set n = 1 returning id) select id from u for update",
        "update t set n = 1; update t set n = 2",
    ],
)
def test_writes_whose_answer_needs_the_write_are_not_guarded(sql: str) -> None:
    assert guard(sql) is None


def test_a_locking_clause_is_found_in_the_tree_not_in_the_text() -> None:
    # A string that names the node class is no locking clause.
    assert guard("select id, 'LockingClause for share' from t where id = 1") is None
    found = guard(
        "with u as (update t set n = 1 where id = 1 returning id)"
        " select id, 'LockingClause' from u"
    )
    assert found is not None
    assert guard("select id from (select id from t for update) as l") is not None


# -- Conflicts judged at COMMIT, by commit order (#25) -----------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_first_committer_wins_whoever_wrote_first(
    connect: Connect, counters: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    one, two = _cursor(first, protocol), _cursor(second, protocol)
    one.execute(f"update {counters} set n = n + 1 where id = %s", [1])
    two.execute(f"update {counters} set n = n + 10 where id = %s", [1])
    assert two.rowcount == 1
    # The later writer commits first: it wins, and never waited for the other.
    second.commit()
    _fails_at_commit(first)
    assert one.execute(f"select n from {counters} where id = 1").fetchone() == (10,)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_write_refused_for_a_writer_that_rolled_back_commits(
    connect: Connect, counters: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    one, two = _cursor(first, protocol), _cursor(second, protocol)
    one.execute(f"update {counters} set n = n + 1 where id = %s", [1])
    two.execute(f"delete from {counters} where id = %s returning n", [1])
    assert two.fetchall() == [(0,)]
    first.rollback()
    second.commit()
    assert one.execute(f"select id from {counters}").fetchall() == [(2,)]


def test_the_loser_of_a_commit_race_still_fails_after_the_winner(
    connect: Connect, counters: str
) -> None:
    """Three writers of one row: the first to commit wins, both others fail."""
    conns = [connect() for _ in range(3)]
    for value, conn in enumerate(conns):
        conn.execute(f"update {counters} set n = %s where id = 1", [value + 1])
    conns[1].commit()
    _fails_at_commit(conns[2])
    _fails_at_commit(conns[0])
    assert conns[0].execute(f"select n from {counters} where id = 1").fetchone() == (2,)


@pytest.mark.parametrize("winner", ["first", "second"])
def test_the_same_new_key_in_two_transactions_fails_at_the_later_commit(
    connect: Connect, counters: str, winner: str
) -> None:
    first, second = connect(), connect()
    insert = f"insert into {counters} values (5, %s)"
    assert first.execute(insert, [1]).rowcount == 1
    assert second.execute(insert, [2]).rowcount == 1
    won, lost = (first, second) if winner == "first" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    expected = 1 if winner == "first" else 2
    assert lost.execute(f"select n from {counters} where id = 5").fetchone() == (
        expected,
    )


@pytest.mark.usefixtures("parent_child")
@pytest.mark.parametrize("action", ["cascade", "set null", "set default"])
def test_rows_changed_by_foreign_key_actions_count_toward_the_row_limit(
    connect: Connect, action: str
) -> None:
    with connect(autocommit=True) as conn:
        conn.execute(
            "create table k (id int primary key,"
            f" p_id int default 2 references p (id) on delete {action})"
        )
        for first in (1, 1551):  # two transactions, each under the limit
            conn.execute(
                "insert into k select g, 1 from generate_series(%s::int, %s::int) g",
                [first, first + 1549],
            )
        # In autocommit, the statement is its transaction: it fails.
        with pytest.raises(errors.ProgramLimitExceeded) as info:
            conn.execute("delete from p where id = 1")
        assert info.value.sqlstate == "54000"
        assert str(info.value) == "transaction row limit exceeded"
    conn = connect()
    conn.execute("select 1")
    # In a transaction, the statement that crosses the limit fails, as in DSQL.
    with pytest.raises(errors.ProgramLimitExceeded) as info:
        conn.execute("delete from p where id = 1")
    assert str(info.value) == "transaction row limit exceeded"
    assert conn.info.transaction_status == TransactionStatus.INERROR
    conn.rollback()
    # Under the limit, the same statement commits.
    conn.execute("delete from k where id > 100")
    conn.commit()
    assert conn.execute("delete from p where id = 1").rowcount == 1
    conn.commit()
    expected = [] if action == "cascade" else [(100,)]
    assert conn.execute("select count(*) from k having count(*) > 0").fetchall() == (
        expected
    )


# -- Writes whose answer needs the write itself (#25) ------------------------


@pytest.fixture
def tags(dsql_schema: str, connect: Connect) -> str:
    """A table whose rows get an identity key, a default and a generated column."""
    table = f"{dsql_schema}.tag"
    with connect(autocommit=True) as conn:
        conn.execute(
            f"create table {table} (id bigint"
            " generated by default as identity (cache 1) primary key,"
            " name text not null unique,"
            " note text not null default 'new',"
            " size int generated always as (length(name)) stored)"
        )
        conn.execute(f"insert into {table} (name) values ('old')")
    return table


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_insert_returning_of_a_held_key_is_judged_at_commit(
    connect: Connect, tags: str, protocol: str, winner: str
) -> None:
    """The statement Django's save() and SQLAlchemy's ORM send, as DSQL answers it."""
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    one, two = _cursor(first, protocol), _cursor(second, protocol)
    # As Django writes it: the key column qualified by the table's name.
    insert = f"insert into {tags} (name) values (%s) returning {tags}.id"
    one.execute(insert, ["new"])
    (held_id,) = one.fetchone()
    # Nothing waits: the later writer is answered with the row it inserts,
    # its defaults and generated values computed, while the holder is open.
    two.execute(
        f"insert into {tags} as t (name) values (%s) returning t.id, t.*, size * 2",
        ["new"],
    )
    ((later_id, id_again, name, note, size, double),) = two.fetchall()
    assert first.info.transaction_status == TransactionStatus.INTRANS
    assert later_id == id_again
    assert later_id not in (held_id, 1)
    assert (name, note, size, double) == ("new", "new", 3, 6)
    assert [d.name for d in two.description or ()] == [
        "id", "id", "name", "note", "size", "?column?",
    ]  # fmt: skip
    won, lost, won_id = (
        (first, second, held_id) if winner == "holder" else (second, first, later_id)
    )
    won.commit()
    _fails_at_commit(lost)
    # The winner's row is the one it was answered with: same key, same values.
    rows = lost.execute(f"select id, name, note, size from {tags} order by id")
    assert rows.fetchall() == [(1, "old", "new", 3), (won_id, "new", "new", 3)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_update_returning_star_of_a_held_row_is_judged_at_commit(
    connect: Connect, tags: str, protocol: str, winner: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {tags} set note = 'first' where name = 'old'")
    two = _cursor(second, protocol)
    # The row as the UPDATE leaves it: what only running it gives.
    two.execute(
        f"update {tags} as t set (name, note) = (%s, default)"
        " where t.name = %s returning *",
        ["older", "old"],
    )
    assert two.fetchall() == [(1, "older", "new", 3)]  # (generated: as it was)
    assert [d.name for d in two.description or ()] == ["id", "name", "note", "size"]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select name, note, size from {tags}").fetchall()
    assert rows == (
        [("old", "first", 3)] if winner == "holder" else [("older", "new", 5)]
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_insert_returning_refused_for_a_writer_that_rolled_back_commits(
    connect: Connect, tags: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"insert into {tags} (name, note) values ('a', 'x')")
    two = _cursor(second, protocol)
    insert = f"insert into {tags} (name, note) values (%s, %s), (%s, default)"
    two.execute(insert + " returning id, note", ["a", "y", "b"])
    answered = two.fetchall()
    assert [note for _, note in answered] == ["y", "new"]
    # A second refused INSERT in the same transaction keeps its own rows.
    two.execute(insert + " returning id", ["a2", "z", "b2"])
    assert two.rowcount == 2
    first.execute(f"insert into {tags} (name) values ('a2')")
    first.rollback()
    second.commit()
    rows = second.execute(
        f"select id, note from {tags} where name in ('a', 'b') order by name"
    )
    assert rows.fetchall() == answered
    names = second.execute(f"select name from {tags} order by id").fetchall()
    assert names == [("old",), ("a",), ("b",), ("a2",), ("b2",)]


# -- Several statements in one Query, pipeline mode (#25) ---------------------


def test_several_statements_in_one_query_are_judged_at_commit(
    connect: Connect, counters: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    # One Query message: each statement is answered as DSQL answers it.
    cursor = psycopg.ClientCursor(second)
    cursor.execute(
        f"update {counters} set n = 2 where id = 2;"
        f" update {counters} set n = 3 where id = 1 returning id, n;"
        f" select n from {counters} where id = 2"
    )
    assert first.info.transaction_status == TransactionStatus.INTRANS
    assert cursor.rowcount == 1
    assert cursor.nextset()
    assert cursor.fetchall() == [(1, 3)]
    assert cursor.nextset()
    assert cursor.fetchall() == [(2,)]  # its own write, seen by the next one
    first.commit()
    _fails_at_commit(second)


@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_executemany_in_pipeline_mode_is_judged_at_commit(
    connect: Connect, counters: str, winner: str
) -> None:
    """psycopg's executemany() sends its statements in pipeline mode."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    with second.cursor() as cursor:
        cursor.executemany(
            f"update {counters} set n = n + %s where id = %s",
            [(10, 2), (20, 1), (30, 2)],
        )
        assert cursor.rowcount == 3
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select n from {counters} order by id").fetchall()
    assert rows == ([(1,), (0,)] if winner == "holder" else [(20,), (40,)])


@pytest.mark.parametrize("prepare", [False, True])
def test_statements_in_a_pipeline_are_judged_at_commit(
    connect: Connect, counters: str, prepare: bool
) -> None:
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    second.execute("select 1")  # the transaction is open before the pipeline
    with second.pipeline():
        one = second.execute(f"update {counters} set n = 5 where id = %s", [2])
        # A first run, prepared: its Parse and Bind come in the same Sync.
        two = second.execute(
            f"update {counters} set n = 6 where id = %s returning n",
            [1],
            prepare=prepare,
        )
    assert one.rowcount == 1
    assert two.fetchall() == [(6,)]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    first.commit()
    _fails_at_commit(second)


def test_executemany_of_insert_returning_is_judged_at_commit(
    connect: Connect, tags: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"insert into {tags} (name) values ('b')")
    with second.cursor() as cursor:
        cursor.executemany(
            f"insert into {tags} (name) values (%s) returning id, name",
            [("a",), ("b",), ("c",)],
            returning=True,
        )
        answered = [row for _ in cursor.results() for row in cursor.fetchall()]
    assert [name for _, name in answered] == ["a", "b", "c"]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    second.commit()
    _fails_at_commit(first)
    rows = first.execute(f"select id, name from {tags} where name <> 'old'")
    assert sorted(rows.fetchall()) == sorted(answered)


# -- INSERT ... ON CONFLICT (#25) --------------------------------------------

UPSERTS = {
    "do nothing": "on conflict (id) do nothing",
    "do nothing returning": "on conflict (id) do nothing returning id, n",
    "do update": "on conflict (id) do update set n = counter.n + excluded.n",
    "do update returning": (
        "on conflict (id) do update set n = counter.n + excluded.n returning id, n"
    ),
}


@pytest.mark.parametrize(
    ("form", "winner", "protocol"),
    [
        ("do nothing", "holder", "extended"),
        ("do nothing", "later writer", "simple"),
        ("do nothing returning", "holder", "prepared"),
        ("do nothing returning", "later writer", "extended"),
        ("do update", "holder", "simple"),
        ("do update", "later writer", "prepared"),
        ("do update returning", "holder", "extended"),
        ("do update returning", "later writer", "simple"),
    ],
)
def test_an_upsert_of_a_held_new_key_is_judged_at_commit(
    connect: Connect, counters: str, form: str, winner: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    assert first.execute(f"insert into {counters} values (5, 1)").rowcount == 1
    two = _cursor(second, protocol)
    # Nothing waits: in its snapshot the key is free, so the upsert inserts.
    two.execute(
        f"insert into {counters} as counter values (%s, %s) {UPSERTS[form]}", [5, 2]
    )
    assert two.rowcount == 1
    if "returning" in form:
        assert two.fetchall() == [(5, 2)]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    expected = 1 if winner == "holder" else 2
    assert lost.execute(f"select n from {counters} where id = 5").fetchone() == (
        expected,
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_an_upsert_of_a_held_row_is_judged_at_commit(
    connect: Connect, counters: str, protocol: str, winner: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {counters} set n = 1 where id = 1")
    two = _cursor(second, protocol)
    # The row in its snapshot (n = 0) is the one it updates.
    two.execute(
        f"insert into {counters} as counter values (%s, %s), (%s, %s)"
        " on conflict (id) do update set n = counter.n + excluded.n"
        " where counter.id <> 2 returning id, n",
        [1, 10, 7, 70],
    )
    assert sorted(two.fetchall()) == [(1, 10), (7, 70)]
    # A DO NOTHING that finds the row in its snapshot writes nothing.
    two.execute(
        f"insert into {counters} values (%s, %s) on conflict do nothing", [1, 99]
    )
    assert two.rowcount == 0
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == (
        [(1, 1), (2, 0)] if winner == "holder" else [(1, 10), (2, 0), (7, 70)]
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_upsert_refused_for_a_writer_that_rolled_back_commits(
    connect: Connect, tags: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"insert into {tags} (name) values ('new')")
    first.execute(f"update {tags} set note = 'first' where name = 'old'")
    two = _cursor(second, protocol)
    # The key answered (from the table's identity) is the key committed.
    two.execute(
        f"insert into {tags} as t (name, note) values (%s, %s), (%s, %s)"
        " on conflict (name) do update set note = excluded.note"
        " returning t.id, t.name, t.note, t.size",
        ["new", "x", "old", "y"],
    )
    answered = sorted(two.fetchall())
    assert [row[1:] for row in answered] == [("old", "y", 3), ("new", "x", 3)]
    assert answered[0][0] == 1  # the row it updates
    assert first.info.transaction_status == TransactionStatus.INTRANS
    first.rollback()
    second.commit()
    rows = second.execute(f"select id, name, note, size from {tags} order by id")
    assert rows.fetchall() == answered


def test_an_upsert_is_answered_from_its_snapshot(
    connect: Connect, counters: str
) -> None:
    """Its row counts are those of its snapshot, with or without RETURNING."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    # Row 1 is in its snapshot with n = 0: the DO UPDATE's WHERE leaves it.
    cursor = second.execute(
        f"insert into {counters} as counter values (1, 5), (9, 9)"
        " on conflict (id) do update set n = excluded.n where counter.n > 0"
    )
    assert cursor.rowcount == 1
    cursor = second.execute(
        f"insert into {counters} values (1, 99), (2, 99) on conflict do nothing"
    )
    assert cursor.rowcount == 0
    first.rollback()
    second.commit()
    rows = second.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 0), (2, 0), (9, 9)]


def test_upserts_by_constraint_name_in_one_transaction(
    connect: Connect, tags: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"insert into {tags} (name) values ('a'), ('b')")
    for name in ("a", "b"):
        cursor = second.execute(
            f"insert into {tags} (name) values (%s)"
            " on conflict on constraint tag_name_key do nothing returning name",
            [name],
        )
        assert cursor.fetchall() == [(name,)]
    second.commit()
    _fails_at_commit(first)
    rows = first.execute(f"select name from {tags} order by id").fetchall()
    assert rows == [("old",), ("a",), ("b",)]


@pytest.mark.usefixtures("parent_child")
def test_the_rows_copied_to_answer_an_upsert_count_toward_no_limit(
    connect: Connect, counters: str
) -> None:
    with connect(autocommit=True) as conn:
        # A foreign key with an action: each write's rows are counted.
        conn.execute(
            "create table k (id int primary key,"
            " p_id int references p (id) on delete cascade)"
        )
        for first in (3, 1603):
            conn.execute(
                f"insert into {counters} select g, 0"
                " from generate_series(%s::int, %s::int) g",
                [first, first + 1599],
            )
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    # Answered in a clone of the table's 3,202 rows: none of them count.
    cursor = second.execute(
        f"insert into {counters} values (1, 5) on conflict (id)"
        " do update set n = excluded.n"
    )
    assert cursor.rowcount == 1
    assert second.execute(f"update {counters} set n = 2 where id = 2").rowcount == 1
    first.rollback()
    second.commit()
    rows = second.execute(f"select n from {counters} where id <= 2 order by id")
    assert rows.fetchall() == [(5,), (2,)]


# -- Data-modifying WITH (#25) -----------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_a_data_modifying_with_of_a_held_row_is_judged_at_commit(
    connect: Connect, counters: str, protocol: str, winner: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {counters} set n = 1 where id = 1")
    two = _cursor(second, protocol)
    # Nothing waits: the UPDATE runs on the snapshot's row (n = 0).
    two.execute(
        f"with u as (update {counters} set n = n + %s where id <= %s"
        " returning id, n) select id, n * 2 from u order by id",
        [5, 2],
    )
    assert two.fetchall() == [(1, 10), (2, 10)]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select n from {counters} order by id").fetchall()
    assert rows == ([(1,), (0,)] if winner == "holder" else [(5,), (5,)])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_data_modifying_with_refused_for_a_writer_that_rolled_back_commits(
    connect: Connect, tags: str, protocol: str
) -> None:
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"insert into {tags} (name) values ('a')")
    first.execute(f"delete from {tags} where name = 'old'")
    two = _cursor(second, protocol)
    # An INSERT's key, from the table's identity: the key committed.
    two.execute(
        f"with i as (insert into {tags} (name) values (%s) returning id, note)"
        " select id, note from i",
        ["a"],
    )
    ((inserted, note),) = two.fetchall()
    assert note == "new"
    two.execute(
        f"with d as (delete from {tags} where name = %s returning name)"
        " select count(*) from d",
        ["old"],
    )
    assert two.fetchall() == [(1,)]
    first.rollback()
    second.commit()
    rows = second.execute(f"select id, name from {tags} order by id").fetchall()
    assert rows == [(inserted, "a")]


def test_a_data_modifying_with_of_a_held_new_key_fails_at_the_later_commit(
    connect: Connect, counters: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"insert into {counters} values (5, 1)")
    rows = second.execute(
        f"with i as (insert into {counters} values (5, 2)"
        " on conflict (id) do update set n = excluded.n returning n)"
        " select n from i"
    ).fetchall()
    assert rows == [(2,)]
    first.commit()
    _fails_at_commit(second)


@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_executemany_of_an_upsert_is_judged_at_commit(
    connect: Connect, counters: str, winner: str
) -> None:
    """psycopg's executemany() (pipeline mode), as bulk upserts send it."""
    first, second = connect(), connect()
    first.execute(f"insert into {counters} values (5, 1)")
    first.execute(f"update {counters} set n = 1 where id = 1")
    with second.cursor() as cursor:
        cursor.executemany(
            f"insert into {counters} as counter values (%s, %s) on conflict (id)"
            " do update set n = counter.n + excluded.n returning id, n",
            [(1, 10), (5, 50), (6, 60)],
            returning=True,
        )
        answered = [row for _ in cursor.results() for row in cursor.fetchall()]
    assert answered == [(1, 10), (5, 50), (6, 60)]
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == (
        [(1, 1), (2, 0), (5, 1)]
        if winner == "holder"
        else [(1, 10), (2, 0), (5, 50), (6, 60)]
    )


@pytest.mark.parametrize("key", ["unique not null", "nullable unique"])
def test_an_upsert_s_update_is_replayed_by_a_unique_key(
    dsql_schema: str, connect: Connect, key: str
) -> None:
    """A table without a primary key: its rows are paired by a unique key."""
    table = f"{dsql_schema}.named"
    not_null = "not null" if key == "unique not null" else ""
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {table} (name text {not_null} unique, n int)")
        conn.execute(f"insert into {table} values ('a', 0)")
    first, second = connect(), connect()
    first.execute(f"update {table} set n = 1 where name = 'a'")
    cursor = second.execute(
        f"insert into {table} values ('a', 5) on conflict (name)"
        " do update set n = excluded.n"
    )
    assert cursor.rowcount == 1
    first.rollback()
    if key == "unique not null":
        second.commit()
        assert second.execute(f"select n from {table}").fetchall() == [(5,)]
    else:
        # A NULL may repeat: no row can be paired by it, and the COMMIT fails.
        _fails_at_commit(second)


def test_an_upsert_s_update_of_a_table_with_an_always_identity_key_commits(
    dsql_schema: str, connect: Connect
) -> None:
    table = f"{dsql_schema}.always"
    with connect(autocommit=True) as conn:
        conn.execute(
            f"create table {table} (id bigint generated always as identity (cache 1)"
            " primary key, name text not null unique, n int not null)"
        )
        conn.execute(f"insert into {table} (name, n) values ('a', 0)")
    first, second = connect(), connect()
    first.execute(f"update {table} set n = 1 where name = 'a'")
    rows = second.execute(
        f"insert into {table} (name, n) values ('a', 5), ('b', 6)"
        " on conflict (name) do update set n = excluded.n returning id, name, n"
    ).fetchall()
    first.rollback()
    second.commit()
    assert (
        sorted(rows)
        == second.execute(f"select id, name, n from {table} order by id").fetchall()
    )
    assert [row[1:] for row in sorted(rows)] == [("a", 5), ("b", 6)]


@pytest.mark.parametrize(
    ("create", "upsert"),
    [
        (
            'create table "S"."Mixed" ("Id" int primary key, n int)',
            'insert into "S"."Mixed" values (%s, %s)'
            ' on conflict ("Id") do update set n = excluded.n',
        ),
        (
            "create table {schema}.lowered (id int primary key, name text, n int);"
            " create unique index async lowered_name on {schema}.lowered"
            " (lower(name))",
            "insert into {schema}.lowered values (%s, 'A', %s)"
            " on conflict ((lower(name))) do update set n = excluded.n",
        ),
        (
            "create table {schema}.partial (id int primary key, name text, n int);"
            " create unique index async partial_name on {schema}.partial (name)"
            " where n >= 0",
            "insert into {schema}.partial values (%s, 'a', %s)"
            " on conflict (name) where n >= 0 do update set n = excluded.n",
        ),
    ],
    ids=["quoted names", "expression index", "partial index"],
)
def test_an_upsert_s_clone_infers_the_table_s_arbiter(
    dsql_schema: str, connect: Connect, create: str, upsert: str
) -> None:
    with connect(autocommit=True) as conn:
        if '"S"' in create:
            conn.execute('create schema "S"')
        for statement in create.format(schema=dsql_schema).split(";"):
            conn.execute(statement)
        conn.execute(upsert.format(schema=dsql_schema), [1, 0])
    first, second = connect(), connect()
    table = upsert.format(schema=dsql_schema).split()[2]
    first.execute(f"update {table} set n = 1")
    # Its row in the snapshot conflicts on the arbiter: it is updated there.
    cursor = second.execute(upsert.format(schema=dsql_schema), [1, 5])
    assert cursor.rowcount == 1
    first.rollback()
    second.commit()
    assert second.execute(f"select n from {table}").fetchall() == [(5,)]


@pytest.fixture
def archive(dsql_schema: str, connect: Connect) -> str:
    table = f"{dsql_schema}.archive"
    with connect(autocommit=True) as conn:
        conn.execute(
            f"create table {table} (id bigint generated by default as identity"
            " (cache 1) primary key, counter_id int not null, n int not null)"
        )
    return table


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_a_write_around_a_data_modifying_with_is_judged_at_commit(
    connect: Connect, counters: str, archive: str, protocol: str, winner: str
) -> None:
    """A queue's row moved to its archive: two tables written by one statement."""
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {counters} set n = 1 where id = 1")
    two = _cursor(second, protocol)
    two.execute(
        f"with d as (delete from {counters} where id = %s returning id, n)"
        f" insert into {archive} (counter_id, n) select id, n from d"
        " returning id, counter_id, n",
        [1],
    )
    ((archived, counter_id, n),) = two.fetchall()
    assert (counter_id, n) == (1, 0)  # the row in its snapshot
    assert first.info.transaction_status == TransactionStatus.INTRANS
    won, lost = (first, second) if winner == "holder" else (second, first)
    won.commit()
    _fails_at_commit(lost)
    rows = lost.execute(f"select id, n from {counters} order by id").fetchall()
    moved = lost.execute(f"select id, counter_id, n from {archive}").fetchall()
    if winner == "holder":
        assert (rows, moved) == ([(1, 1), (2, 0)], [])
    else:
        assert (rows, moved) == ([(2, 0)], [(archived, 1, 0)])


def test_two_writes_in_a_with_refused_for_a_writer_that_rolled_back_commit(
    connect: Connect, counters: str, archive: str
) -> None:
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 2")
    rows = second.execute(
        f"with ids as (select %s::int as id),"
        f" u as (update {counters} set n = n + 5 where id in (select id from ids)"
        " returning id, n),"
        f" i as (insert into {archive} (counter_id, n) select id, n from u"
        " returning id)"
        " select (select n from u), (select count(*) from i)",
        [2],
    ).fetchall()
    assert rows == [(5, 1)]
    first.rollback()
    second.commit()
    assert second.execute(f"select n from {counters} where id = 2").fetchone() == (5,)
    assert second.execute(f"select counter_id, n from {archive}").fetchall() == [(2, 5)]


@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_a_delete_beside_an_insert_in_a_with_does_not_see_its_rows_at_commit(
    connect: Connect, counters: str, archive: str, winner: str
) -> None:
    """The DELETE's replay runs before the INSERT's rows are written: in the
    statement it did not see them (it deleted every row of the table)."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    rows = second.execute(
        f"with i as (insert into {archive} (counter_id, n) values (2, 0)"
        f" returning id) delete from {counters} where id = 1 or id in"
        f" (select counter_id from {archive}) returning id"
    ).fetchall()
    assert rows == [(1,)]
    if winner == "holder":
        first.commit()
        _fails_at_commit(second)
        left = [(1,), (2,)]
    else:
        first.rollback()
        second.commit()
        left = [(2,)]
    assert second.execute(f"select id from {counters} order by id").fetchall() == left


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_upsert_s_update_leaves_the_columns_it_does_not_set_as_written_since(
    connect: Connect, dsql_schema: str, protocol: str
) -> None:
    """The replay of a refused upsert writes the columns its DO UPDATE SET
    assigns: a later write of the transaction to another column stands."""
    table = f"{dsql_schema}.notes"
    with connect(autocommit=True) as conn:
        conn.execute(
            f"create table {table} (id int primary key, n int not null, note text)"
        )
        conn.execute(f"insert into {table} values (1, 0, 'first'), (2, 0, 'first')")
    first, second = _connect(connect, protocol), _connect(connect, protocol)
    first.execute(f"update {table} set n = 1 where id = 2")
    two = _cursor(second, protocol)
    two.execute(
        f"insert into {table} values (%s, 10), (2, 20)"
        " on conflict (id) do update set n = excluded.n",
        [1],
    )
    assert two.rowcount == 2
    two.execute(f"update {table} set note = %s where id = 1", ["later"])
    first.rollback()
    second.commit()
    assert second.execute(f"select * from {table} order by id").fetchall() == [
        (1, 10, "later"),
        (2, 20, "first"),
    ]


def test_two_upserts_in_one_statement_fail_at_the_statement(
    connect: Connect, counters: str, dsql_schema: str
) -> None:
    """Not answered (each needs its clone's unique constraints): the conflict
    is reported at the statement, as DSQL would report it at COMMIT."""
    other = f"{dsql_schema}.other"
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {other} (id int primary key, n int not null)")
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        second.execute(
            f"with x as (insert into {counters} values (1, 5) on conflict (id)"
            " do update set n = excluded.n returning n),"
            f" y as (insert into {other} values (1, 7) on conflict (id)"
            " do update set n = excluded.n returning n)"
            " select (select n from x), (select n from y)"
        )


@pytest.mark.parametrize("winner", ["holder", "later writer"])
def test_a_plain_cte_reading_a_data_modifying_with_is_judged_at_commit(
    connect: Connect, counters: str, winner: str
) -> None:
    """The UPDATE's fill carries only the plain CTEs it reads (not p, which
    reads the UPDATE's rows): it failed the transaction (25P02)."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    rows = second.execute(
        f"with u as (update {counters} set n = n + %s where id = 1 returning id, n),"
        " p as (select n * 2 as m from u) select m from p",
        [1],
    ).fetchall()
    assert rows == [(2,)]
    if winner == "holder":
        first.commit()
        _fails_at_commit(second)
        assert second.execute(f"select n from {counters} where id = 1").fetchone() == (
            1,
        )
    else:
        first.rollback()
        second.commit()
        assert second.execute(f"select n from {counters} where id = 1").fetchone() == (
            1,
        )


def test_a_write_reading_another_through_a_plain_cte_fails_at_the_statement(
    connect: Connect, counters: str, archive: str
) -> None:
    """Replayed alone, the UPDATE could not read what the INSERT returns (the
    plain CTE p between them): not answered, as a direct read is not."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 2")
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        second.execute(
            f"with i as (insert into {archive} (counter_id, n) values (1, 0)"
            " returning counter_id), p as (select counter_id + 1 as id from i)"
            f" update {counters} set n = 9 where id in (select id from p) or id = 2"
        )


@pytest.mark.parametrize(
    "sql",
    [
        "with recursive r(x) as (select 1 union all select x + 1 from r where x < 1)"
        " update {counters} set n = n + 1 where id in (select x from r) returning *",
        "with recursive r(x) as (select 1 union all select x + 1 from r where x < 1),"
        " u as (update {counters} set n = n + 1 where id in (select x from r)"
        " returning id, n) select n from u",
        "with recursive r(x) as (select 1 union all select x + 1 from r where x < 1),"
        " u as (update {counters} set n = n + 1 where id in (select x from r)"
        " returning id, n) insert into {archive} (counter_id, n) select id, n from u",
    ],
)
def test_a_write_reading_a_recursive_cte_is_judged_at_commit(
    connect: Connect, counters: str, archive: str, sql: str
) -> None:
    """Its fill and its replay keep the WITH's RECURSIVE: without it, the
    fill failed, and the transaction with it (25P02)."""
    first, second = connect(), connect()
    first.execute(f"update {counters} set n = 1 where id = 1")
    cursor = second.execute(sql.format(counters=counters, archive=archive))
    assert cursor.rowcount == 1
    first.rollback()
    second.commit()
    assert second.execute(f"select n from {counters} where id = 1").fetchone() == (1,)


# -- Autocommit writes sent together (#25) -----------------------------------


def test_several_statements_in_one_autocommit_query_commit_first_and_win(
    held_row: HeldRow, counters: str
) -> None:
    """PostgreSQL runs a query text of several statements as one implicit
    transaction: it commits at the text's end, first, and wins."""
    holder, single = held_row
    cursor = psycopg.ClientCursor(single)
    cursor.execute(
        f"select n from {counters} where id = 2;"
        f" update {counters} set n = 3 where id = 1 returning n;"
        f" update {counters} set n = 4 where id = 2"
    )
    # Each statement answered once, in order.
    assert cursor.fetchall() == [(0,)]
    assert cursor.nextset()
    assert cursor.fetchall() == [(3,)]
    assert cursor.nextset()
    assert cursor.rowcount == 1
    assert not cursor.nextset()
    assert single.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 3), (2, 4)]


def test_an_error_in_an_autocommit_query_run_again_rolls_all_of_it_back(
    held_row: HeldRow, counters: str
) -> None:
    """Run again while the holder gives way, the text fails further on."""
    holder, single = held_row
    with pytest.raises(errors.UniqueViolation):
        single.execute(
            f"update {counters} set n = 3 where id = 1;"
            f" insert into {counters} values (2, 9)"
        )
    assert single.info.transaction_status == TransactionStatus.IDLE
    # The holder gave way all the same (its COMMIT fails), and the text's
    # first statement was rolled back with the rest.
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 0), (2, 0)]


def test_an_autocommit_query_of_a_key_committed_before_it_fails_at_once(
    connect: Connect, counters: str
) -> None:
    """The other transaction committed before the batch was sent: the batch
    meets no held row, does not run again, and fails as PostgreSQL fails it.
    (A holder that commits while the batch runs: see
    test_an_autocommit_write_whose_holder_commits_before_its_run_again_fails.)"""
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"insert into {counters} values (5, 1)")
    holder.commit()
    with pytest.raises(errors.UniqueViolation):
        single.execute(
            f"update {counters} set n = 3 where id = 1;"
            f" insert into {counters} values (5, 2)"
        )
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 0), (2, 0), (5, 1)]


@pytest.mark.parametrize("prepare", [False, True])
def test_statements_pipelined_in_autocommit_commit_first_and_win(
    held_row: HeldRow, counters: str, prepare: bool
) -> None:
    """Statements before one Sync run as one implicit transaction: it
    commits at the Sync, first, and wins."""
    holder, single = held_row
    with single.pipeline():
        one = single.execute(f"select n from {counters} where id = %s", [2])
        two = single.execute(f"update {counters} set n = 5 where id = %s", [2])
        three = single.execute(
            f"update {counters} set n = 6 where id = %s returning n",
            [1],
            prepare=prepare,
        )
    assert one.fetchall() == [(0,)]
    assert two.rowcount == 1
    assert three.fetchall() == [(6,)]
    assert single.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 6), (2, 5)]


def test_executemany_in_autocommit_commits_first_and_wins(
    held_row: HeldRow, counters: str
) -> None:
    """psycopg's executemany() sends its statements in pipeline mode."""
    holder, single = held_row
    with single.cursor() as cursor:
        cursor.executemany(
            f"update {counters} set n = n + %s where id = %s",
            [(10, 2), (20, 1), (30, 2)],
        )
        assert cursor.rowcount == 3
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 20), (2, 40)]


def test_executemany_returning_in_autocommit_commits_first_and_wins(
    held_row: HeldRow, counters: str
) -> None:
    """executemany(returning=True) sends a Flush, then waits for every
    statement's answer before it sends its Sync."""
    holder, single = held_row
    with single.cursor() as cursor:
        cursor.executemany(
            f"update {counters} set n = n + %s where id = %s returning id, n",
            [(10, 2), (20, 1), (30, 2)],
            returning=True,
        )
        answered = [cursor.fetchall()]
        while cursor.nextset():
            answered.append(cursor.fetchall())
    assert answered == [[(2, 10)], [(1, 20)], [(2, 40)]]
    assert single.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 20), (2, 40)]


@pytest.mark.parametrize("read_first", [False, True])
def test_a_fetch_in_an_autocommit_pipeline_commits_first_and_wins(
    held_row: HeldRow, counters: str, read_first: bool
) -> None:
    """A fetch inside pipeline() sends a Flush and waits for the answers
    before the block's Sync; with `read_first`, a read's answer was fetched
    (given to the client) before the write met the held row."""
    holder, single = held_row
    with single.pipeline():
        if read_first:
            read = single.execute(f"select n from {counters} where id = %s", [2])
            assert read.fetchall() == [(0,)]
        write = single.execute(
            f"update {counters} set n = 7 where id = %s returning n", [1]
        )
        assert write.fetchall() == [(7,)]
        after = single.execute(f"update {counters} set n = 8 where id = %s", [2])
    assert after.rowcount == 1
    assert single.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 7), (2, 8)]


def test_a_pipeline_run_again_that_would_answer_a_fetched_read_otherwise_fails(
    dsql_local: DsqlLocal,
    connect: Connect,
    counters: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client fetched a read, then a write met a held row; before the
    run again, another session changed the row read: the run again would
    answer the read otherwise, and an answer given cannot be taken back.
    The write fails with 40001 (OC000), the batch is rolled back, and the
    holder, which did not give way, commits."""
    if dsql_local.own_process:
        pytest.skip("the relay runs in a process of its own: not patched")
    holder = connect()
    single = connect(autocommit=True)
    other = connect(autocommit=True)
    holder.execute(f"update {counters} set n = 1 where id = 1")
    begin_again = HiddenTransactions._begin_again
    changed: list[bool] = []

    def read_row_changes_first(self: HiddenTransactions, check: str) -> None:
        if not changed:
            other.execute(f"update {counters} set n = 5 where id = 2")
            changed.append(True)
        begin_again(self, check)

    monkeypatch.setattr(HiddenTransactions, "_begin_again", read_row_changes_first)
    with (  # noqa: PT012
        pytest.raises(errors.SerializationFailure) as info,
        single.pipeline(),
    ):
        read = single.execute(f"select n from {counters} where id = %s", [2])
        assert read.fetchall() == [(0,)]
        single.execute(
            f"update {counters} set n = 7 where id = %s returning n", [1]
        ).fetchall()
    monkeypatch.undo()
    assert changed
    assert str(info.value) == "change conflicts with another transaction (OC000)"
    assert single.info.transaction_status == TransactionStatus.IDLE
    holder.commit()
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 1), (2, 5)]


def test_an_executemany_returning_whose_answered_identity_would_change_fails(
    dsql_local: DsqlLocal,
    connect: Connect,
    dsql_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first INSERT's identity was answered before the second met a
    held key (the lock timeout sends what came before it): its run again
    takes the next value, and an answer given cannot be taken back. The
    batch fails with 40001 (OC000), and the holder, which did not give
    way, commits."""
    if dsql_local.own_process:
        pytest.skip("the relay runs in a process of its own: not patched")
    table = f"{dsql_schema}.keyed"
    with connect(autocommit=True) as conn:
        conn.execute(
            f"create table {table} (id bigint generated by default as identity"
            " (cache 1) primary key, k int unique)"
        )
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"insert into {table} (id, k) values (100, 2)")
    begin_again = HiddenTransactions._begin_again
    ran_again: list[bool] = []

    def run_again(self: HiddenTransactions, check: str) -> None:
        ran_again.append(True)
        begin_again(self, check)

    monkeypatch.setattr(HiddenTransactions, "_begin_again", run_again)
    with (
        pytest.raises(errors.SerializationFailure) as info,
        single.cursor() as cursor,
    ):
        cursor.executemany(
            f"insert into {table} (k) values (%s) returning id",
            [(1,), (2,)],
            returning=True,
        )
    monkeypatch.undo()
    assert ran_again
    assert str(info.value) == "change conflicts with another transaction (OC000)"
    assert single.info.transaction_status == TransactionStatus.IDLE
    holder.commit()
    rows = single.execute(f"select id, k from {table} order by id").fetchall()
    assert rows == [(100, 2)]


def test_an_async_pipeline_fetch_and_executemany_returning_commit_first(
    dsql_local: DsqlLocal, connect: Connect, counters: str
) -> None:
    """psycopg's AsyncConnection sends the same messages: its fetch in a
    pipeline wins over the holder of row 1, its executemany(returning=True)
    over the holder of row 2."""
    holders = [connect(), connect()]
    holders[0].execute(f"update {counters} set n = 1 where id = 1")

    async def run() -> list[Any]:
        params = {
            **dsql_local.connect_kwargs(user="admin"),
            "password": make_token(dsql_local),
            "sslmode": "verify-full",
            "sslnegotiation": "direct",
        }
        conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        async with conn:
            async with conn.pipeline():
                cursor = await conn.execute(
                    f"update {counters} set n = 9 where id = %s returning n", [1]
                )
                answered = [await cursor.fetchall()]
            holders[1].execute(f"update {counters} set n = 1 where id = 2")
            cursor = conn.cursor()
            await cursor.executemany(
                f"update {counters} set n = n + 1 where id = %s returning n",
                [(1,), (2,)],
                returning=True,
            )
            answered.append(await cursor.fetchall())
            assert cursor.nextset()
            answered.append(await cursor.fetchall())
            return answered

    assert asyncio.run(run()) == [[(9,)], [(10,)], [(1,)]]
    for holder in holders:
        _fails_at_commit(holder)
    with connect() as conn:
        rows = conn.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 10), (2, 1)]


def test_an_error_in_an_autocommit_pipeline_run_again_rolls_all_of_it_back(
    held_row: HeldRow, counters: str
) -> None:
    holder, single = held_row

    def pipeline() -> None:
        with single.pipeline():
            single.execute(f"update {counters} set n = 3 where id = %s", [1])
            single.execute(f"insert into {counters} values (%s, 9)", [2])
            single.execute(f"update {counters} set n = 7 where id = %s", [2])

    with pytest.raises(errors.UniqueViolation):
        pipeline()
    assert single.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = single.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 0), (2, 0)]


# Where a statement sent in autocommit is sent again: PostgreSQL refused it
# for a held row, and the relay is to begin its run again's transaction.
_SENT = ["alone", "alone in a query", "in a query", "in a pipeline"]


def _send_in_autocommit(conn: psycopg.Connection[Any], sent: str, update: str) -> None:
    """Run `update` of id 1, as `sent` says: alone or after a select 1."""
    if sent == "alone":
        conn.execute(update, [1])
    elif sent == "alone in a query":
        psycopg.ClientCursor(conn).execute(update, [1])
    elif sent == "in a query":
        psycopg.ClientCursor(conn).execute(f"select 1; {update}", [1])
    else:
        with conn.pipeline():
            conn.execute("select 1")
            conn.execute(update, [1])


@pytest.mark.parametrize("sent", _SENT)
def test_an_autocommit_write_whose_holder_commits_before_its_run_again_fails(
    dsql_local: DsqlLocal,
    dsql_schema: str,
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
    sent: str,
) -> None:
    """In DSQL the write's transaction began before the holder committed:
    the holder wins, the write fails with (OC000). The holder commits at
    the point where the relay, the first run refused, begins the run
    again's transaction (found by the review at 6-10 ms in 4 rounds of 24)."""
    if dsql_local.own_process:
        pytest.skip("the relay runs in a process of its own: not patched")
    # A name of its own: the check finds the row's table by its name alone.
    table = f"{dsql_schema}.raced_{secrets.token_hex(4)}"
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {table} (id int primary key, n int not null)")
        conn.execute(f"insert into {table} values (1, 0), (2, 0)")
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"update {table} set n = n + 1 where id = 1")
    begin_again = HiddenTransactions._begin_again
    committed: list[bool] = []

    def holder_commits_first(self: HiddenTransactions, check: str) -> None:
        if not committed:
            holder.commit()  # (from the relay's thread: the holder's is another)
            committed.append(True)
        begin_again(self, check)

    monkeypatch.setattr(HiddenTransactions, "_begin_again", holder_commits_first)
    with pytest.raises(errors.SerializationFailure) as info:
        _send_in_autocommit(
            single, sent, f"update {table} set n = n + 10 where id = %s"
        )
    monkeypatch.undo()
    assert committed
    assert str(info.value) == "change conflicts with another transaction (OC000)"
    assert single.info.transaction_status == TransactionStatus.IDLE
    rows = single.execute(f"select id, n from {table} order by id").fetchall()
    assert rows == [(1, 1), (2, 0)]


@pytest.mark.parametrize("sent", _SENT)
def test_an_autocommit_write_whose_holder_gives_way_first_runs_again(
    dsql_local: DsqlLocal,
    dsql_schema: str,
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
    sent: str,
) -> None:
    """The check before a run again lets it through when the holder rolled
    back in the meantime (and when it is still open, see above)."""
    if dsql_local.own_process:
        pytest.skip("the relay runs in a process of its own: not patched")
    table = f"{dsql_schema}.raced_{secrets.token_hex(4)}"
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {table} (id int primary key, n int not null)")
        conn.execute(f"insert into {table} values (1, 0), (2, 0)")
    holder = connect()
    single = connect(autocommit=True)
    holder.execute(f"update {table} set n = n + 1 where id = 1")
    begin_again = HiddenTransactions._begin_again
    rolled_back: list[bool] = []

    def holder_rolls_back_first(self: HiddenTransactions, check: str) -> None:
        if not rolled_back:
            holder.rollback()
            rolled_back.append(True)
        begin_again(self, check)

    monkeypatch.setattr(HiddenTransactions, "_begin_again", holder_rolls_back_first)
    _send_in_autocommit(single, sent, f"update {table} set n = n + 10 where id = %s")
    monkeypatch.undo()
    assert rolled_back
    rows = single.execute(f"select id, n from {table} order by id").fetchall()
    assert rows == [(1, 10), (2, 0)]


# -- A query text that opens the transaction block (#25) ---------------------


@pytest.mark.parametrize("winner", ["holder", "later writer"])
@pytest.mark.parametrize(
    "begin", ["begin", "start transaction", "/* c */ begin", "-- c\nbegin"]
)
def test_a_query_that_begins_its_transaction_is_judged_at_commit(
    held_row: HeldRow, counters: str, winner: str, begin: str
) -> None:
    holder, later = held_row
    cursor = psycopg.ClientCursor(later)
    # One Query message: its statements run in the block it opens.
    cursor.execute(
        f"{begin}; update {counters} set n = 2 where id = 2;"
        f" update {counters} set n = 3 where id = 1 returning id, n;"
        f" select n from {counters} where id = 2"
    )
    assert later.info.transaction_status == TransactionStatus.INTRANS
    assert holder.info.transaction_status == TransactionStatus.INTRANS
    assert cursor.statusmessage == (
        "START TRANSACTION" if "start" in begin else "BEGIN"
    )
    assert cursor.nextset()
    assert cursor.rowcount == 1
    assert cursor.nextset()
    assert cursor.fetchall() == [(1, 3)]
    assert cursor.nextset()
    assert cursor.fetchall() == [(2,)]
    assert not cursor.nextset()
    if winner == "holder":
        holder.commit()
        with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
            later.execute("commit")
        expected = [(1, 1), (2, 0)]
    else:
        later.execute("commit")
        _fails_at_commit(holder)
        expected = [(1, 3), (2, 2)]
    assert later.info.transaction_status == TransactionStatus.IDLE
    rows = later.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == expected


@pytest.mark.parametrize(
    "commit",
    ["", " commit;"],
    ids=["begins its transaction", "commits it too"],
)
def test_an_error_in_a_query_that_begins_its_transaction_ends_the_rest(
    held_row: HeldRow, counters: str, commit: str
) -> None:
    holder, later = held_row
    with pytest.raises(errors.UniqueViolation):
        later.execute(
            f"begin; update {counters} set n = 3 where id = 1;"
            f" insert into {counters} values (2, 0);{commit}"
            f" update {counters} set n = 4 where id = 2"
        )
    # As in PostgreSQL: the rest of the text, a COMMIT in it too, did not run.
    assert later.info.transaction_status == TransactionStatus.INERROR
    later.execute("rollback")
    holder.commit()
    rows = later.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 1), (2, 0)]


# -- Review findings (review4) (#25) -----------------------------------------


def test_a_guarded_write_keeps_the_client_s_unnamed_statement(
    connect: Connect, counters: str
) -> None:
    conn = connect()
    conn.execute("select 1")
    # libpq's own calls: PQprepare and PQexecPrepared of the unnamed statement.
    pgconn = conn.pgconn
    one = f"update {counters} set n = n + 1 where id = 1"
    two = f"update {counters} set n = n + 100 where id = 2"
    assert pgconn.prepare(b"", one.encode()).error_message == b""
    assert pgconn.prepare(b"two", two.encode()).error_message == b""
    assert pgconn.exec_prepared(b"two", []).command_status == b"UPDATE 1"
    assert pgconn.exec_prepared(b"", []).command_status == b"UPDATE 1"
    conn.commit()
    rows = conn.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 1), (2, 100)]


@pytest.fixture(scope="module")
def loose_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(strict=False) as local:
        yield local


def _loose_counter(local: DsqlLocal, name: str) -> str:
    with open_connection(local, autocommit=True) as conn:
        conn.execute(f"create table {name} (id int primary key, n int not null)")
        conn.execute(f"insert into {name} values (1, 0), (2, 0)")
    return name


def test_a_refused_write_undone_by_rollback_to_savepoint_is_not_committed(
    loose_local: DsqlLocal,
) -> None:
    table = _loose_counter(loose_local, "undone_by_savepoint")
    with (
        open_connection(loose_local) as holder,
        open_connection(loose_local) as conn,
    ):
        holder.execute(f"update {table} set n = 1 where id = 1")
        conn.execute("savepoint mine")
        conn.execute(f"update {table} set n = 99 where id = 1")  # refused
        conn.execute("rollback to savepoint mine")
        holder.rollback()
        conn.commit()
        assert conn.execute(f"select n from {table} where id = 1").fetchone() == (0,)


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_refused_writes_follow_the_client_s_savepoints(
    loose_local: DsqlLocal, protocol: str
) -> None:
    """Rolled back to a savepoint, a refused write is not run again at
    COMMIT; released, it is; the savepoint rolled back to stays."""
    table = _loose_counter(loose_local, f"savepoints_{protocol}")
    with (
        open_connection(loose_local) as holder,
        open_connection(loose_local) as conn,
    ):
        run = (
            psycopg.ClientCursor(conn).execute if protocol == "simple" else conn.execute
        )
        holder.execute(f"update {table} set n = 1 where id in (1, 2)")
        run(f"update {table} set n = n + 10 where id = 1")  # refused, kept
        run('savepoint "Outer"')
        run(f"update {table} set n = n + 20 where id = 2")  # refused
        run("savepoint deeper")
        run(f"update {table} set n = n + 30 where id = 2")  # refused
        run("release savepoint deeper")  # kept
        run('rollback to savepoint "Outer"')  # both undone
        run(f"update {table} set n = n + 40 where id = 2")  # refused
        run('rollback to "Outer"')  # undone again: the savepoint stays
        run(f"update {table} set n = n + 50 where id = 2")  # refused, kept
        run('release "Outer"')
        holder.rollback()
        conn.commit()
        rows = conn.execute(f"select id, n from {table} order by id").fetchall()
        assert rows == [(1, 10), (2, 50)]


def test_a_refused_write_in_a_nested_psycopg_transaction_that_fails_is_undone(
    loose_local: DsqlLocal,
) -> None:
    """psycopg's nested transaction() is a savepoint: leaving it rolled
    back sends ROLLBACK TO SAVEPOINT and RELEASE in one Query."""
    table = _loose_counter(loose_local, "nested_transaction")
    with (
        open_connection(loose_local) as holder,
        open_connection(loose_local) as conn,
    ):
        holder.execute(f"update {table} set n = 1 where id in (1, 2)")
        with conn.transaction():
            conn.execute(f"update {table} set n = n + 10 where id = 1")  # refused
            with conn.transaction():
                conn.execute(f"update {table} set n = n + 20 where id = 2")
                raise psycopg.Rollback  # leaves this block only, rolled back
            holder.rollback()
        rows = conn.execute(f"select id, n from {table} order by id").fetchall()
        assert rows == [(1, 10), (2, 0)]


def test_a_guarded_write_among_debug_notices_is_answered_as_postgresql_answers(
    loose_local: DsqlLocal,
) -> None:
    table = _loose_counter(loose_local, "debug_notices")
    options = "-c client_min_messages=debug5"
    with open_connection(loose_local, options=options) as conn:
        conn.add_notice_handler(lambda diagnostic: None)
        cursor = conn.execute(
            f"update {table} set n = 5 where id = %s returning n", [1]
        )
        assert cursor.fetchall() == [(5,)]
        conn.rollback()


# -- A query text that commits its transaction (#25) -------------------------


@pytest.mark.parametrize("opened", ["in the text", "before"])
def test_a_query_that_commits_its_transaction_commits_first_and_wins(
    held_row: HeldRow, counters: str, opened: str
) -> None:
    holder, later = held_row
    if opened == "before":
        later.execute("begin")
    cursor = psycopg.ClientCursor(later)
    # Its COMMIT comes first: the holder gives way, as in DSQL.
    cursor.execute(
        ("begin; " if opened == "in the text" else "")
        + f"update {counters} set n = 2 where id = 2;"
        f" update {counters} set n = 3 where id = 1 returning id, n;"
        " commit;"
        f" select n from {counters} where id = 1"
    )
    results = []
    while True:
        results.append(
            (cursor.statusmessage, cursor.fetchall() if cursor.description else None)
        )
        if not cursor.nextset():
            break
    begin = [("BEGIN", None)] if opened == "in the text" else []
    assert results == [
        *begin,
        ("UPDATE 1", None),
        ("UPDATE 1", [(1, 3)]),
        ("COMMIT", None),
        ("SELECT 1", [(3,)]),
    ]
    assert later.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = later.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 3), (2, 2)]


def test_a_query_that_commits_after_the_holder_committed_fails_at_its_commit(
    held_row: HeldRow, counters: str
) -> None:
    holder, later = held_row
    cursor = psycopg.ClientCursor(later)
    later.execute("begin")
    cursor.execute(f"update {counters} set n = 3 where id = 1")
    holder.commit()
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        cursor.execute(f"update {counters} set n = 4 where id = 2; commit")
    assert later.info.transaction_status == TransactionStatus.IDLE
    rows = later.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 1), (2, 0)]


def test_a_pipeline_that_commits_its_transaction_commits_first_and_wins(
    held_row: HeldRow, counters: str
) -> None:
    holder, later = held_row
    with later.pipeline():
        later.execute("begin")
        later.execute(f"update {counters} set n = %s where id = %s", [3, 1])
        later.execute("commit")
    assert later.info.transaction_status == TransactionStatus.IDLE
    _fails_at_commit(holder)
    rows = later.execute(f"select id, n from {counters} order by id").fetchall()
    assert rows == [(1, 3), (2, 0)]
