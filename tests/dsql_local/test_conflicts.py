"""Optimistic concurrency as DSQL reports it: SQLSTATE 40001 with (OC000)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal, DsqlLocalError
from tests.dsql_local.helpers import Connect, open_connection


@pytest.fixture
def counter(dsql_schema: str, connect: Connect) -> str:
    table = f"{dsql_schema}.counter"
    with connect(autocommit=True) as conn:
        conn.execute(f"create table {table} (id int primary key, n int not null)")
        conn.execute(f"insert into {table} values (1, 0)")
    return table


def test_concurrent_writers_conflict_at_once(connect: Connect, counter: str) -> None:
    # (DSQL refuses statement_timeout, as a setting and at startup.)
    first = connect()
    second = connect()
    first.execute(f"update {counter} set n = n + 1 where id = 1")
    with pytest.raises(errors.SerializationFailure) as info:
        second.execute(f"update {counter} set n = n + 10 where id = 1")
    assert info.value.sqlstate == "40001"
    assert "(OC000)" in str(info.value)
    second.rollback()
    first.commit()
    assert first.execute(f"select n from {counter}").fetchone() == (1,)


def test_stale_snapshot_conflicts(connect: Connect, counter: str) -> None:
    first = connect()
    second = connect()
    # Snapshot taken before the other transaction commits its change.
    assert second.execute(f"select n from {counter}").fetchone() == (0,)
    with first.transaction():
        first.execute(f"update {counter} set n = 5 where id = 1")
    with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
        second.execute(f"update {counter} set n = 7 where id = 1")
    second.rollback()
    assert second.execute(f"select n from {counter}").fetchone() == (5,)


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
        assert str(info.value) == (
            "change conflicts with another transaction, please retry: (OC000)"
        )
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
