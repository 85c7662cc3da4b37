"""OpenTelemetry from the drivers, against DSQL Local: real connects, real
conflicts between two sessions, connect refusals, failovers, lost connections,
pools; queries traced by opentelemetry-instrumentation-psycopg; and nothing
at all when the API cannot be imported.

The tests taking `driver` run once per client driver (sync, and async when
it is there); the others use the sync client's own forms."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry import trace as api

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from tests.fixtures.drivers import Driver
from tests.fixtures.otel import Otel

SECRET_PARAMETER = "a-query-parameter-nobody-may-see"
tracer = api.get_tracer("tests")


@pytest.fixture
def local(dsql_local: DsqlLocal) -> Iterator[DsqlLocal]:
    yield dsql_local
    dsql_local.inject_conflicts(0)
    dsql_local.inject_commit_drops(0)
    dsql_local.inject_server_unavailable()
    dsql_local.refuse_connections(count=0)


@pytest.fixture
def counter(local: DsqlLocal, dsql_schema: str) -> str:
    table = f"{dsql_schema}.counter"
    with dsql.connect(local.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, value text)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    return table


@pytest.fixture
def no_sleep() -> Iterator[None]:
    with dsql.retry_testing():
        yield


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def children(otel: Otel, parent: Any, name: str) -> list[Any]:
    return [
        s
        for s in otel.spans(name)
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def assert_no_secrets(otel: Otel, *words: str) -> None:
    """No span, event or metric attribute holds a token, password or parameter."""
    dump = "".join(span.to_json() for span in otel.spans())
    dump += json.dumps(otel.reader.get_metrics_data().to_json())
    for word in ("X-Amz-Signature", "X-Amz-Credential", "Action=DbConnect", *words):
        assert word not in dump


def update_in_conflict(table: str, local: DsqlLocal) -> Any:
    """A body whose first run loses a real race with another session."""
    other = dsql.connect(local.url, autocommit=True)
    runs = []

    def body(conn: psycopg.Connection[Any]) -> None:
        runs.append(1)
        conn.execute(f"SELECT value FROM {table} WHERE id = 1").fetchone()
        if len(runs) == 1:
            other.execute(f"UPDATE {table} SET value = 'other' WHERE id = 1")
        conn.execute(f"UPDATE {table} SET value = %s WHERE id = 1", (SECRET_PARAMETER,))

    body.other = other  # type: ignore[attr-defined]
    body.runs = runs  # type: ignore[attr-defined]
    return body


# -- connects --------------------------------------------------------------------------


def test_a_connect_span_names_the_endpoint_and_the_signing_time(
    otel: Otel, local: DsqlLocal, driver: Driver
) -> None:
    with tracer.start_as_current_span("request") as request:
        driver.close(driver.connect(local.url))
    (span,) = otel.spans("dsql.connect")
    assert span.parent.span_id == request.get_span_context().span_id
    a = attrs(span)
    assert a["server.address"] == local.host
    assert a["server.port"] == local.port
    assert a["dsql.region"] == local.region
    assert a["db.system.name"] == "postgresql"
    assert a["dsql.connect.failover"] is False
    assert a["dsql.connect.retries"] == 0
    assert a["dsql.token.signing_time"] > 0
    assert span.kind.name == "CLIENT"
    assert sum(otel.metrics("dsql.connect.duration").values()) == 1
    assert sum(otel.metrics("dsql.token.signing_time").values()) == 1
    assert_no_secrets(otel)


def test_connect_retries_are_counted_by_cause(
    otel: Otel, local: DsqlLocal, no_sleep: None, driver: Driver
) -> None:
    local.refuse_connections("waking_up", count=2)
    driver.close(driver.connect(local.url))
    (span,) = otel.spans("dsql.connect")
    a = attrs(span)
    assert a["dsql.connect.retries"] == 2
    assert a["dsql.connect.failed_tries"] == 2
    events = [(e.name, e.attributes["error.type"]) for e in span.events]
    assert (
        events
        == [
            ("dsql.connect.endpoint_failed", "waking_up"),
            ("dsql.connect.retry", "waking_up"),
        ]
        * 2
    )
    assert otel.metrics("dsql.connect.retries") == {
        frozenset({("error.type", "waking_up")}): 2
    }


def test_a_connect_that_gives_up(
    otel: Otel, local: DsqlLocal, no_sleep: None, driver: Driver
) -> None:
    local.refuse_connections("rate_exceeded", count=1000)
    with pytest.raises(dsql.ConnectRetryExhausted):
        driver.connect(local.url, connect_retry=0.5)
    (span,) = otel.spans("dsql.connect")
    assert span.status.status_code.name == "ERROR"
    assert attrs(span)["error.type"] == "ConnectRetryExhausted"
    retries = otel.metrics("dsql.connect.retries")
    assert retries[frozenset({("error.type", "rate_exceeded")})] >= 1
    (failed,) = otel.metrics("dsql.connect.duration")
    assert ("error.type", "ConnectRetryExhausted") in failed


def test_a_failover_to_the_other_region(
    otel: Otel, dsql_local_multi_region: DsqlLocal, driver: Driver
) -> None:
    local = dsql_local_multi_region
    peer_region = next(r for r in local.regions if r != local.region)
    home, peer = local.endpoint(local.region), local.endpoint(peer_region)
    local.fail_region(local.region)
    with driver.connected(local.multi_region_url) as conn:
        assert conn.endpoint == peer.host
    (span,) = otel.spans("dsql.connect")
    a = attrs(span)
    assert a["server.address"] == peer.host
    assert a["server.port"] == peer.port
    assert a["dsql.region"] == peer_region
    assert a["dsql.connect.failover"] is True
    (event,) = span.events
    assert event.name == "dsql.connect.endpoint_failed"
    assert event.attributes["server.address"] == home.host
    assert event.attributes["dsql.region"] == local.region
    assert event.attributes["error.type"] == "connection_refused"
    (failover,) = otel.metrics("dsql.connect.failovers").items()
    assert ("server.address", peer.host) in failover[0]
    assert failover[1] == 1


# -- transactions ----------------------------------------------------------------------


def test_a_transaction_retried_after_a_real_conflict(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    body = update_in_conflict(counter, local)
    with dsql.connect(local.url) as conn, tracer.start_as_current_span("request"):
        for attempt in dsql.transaction(conn, base_delay=0.02, jitter=0):
            with attempt as c:
                body(c)
    body.other.close()
    assert len(body.runs) == 2

    (request,) = otel.spans("request")
    (tx,) = children(otel, request, "dsql.transaction")
    first, second = children(otel, tx, "dsql.transaction.attempt")
    assert attrs(tx)["dsql.transaction.outcome"] == "committed"
    assert attrs(tx)["dsql.transaction.attempts"] == 2
    assert attrs(first) == {
        "dsql.attempt.number": 1,
        "dsql.attempt.outcome": "conflict",
        "error.type": "40001",
        "db.response.status_code": "40001",
        "dsql.occ.code": "OC000",
        "dsql.retry.backoff": 0.02,
    }
    assert first.status.status_code.name == "ERROR"
    assert attrs(second) == {
        "dsql.attempt.number": 2,
        "dsql.attempt.outcome": "committed",
    }
    assert first.end_time <= second.start_time

    assert otel.metrics("dsql.transaction.conflicts") == {
        frozenset({("db.response.status_code", "40001"), ("dsql.occ.code", "OC000")}): 1
    }
    assert otel.metrics("dsql.transaction.retries") == {
        frozenset({("dsql.retry.reason", "conflict")}): 1
    }
    assert otel.metrics("dsql.transaction.attempts") == {
        frozenset({("dsql.transaction.outcome", "committed")}): 1
    }
    assert_no_secrets(otel, SECRET_PARAMETER)


def test_injected_conflicts_through_each_driver(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None, driver: Driver
) -> None:
    local.inject_conflicts(1, code="OC001")
    pool = driver.create_pool(local.url, min_size=1, max_size=1)
    try:
        rows = driver.run_sql_transaction(
            pool,
            [(f"UPDATE {counter} SET value = %s WHERE id = 1 RETURNING id", ("e",))],
            base_delay=0.01,
            jitter=0,
        )
    finally:
        driver.close_pool(pool)
    assert rows == [(1,)]
    (tx,) = otel.spans("dsql.transaction")
    first, second = children(otel, tx, "dsql.transaction.attempt")
    assert attrs(first)["dsql.attempt.outcome"] == "conflict"
    assert attrs(first)["dsql.occ.code"] == "OC001"
    assert attrs(first)["dsql.retry.backoff"] == 0.01
    assert attrs(second)["dsql.attempt.outcome"] == "committed"
    assert otel.metrics("dsql.transaction.conflicts") == {
        frozenset({("db.response.status_code", "40001"), ("dsql.occ.code", "OC001")}): 1
    }


def test_run_transaction_on_a_pool_that_runs_out_of_attempts(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    local.inject_conflicts(3, code="OC001")
    with (
        dsql.create_pool(local.url, min_size=1, max_size=2) as pool,
        pytest.raises(dsql.OCCRetryExhausted),
    ):
        dsql.transaction(pool, max_attempts=3).run(
            lambda conn: conn.execute(f"UPDATE {counter} SET value = 'b'")
        )
    (tx,) = otel.spans("dsql.transaction")
    attempts = children(otel, tx, "dsql.transaction.attempt")
    assert [attrs(s)["dsql.occ.code"] for s in attempts] == ["OC001"] * 3
    assert "dsql.retry.backoff" not in attrs(attempts[-1])
    assert attrs(tx)["dsql.transaction.outcome"] == "exhausted"
    assert tx.status.status_code.name == "ERROR"
    assert sum(otel.metrics("dsql.transaction.exhausted").values()) == 1
    assert otel.metrics("dsql.transaction.retries") == {
        frozenset({("dsql.retry.reason", "conflict")}): 2
    }


def test_server_unavailable_and_a_lost_connection_are_retried(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    runs = []

    def body(conn: psycopg.Connection[Any]) -> None:
        runs.append(1)
        if len(runs) == 2:
            local.drop_connections()
        conn.execute(f"UPDATE {counter} SET value = 'c' WHERE id = 1")

    local.inject_server_unavailable(1)
    with dsql.create_pool(local.url, min_size=1, max_size=2) as pool:
        dsql.transaction(pool).run(body)
    (tx,) = otel.spans("dsql.transaction")
    outcomes = [
        attrs(s)["dsql.attempt.outcome"]
        for s in children(otel, tx, "dsql.transaction.attempt")
    ]
    assert outcomes == ["server_unavailable", "connection_lost", "committed"]
    assert otel.metrics("dsql.transaction.retries") == {
        frozenset({("dsql.retry.reason", "server_unavailable")}): 1,
        frozenset({("dsql.retry.reason", "connection_lost")}): 1,
    }


def test_a_commit_outcome_unknown(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    local.inject_commit_drops(1)

    def update(conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"UPDATE {counter} SET value = 'd' WHERE id = 1")

    with (
        dsql.create_pool(local.url, min_size=1, max_size=1) as pool,
        pytest.raises(dsql.CommitOutcomeUnknown),
    ):
        dsql.transaction(pool).run(update)
    (tx,) = otel.spans("dsql.transaction")
    (attempt_span,) = children(otel, tx, "dsql.transaction.attempt")
    assert attrs(attempt_span)["dsql.attempt.outcome"] == "commit_outcome_unknown"
    assert attrs(tx)["dsql.transaction.outcome"] == "commit_outcome_unknown"
    assert sum(otel.metrics("dsql.transaction.commit_outcome_unknown").values()) == 1


def test_a_body_that_rolls_back_and_a_loop_left_early(
    otel: Otel, local: DsqlLocal, counter: str
) -> None:
    with dsql.connect(local.url) as conn:
        for attempt in dsql.transaction(conn):
            with attempt as c:
                c.execute(f"UPDATE {counter} SET value = 'f' WHERE id = 1")
                raise psycopg.Rollback
        local.inject_conflicts(1)

        def leave_early() -> None:  # the mistake the warning is about
            for attempt in dsql.transaction(conn):
                with attempt as c:
                    c.execute(f"UPDATE {counter} SET value = 'g' WHERE id = 1")
                break

        with pytest.warns(RuntimeWarning, match="loop was left"):
            leave_early()
    rolled, left = otel.spans("dsql.transaction")
    assert attrs(rolled)["dsql.transaction.outcome"] == "rolled_back"
    assert attrs(left)["dsql.transaction.outcome"] == "abandoned"
    assert attrs(left)["dsql.transaction.attempts"] == 1


def test_retry_on_occ_traces_each_call(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    body = update_in_conflict(counter, local)

    @dsql.retry_on_occ(base_delay=0.01, jitter=0)
    def work(conn: psycopg.Connection[Any]) -> None:
        with dsql.transaction(conn) as c:
            body(c)

    with dsql.connect(local.url) as conn:
        work(conn)
    body.other.close()
    (tx,) = otel.spans("dsql.transaction")
    first, second = children(otel, tx, "dsql.transaction.attempt")
    assert attrs(first)["dsql.attempt.outcome"] == "conflict"
    assert attrs(second)["dsql.attempt.outcome"] == "committed"
    # The inner transaction() joined the retried call: no span of its own.
    assert len(otel.spans("dsql.transaction.attempt")) == 2


# -- pools -----------------------------------------------------------------------------


def test_pool_numbers_are_observed(
    otel: Otel, local: DsqlLocal, driver: Driver
) -> None:
    pool = driver.create_pool(local.url, min_size=2, max_size=3, name="otel-pool")
    name = ("db.client.connection.pool.name", "otel-pool")
    try:
        idle = frozenset({name, ("db.client.connection.state", "idle")})
        used = frozenset({name, ("db.client.connection.state", "used")})
        # The pool opens in the background: wait (30 s at most, a safety
        # net) until its two connections are idle; "used" counts those
        # being made too.
        deadline = time.monotonic() + 30
        while otel.gauge("db.client.connection.count").get(idle) != 2:
            assert time.monotonic() < deadline, otel.gauge("db.client.connection.count")
            time.sleep(0.05)
        conn = driver.getconn(pool, 30)
        try:
            count = otel.gauge("db.client.connection.count")
            assert (count[used], count[idle]) == (1, 1)
        finally:
            driver.putconn(pool, conn)
        assert otel.gauge("db.client.connection.max")[frozenset({name})] == 3
        pending = otel.gauge("db.client.connection.pending_requests")
        assert pending[frozenset({name})] == 0
        assert otel.gauge("dsql.pool.requests")[frozenset({name})] >= 1
    finally:
        driver.close_pool(pool)
    # A closed pool is no longer reported.
    assert frozenset({name}) not in otel.gauge("db.client.connection.max")


# -- queries, traced by opentelemetry-instrumentation-psycopg --------------------------


def test_query_spans_nest_under_the_attempt_they_ran_in(
    otel: Otel, local: DsqlLocal, counter: str, no_sleep: None
) -> None:
    from opentelemetry.instrumentation.psycopg import (  # noqa: PLC0415
        PsycopgInstrumentor,
    )

    # uninstrument() puts back psycopg.Connection.connect bound to
    # psycopg.Connection, which breaks every subclass: restore it ourselves.
    saved = {
        cls: cls.__dict__["connect"]
        for cls in (psycopg.Connection, psycopg.AsyncConnection)
    }
    instrumentor = PsycopgInstrumentor()
    instrumentor.instrument(skip_dep_check=True)
    try:
        body = update_in_conflict(counter, local)
        with dsql.create_pool(local.url, min_size=1, max_size=1) as pool:
            pool.wait(30)
            with pool.connection() as probe:
                assert isinstance(probe, dsql.DsqlConnection)
            dsql.transaction(pool, base_delay=0.01).run(body)
        body.other.close()
    finally:
        instrumentor.uninstrument()
        for cls, connect in saved.items():
            setattr(cls, "connect", connect)  # noqa: B010
    (tx,) = otel.spans("dsql.transaction")
    first, second = children(otel, tx, "dsql.transaction.attempt")
    for attempt_span in (first, second):
        queries = [
            s
            for s in otel.spans()
            if s.parent is not None
            and s.parent.span_id == attempt_span.context.span_id
            and s.name not in ("dsql.transaction.attempt",)
        ]
        statements = [attrs(q).get("db.statement", "") for q in queries]
        assert any(st.startswith("SELECT value FROM") for st in statements), statements
        assert any(st.startswith("UPDATE") for st in statements), statements
    assert_no_secrets(otel, SECRET_PARAMETER)


# -- nothing without the API -----------------------------------------------------------

BLOCKED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(name + " is blocked")

sys.meta_path.insert(0, Block())

import dsql_psycopg as dsql

url, table = sys.argv[1], sys.argv[2]
other = dsql.connect(url, autocommit=True)
with dsql.retry_testing(), dsql.create_pool(url, min_size=1, max_size=1) as pool:
    runs = []

    def body(conn):
        runs.append(1)
        conn.execute(f"SELECT value FROM {table} WHERE id = 1").fetchone()
        if len(runs) == 1:
            other.execute(f"UPDATE {table} SET value = 'x' WHERE id = 1")
        conn.execute(f"UPDATE {table} SET value = 'y' WHERE id = 1")

    dsql.transaction(pool).run(body)
    assert len(runs) == 2, runs
other.close()
assert not dsql.telemetry_enabled()
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("ok")
"""


def test_without_the_api_nothing_is_imported(local: DsqlLocal, counter: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKED), local.url, counter],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
