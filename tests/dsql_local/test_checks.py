"""`_checks`: every client statement's check, and the session, without PostgreSQL."""

from __future__ import annotations

from dsql_local import _protocol as pq
from dsql_local._schema import OC001_MESSAGE, SchemaClock

from .relay_wire import (
    IDLE,
    IN_TRANSACTION,
    Host,
    Policy,
    begin,
    complete,
    make_relay,
    messages,
    queries,
    snapshot,
)


def test_an_injected_server_unavailable_replaces_a_statement_not_begin() -> None:
    host = Host()
    host.faults.server_unavailable(1, 0, 0.0, None)
    relay = make_relay(host)
    begin(relay)  # transaction control never fails
    relay.from_client(pq.query("select 1"))
    assert queries(relay.to_backend) == [
        "CALL dsql_local.refuse('XX000', 'server unavailable')"
    ]
    relay.from_client(pq.query("select 2"))
    assert queries(relay.to_backend) == ["select 2"]  # one was injected


def test_a_schema_change_committed_elsewhere_makes_the_transaction_stale() -> None:
    host = Host(schema_clock=SchemaClock())
    relay = make_relay(host)
    other = make_relay(host)
    begin(relay)
    other.from_client(pq.query("create table u (id int)"))
    other.from_backend(complete("CREATE TABLE") + IDLE)  # it commits: the clock ticks
    relay.from_client(pq.query("select 1"))
    (refusal,) = queries(relay.to_backend)
    assert OC001_MESSAGE.replace("'", "''") in refusal
    relay.from_backend(complete("ROLLBACK") + IDLE)
    messages(relay.to_client)
    relay.from_client(pq.query("select 1"))  # a new transaction sees the change
    assert queries(relay.to_backend) == ["select 1"]


def test_the_session_the_policy_sees_follows_the_transaction_status() -> None:
    relay = make_relay(Host(Policy()))
    session = relay.session
    relay.from_client(pq.query("BEGIN"))
    messages(relay.to_backend)
    assert (session.in_transaction, session.transaction_started_at) == (False, None)
    relay.from_backend(snapshot() + IN_TRANSACTION)
    started = session.transaction_started_at
    assert session.in_transaction
    assert started is not None
    session.scratch["seen"] = 1
    relay.from_client(pq.query("COMMIT"))
    relay.from_backend(complete("COMMIT") + IDLE)
    assert (session.in_transaction, session.transaction_started_at) == (False, None)
    assert session.scratch == {}
