"""Injected faults: refusals at connect, `server unavailable`, outages."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dsql_local import DsqlLocal, DsqlLocalError
from tests.dsql_local.helpers import open_connection


@pytest.fixture(scope="module", params=["in-process", "own process"])
def fault_local(request: pytest.FixtureRequest) -> Iterator[DsqlLocal]:
    """A DSQL Local of this module's own: its faults touch every connection.

    Each test runs with the endpoints in this process and in one of their
    own (``own_process=True``), whose controls go through a pipe.
    """
    own_process = request.param == "own process"
    with DsqlLocal(strict=False, own_process=own_process) as fault_local:
        yield fault_local


@pytest.fixture
def table(fault_local: DsqlLocal) -> Iterator[str]:
    with psycopg.connect(fault_local.backend_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fault_t (id int PRIMARY KEY)")
        conn.execute("TRUNCATE fault_t")
    yield "fault_t"
    fault_local.refuse_connections(count=0)
    fault_local.inject_server_unavailable()
    fault_local.end_outage()


def _connect(fault_local: DsqlLocal, **kwargs: Any) -> psycopg.Connection[Any]:
    return open_connection(fault_local, connect_timeout=5, **kwargs)


def _ids(fault_local: DsqlLocal) -> list[int]:
    with psycopg.connect(fault_local.backend_dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM fault_t ORDER BY id")]


@pytest.mark.parametrize(
    ("reason", "sqlstate", "text"),
    [
        (
            "waking_up",
            "57P03",
            "unable to accept connection, waking up cluster, please retry later",
        ),
        ("rate_exceeded", "53400", "Unable to accept connection, rate exceeded."),
        (
            "too_many",
            "53300",
            "Unable to accept connection, too many open connections.",
        ),
    ],
)
def test_refusals_for_a_count_of_connections(
    fault_local: DsqlLocal, table: str, reason: Any, sqlstate: str, text: str
) -> None:
    fault_local.refuse_connections(reason, count=2)
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError) as info:
            _connect(fault_local)
        assert f"FATAL:  {text}" in str(info.value)
    with _connect(fault_local) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_refusals_for_a_time_end_when_cancelled(
    fault_local: DsqlLocal, table: str
) -> None:
    fault_local.refuse_connections("waking_up", seconds=600)
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError, match="waking up cluster"):
            _connect(fault_local)
    fault_local.refuse_connections(count=0)
    _connect(fault_local).close()
    fault_local.refuse_connections(seconds=0)  # already over
    _connect(fault_local).close()


def test_refusal_arguments_are_checked(fault_local: DsqlLocal) -> None:
    with pytest.raises(DsqlLocalError, match="count=N"):
        fault_local.refuse_connections("waking_up")
    with pytest.raises(DsqlLocalError, match="reason must be one of"):
        fault_local.refuse_connections("asleep", count=1)  # type: ignore[arg-type]
    with pytest.raises(DsqlLocalError, match="between 0 and 1"):
        fault_local.inject_server_unavailable(commit_fraction=1.5)
    with pytest.raises(DsqlLocalError, match="positive"):
        fault_local.outage(0)


def test_server_unavailable_at_a_statement_fails_its_transaction(
    fault_local: DsqlLocal, table: str
) -> None:
    with _connect(fault_local) as conn:
        conn.execute("INSERT INTO fault_t VALUES (1)")
        fault_local.inject_server_unavailable(1)
        with pytest.raises(psycopg.errors.InternalError_) as info:
            conn.execute("INSERT INTO fault_t VALUES (2)")
        assert info.value.sqlstate == "XX000"
        assert info.value.diag.message_primary == "server unavailable"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        conn.execute("INSERT INTO fault_t VALUES (3)")
        conn.commit()
    assert _ids(fault_local) == [3]


def test_server_unavailable_at_an_autocommit_statement(
    fault_local: DsqlLocal, table: str
) -> None:
    fault_local.inject_server_unavailable(1)
    with _connect(fault_local, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InternalError_, match="server unavailable"):
            conn.execute("INSERT INTO fault_t VALUES (1)", prepare=True)
        conn.execute("INSERT INTO fault_t VALUES (2)")
    assert _ids(fault_local) == [2]


@pytest.mark.parametrize("committed", [False, True])
def test_server_unavailable_at_commit_either_outcome(
    fault_local: DsqlLocal, table: str, committed: bool
) -> None:
    fault_local.inject_server_unavailable(commits=1, committed=committed)
    with _connect(fault_local) as conn:
        conn.execute("INSERT INTO fault_t VALUES (1)")
        with pytest.raises(psycopg.errors.InternalError_) as info:
            conn.commit()
        assert info.value.sqlstate == "XX000"
        assert info.value.diag.message_primary == "server unavailable"
        # The transaction is over either way and the connection usable.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        conn.execute("INSERT INTO fault_t VALUES (2)")
        conn.commit()
    assert _ids(fault_local) == ([1, 2] if committed else [2])


def test_server_unavailable_on_every_commit(fault_local: DsqlLocal, table: str) -> None:
    fault_local.inject_server_unavailable(commit_fraction=1.0, committed=True)
    with _connect(fault_local) as conn:
        for n in range(3):
            conn.execute("INSERT INTO fault_t VALUES (%s)", (n,))
            with pytest.raises(psycopg.errors.InternalError_):
                conn.commit()
    fault_local.inject_server_unavailable()
    with _connect(fault_local) as conn:
        conn.execute("INSERT INTO fault_t VALUES (9)")
    assert _ids(fault_local) == [0, 1, 2, 9]


@pytest.mark.parametrize("how", ["outage", "cut", "kill"])
def test_endpoint_goes_away_and_comes_back_on_its_port(
    fault_local: DsqlLocal, table: str, how: str
) -> None:
    port = fault_local.port
    with _connect(fault_local, autocommit=True) as conn:
        conn.execute("INSERT INTO fault_t VALUES (1)")
        if how == "kill":
            fault_local.kill_endpoint()
        else:
            fault_local.outage(600, refuse=how == "outage")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    if how == "cut":
        with pytest.raises(psycopg.OperationalError):
            _connect(fault_local)
    else:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # refused
    if how == "kill":
        fault_local.restart_endpoint()
    else:
        fault_local.end_outage()
    assert fault_local.port == port
    with _connect(fault_local, autocommit=True) as conn:
        conn.execute("INSERT INTO fault_t VALUES (2)")
    assert _ids(fault_local) == [1, 2]
