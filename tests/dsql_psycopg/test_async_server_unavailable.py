"""`server unavailable` (XX000), asyncio: test_server_unavailable.py's twin.

A statement answered so re-runs the transaction; a COMMIT answered so raises
`CommitOutcomeUnknown`, or re-runs with ``idempotent=True``. Here through
``await transaction(apool_or_aconn).run(afn)``, ``@retry_on_occ`` on
``async def`` and ``await run_transaction(...)``, against DSQL Local.
`is_server_unavailable` has no async meaning: its tests stay in the twin.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg._detect import is_server_unavailable

pytestmark = pytest.mark.anyio

AConn = dsql.AsyncDsqlConnection[Any]

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def fault_local() -> Iterator[DsqlLocal]:
    """A DSQL Local of this module's own, where PL/pgSQL may raise any error."""
    with DsqlLocal(strict=False) as fault_local:
        with psycopg.connect(fault_local.backend_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE unavailable_t (id int PRIMARY KEY)")
        yield fault_local


@pytest.fixture
async def pool(fault_local: DsqlLocal) -> AsyncIterator[Any]:
    async with dsql.create_async_pool(fault_local.url, min_size=1, max_size=2) as pool:
        yield pool
    fault_local.inject_server_unavailable()


@pytest.fixture(params=["pool", "conn"])
async def source(
    request: pytest.FixtureRequest, fault_local: DsqlLocal
) -> AsyncIterator[Any]:
    """An asyncio pool or one asyncio connection to run transactions on."""
    if request.param == "pool":
        async with dsql.create_async_pool(
            fault_local.url, min_size=1, max_size=2
        ) as pool:
            yield pool
    else:
        async with await dsql.AsyncDsqlConnection.connect(fault_local.url) as conn:
            yield conn
    fault_local.inject_server_unavailable()


def _present(fault_local: DsqlLocal, row_id: int) -> bool:
    with psycopg.connect(fault_local.backend_dsn) as conn:
        query = "SELECT count(*) FROM unavailable_t WHERE id = %s"
        row = conn.execute(query, (row_id,)).fetchone()
    assert row is not None
    assert row[0] <= 1
    return bool(row[0])


async def _insert(conn: AConn, row_id: int) -> None:
    await conn.execute("INSERT INTO unavailable_t VALUES (%s)", (row_id,))


async def _upsert(conn: AConn, row_id: int) -> None:
    await conn.execute(
        "INSERT INTO unavailable_t VALUES (%s) ON CONFLICT (id) DO NOTHING", (row_id,)
    )


async def test_a_statement_answered_server_unavailable_runs_again(
    fault_local: DsqlLocal, source: Any
) -> None:
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(2)
    with dsql.retry_testing():
        await dsql.transaction(source, on_retry=events.append).run(_insert, row_id)
    assert [(e.attempt, e.reason) for e in events] == [
        (1, "server_unavailable"),
        (2, "server_unavailable"),
    ]
    assert isinstance(events[0].error, psycopg.errors.InternalError_)
    assert _present(fault_local, row_id)


@pytest.mark.parametrize("committed", [False, True])
async def test_commit_answered_server_unavailable_is_an_unknown_outcome(
    fault_local: DsqlLocal, pool: Any, committed: bool
) -> None:
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(commits=1, committed=committed)
    with pytest.raises(dsql.CommitOutcomeUnknown, match="server unavailable") as info:
        await dsql.transaction(pool, on_retry=events.append).run(_insert, row_id)
    assert events == []
    cause = info.value.__cause__
    assert isinstance(cause, psycopg.errors.InternalError_)
    assert cause.sqlstate == "XX000"
    assert not is_server_unavailable(info.value)
    # Either outcome really happens: the caller must check, as told.
    assert _present(fault_local, row_id) is committed


@pytest.mark.parametrize("committed", [False, True])
async def test_idempotent_commit_answered_server_unavailable_runs_again(
    fault_local: DsqlLocal, source: Any, committed: bool
) -> None:
    events: list[dsql.RetryEvent] = []
    row_id = next(_ids)
    fault_local.inject_server_unavailable(commits=1, committed=committed)
    with dsql.retry_testing():
        await dsql.transaction(source, idempotent=True, on_retry=events.append).run(
            _upsert, row_id
        )
    assert [e.reason for e in events] == ["commit_outcome_unknown"]
    assert _present(fault_local, row_id)


async def test_decorated_function_reruns_a_statement_failure_not_a_commit_one(
    fault_local: DsqlLocal, pool: Any
) -> None:
    runs = 0

    @dsql.retry_on_occ
    async def work(row_id: int) -> None:
        nonlocal runs
        runs += 1
        async with dsql.transaction(pool) as conn:
            await _insert(conn, row_id)

    fault_local.inject_server_unavailable(1)
    with dsql.retry_testing():
        await work(next(_ids))
    assert runs == 2

    runs = 0
    fault_local.inject_server_unavailable(commits=1)
    with pytest.raises(dsql.CommitOutcomeUnknown):
        await work(next(_ids))
    assert runs == 1


async def test_other_internal_errors_are_not_retried(pool: Any) -> None:
    runs = 0

    async def fail(conn: AConn) -> None:
        nonlocal runs
        runs += 1
        await conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000',"
            " MESSAGE = 'something else'; END $$"
        )

    with pytest.raises(psycopg.errors.InternalError_, match="something else"):
        await dsql.run_transaction(pool, fail)
    assert runs == 1
