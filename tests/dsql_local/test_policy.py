"""The statement policy hook, exercised with a tiny policy of the tests' own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal, Refusal, Session
from tests.dsql_local.helpers import open_connection


class TinyPolicy:
    """Refuse 'forbidden', rewrite 'rewrite_me', veto COMMIT after 'mark_commit'."""

    bootstrap_sql: Sequence[str] = (
        "CREATE TABLE public.bootstrapped (ok int)",
        "GRANT SELECT ON public.bootstrapped TO PUBLIC",
    )

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, bool, dict[str, object]]] = []
        self.tags: list[str] = []

    def check_startup(self, parameters: Mapping[str, str]) -> Refusal | None:
        return None

    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        self.seen.append(
            (
                sql,
                session.in_transaction,
                session.transaction_started_at is not None,
                dict(session.scratch),
            )
        )
        if "mark_commit" in sql:
            session.scratch["veto"] = True
        if "block_next" in sql:
            session.scratch["block"] = True
        if "stateful" in sql and session.scratch.get("block"):
            return Refusal("0A000", "forbidden is not supported")
        if "forbidden" in sql:
            return Refusal("0A000", "forbidden is not supported")
        if "rewrite_me" in sql:
            return sql.replace("rewrite_me", "'rewritten'")
        return None

    def statement_done(self, command_tag: str, session: Session) -> None:
        self.tags.append(command_tag)

    def check_commit(self, session: Session) -> Refusal | None:
        if session.scratch.get("veto"):
            return Refusal("54000", "commit vetoed by policy")
        return None


@pytest.fixture(scope="module")
def policy() -> TinyPolicy:
    return TinyPolicy()


@pytest.fixture(scope="module")
def local(policy: TinyPolicy) -> Iterator[DsqlLocal]:
    with DsqlLocal(policy=policy) as local:
        yield local


@pytest.fixture
def conn(local: DsqlLocal, policy: TinyPolicy) -> Iterator[psycopg.Connection[Any]]:
    with open_connection(local) as conn:
        policy.seen.clear()
        policy.tags.clear()
        yield conn


def _assert_refused(exc: pytest.ExceptionInfo[psycopg.Error]) -> None:
    assert isinstance(exc.value, errors.FeatureNotSupported)
    assert str(exc.value) == "forbidden is not supported"
    assert exc.value.diag.context is None  # no trace of how it was raised


def test_bootstrap_sql_ran(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("select count(*) from public.bootstrapped").fetchone() == (0,)


def test_refusal_in_simple_protocol(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True
    cur = psycopg.ClientCursor(conn)
    with pytest.raises(psycopg.Error) as info:
        cur.execute("select 'forbidden'")
    _assert_refused(info)
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert cur.execute("select 1").fetchone() == (1,)


def test_refusal_in_a_transaction_aborts_it(conn: psycopg.Connection[Any]) -> None:
    conn.execute("select 1")
    with pytest.raises(psycopg.Error) as info:
        conn.execute("select 'forbidden'")
    _assert_refused(info)
    # Exactly what a server-side error leaves: the transaction is aborted.
    assert conn.info.transaction_status == TransactionStatus.INERROR
    with pytest.raises(errors.InFailedSqlTransaction):
        conn.execute("select 1")
    conn.rollback()
    assert conn.execute("select 2").fetchone() == (2,)


def test_refusal_in_simple_protocol_transaction(conn: psycopg.Connection[Any]) -> None:
    cur = psycopg.ClientCursor(conn)
    cur.execute("select 1")
    with pytest.raises(psycopg.Error) as info:
        cur.execute("select 'forbidden'")
    _assert_refused(info)
    assert conn.info.transaction_status == TransactionStatus.INERROR
    conn.rollback()


@pytest.mark.parametrize("prepare", [False, True])
def test_refusal_with_parameters(conn: psycopg.Connection[Any], prepare: bool) -> None:
    conn.autocommit = True
    for _ in range(2):  # a prepared statement stays refused
        with pytest.raises(psycopg.Error) as info:
            conn.execute(
                "select %s::int, %s, %b, 'forbidden'",
                [1, "text", 2.5],
                prepare=prepare,
            )
        _assert_refused(info)
    assert conn.execute("select %s::int", [3], prepare=prepare).fetchone() == (3,)


def test_refusal_in_pipeline_mode(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.Error) as info, conn.pipeline():  # noqa: PT012
        conn.execute("select 1")
        conn.execute("select 'forbidden', %s", [1])
        conn.execute("select 2")
    _assert_refused(info)
    conn.rollback()
    assert conn.execute("select 3").fetchone() == (3,)


def test_rewrite(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("select rewrite_me").fetchone() == ("rewritten",)
    cur = psycopg.ClientCursor(conn)
    assert cur.execute("select rewrite_me").fetchone() == ("rewritten",)
    assert conn.execute("select rewrite_me, %s::int", [4]).fetchone() == (
        "rewritten",
        4,
    )


def test_statement_done_sees_command_tags(
    conn: psycopg.Connection[Any], policy: TinyPolicy
) -> None:
    conn.execute("create temporary table tags (id int)")
    conn.execute("insert into tags values (1), (2)")
    conn.execute("update tags set id = id + 1")
    conn.commit()
    assert policy.tags[-4:] == ["CREATE TABLE", "INSERT 0 2", "UPDATE 2", "COMMIT"]


def test_session_state(conn: psycopg.Connection[Any], policy: TinyPolicy) -> None:
    conn.execute("select 'first'")
    conn.execute("select 'second'")
    conn.rollback()
    conn.autocommit = True
    conn.execute("select 'after'")
    by_sql = {sql: rest for sql, *rest in policy.seen}
    assert by_sql["BEGIN"][:2] == [False, False]
    assert by_sql["select 'first'"][:2] == [True, True]
    assert by_sql["select 'second'"][:2] == [True, True]
    assert by_sql["select 'after'"][:2] == [False, False]


def test_scratch_is_per_transaction(
    conn: psycopg.Connection[Any], policy: TinyPolicy
) -> None:
    conn.execute("select 'mark_commit'")
    conn.rollback()
    conn.execute("select 'next'")
    by_sql = {sql: rest for sql, *rest in policy.seen}
    assert by_sql["select 'next'"][2] == {}
    conn.commit()


@pytest.mark.parametrize("protocol", ["extended", "simple", "method"])
def test_check_commit_refusal(
    local: DsqlLocal, conn: psycopg.Connection[Any], protocol: str
) -> None:
    with open_connection(local, autocommit=True) as setup:
        setup.execute(f"create table if not exists vetoed_{protocol} (id int)")
    cur = psycopg.ClientCursor(conn) if protocol == "simple" else conn.cursor()
    cur.execute(f"insert into vetoed_{protocol} values (1)")
    cur.execute("select 'mark_commit'")
    with pytest.raises(errors.ProgramLimitExceeded, match="commit vetoed by policy"):
        conn.commit() if protocol == "method" else cur.execute("commit")
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert cur.execute(f"select count(*) from vetoed_{protocol}").fetchone() == (0,)
    cur.execute(f"insert into vetoed_{protocol} values (2)")
    conn.commit()
    assert cur.execute(f"select count(*) from vetoed_{protocol}").fetchone() == (1,)
    conn.commit()


class BrokenPolicy(TinyPolicy):
    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        if "explode" in sql:
            raise RuntimeError("policy bug")
        return None


def test_a_failing_policy_is_reported_to_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with DsqlLocal(policy=BrokenPolicy()) as local, open_connection(local) as conn:
        with pytest.raises(errors.InternalError_, match=r"internal error.*policy bug"):
            conn.execute("select 'explode'")
        assert conn.closed
        assert "relay failed" in caplog.text


def test_prepared_statements_are_checked_each_time_they_run(
    local: DsqlLocal, policy: TinyPolicy
) -> None:
    with open_connection(local, prepare_threshold=0) as conn:
        policy.seen.clear()
        assert conn.execute("select 'stateful', %s::int", [1]).fetchone() == (
            "stateful",
            1,
        )
        conn.commit()
        conn.execute("select 'block_next'")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("select 'stateful', %s::int", [2])
        _assert_refused(info)
        assert conn.info.transaction_status == TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("select 'stateful', %s::int", [3]).fetchone() == (
            "stateful",
            3,
        )
        # Checked once per run: at its Parse first, then at each Bind.
        checks = [sql for sql, *_ in policy.seen if "stateful" in sql]
        assert len(checks) == 3
        conn.commit()
