"""DSQL's `server unavailable` (XX000): re-run at a statement, unknown at COMMIT."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg._detect import is_server_unavailable
from dsql_psycopg.connection import DsqlConnection

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def fault_local() -> Iterator[DsqlLocal]:
    """A DSQL Local of this module's own, where PL/pgSQL may raise any error."""
    with DsqlLocal(strict=False) as fault_local:
        with psycopg.connect(fault_local.backend_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE unavailable_t (id int PRIMARY KEY)")
        yield fault_local


@pytest.fixture
def pool(fault_local: DsqlLocal) -> Iterator[psycopg_pool.ConnectionPool[Any]]:
    with dsql.create_pool(fault_local.url, min_size=1, max_size=2) as pool:
        yield pool
    fault_local.inject_server_unavailable()


@pytest.fixture
def conn(fault_local: DsqlLocal) -> Iterator[DsqlConnection[Any]]:
    with dsql.connect(fault_local.url) as conn:
        yield conn
    fault_local.inject_server_unavailable()


def _present(fault_local: DsqlLocal, row_id: int) -> bool:
    with psycopg.connect(fault_local.backend_dsn) as conn:
        query = "SELECT count(*) FROM unavailable_t WHERE id = %s"
        row = conn.execute(query, (row_id,)).fetchone()
    assert row is not None
    assert row[0] <= 1
    return bool(row[0])


def _insert(conn: psycopg.Connection[Any], row_id: int) -> None:
    conn.execute("INSERT INTO unavailable_t VALUES (%s)", (row_id,))


def _upsert(conn: psycopg.Connection[Any], row_id: int) -> None:
    conn.execute(
        "INSERT INTO unavailable_t VALUES (%s) ON CONFLICT (id) DO NOTHING", (row_id,)
    )


@pytest.mark.parametrize("source", ["pool", "conn"])
def test_a_statement_answered_server_unavailable_runs_again(
    fault_local: DsqlLocal, source: str, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue(source)
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(2)
    with dsql.retry_testing():
        dsql.transaction(target, on_retry=events.append).run(_insert, row_id)
    assert [(e.attempt, e.reason) for e in events] == [
        (1, "server_unavailable"),
        (2, "server_unavailable"),
    ]
    assert isinstance(events[0].error, psycopg.errors.InternalError_)
    assert _present(fault_local, row_id)


@pytest.mark.parametrize("committed", [False, True])
def test_commit_answered_server_unavailable_is_an_unknown_outcome(
    fault_local: DsqlLocal, pool: psycopg_pool.ConnectionPool[Any], committed: bool
) -> None:
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(commits=1, committed=committed)
    with pytest.raises(dsql.CommitOutcomeUnknown, match="server unavailable") as info:
        dsql.transaction(pool, on_retry=events.append).run(_insert, row_id)
    assert events == []
    cause = info.value.__cause__
    assert isinstance(cause, psycopg.errors.InternalError_)
    assert cause.sqlstate == "XX000"
    assert not is_server_unavailable(info.value)
    # Either outcome really happens: the caller must check, as told.
    assert _present(fault_local, row_id) is committed


@pytest.mark.parametrize("committed", [False, True])
@pytest.mark.parametrize("source", ["pool", "conn"])
def test_idempotent_commit_answered_server_unavailable_runs_again(
    fault_local: DsqlLocal, source: str, committed: bool, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue(source)
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(commits=1, committed=committed)
    with dsql.retry_testing():
        dsql.transaction(target, idempotent=True, on_retry=events.append).run(
            _upsert, row_id
        )
    assert [e.reason for e in events] == ["commit_outcome_unknown"]
    assert _present(fault_local, row_id)


def test_decorated_function_reruns_a_statement_failure_not_a_commit_one(
    fault_local: DsqlLocal, pool: psycopg_pool.ConnectionPool[Any]
) -> None:
    runs = 0

    @dsql.retry_on_occ
    def work(row_id: int) -> None:
        nonlocal runs
        runs += 1
        with dsql.transaction(pool) as conn:
            _insert(conn, row_id)

    fault_local.inject_server_unavailable(1)
    with dsql.retry_testing():
        work(next(_ids))
    assert runs == 2

    runs = 0
    fault_local.inject_server_unavailable(commits=1)
    with pytest.raises(dsql.CommitOutcomeUnknown):
        work(next(_ids))
    assert runs == 1


def test_other_internal_errors_are_not_retried(
    pool: psycopg_pool.ConnectionPool[Any],
) -> None:
    runs = 0

    def fail(conn: psycopg.Connection[Any]) -> None:
        nonlocal runs
        runs += 1
        conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000',"
            " MESSAGE = 'something else'; END $$"
        )

    with pytest.raises(psycopg.errors.InternalError_, match="something else"):
        dsql.run_transaction(pool, fail)
    assert runs == 1


def test_is_server_unavailable_looks_through_wrappers() -> None:
    error = psycopg.errors.InternalError_("server unavailable")
    assert is_server_unavailable(error)
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = error
    assert is_server_unavailable(wrapper)
    unknown = dsql.CommitOutcomeUnknown("at COMMIT")
    unknown.__cause__ = error
    assert not is_server_unavailable(unknown)
    assert not is_server_unavailable(psycopg.errors.InternalError_("other"))
    assert not is_server_unavailable(psycopg.OperationalError("server unavailable"))
