"""`_commit_gate`: each COMMIT judged before the backend runs it, without PostgreSQL."""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._messages import OC000_MESSAGE, REFUSE_FUNCTION
from dsql_local._policy import Refusal

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    ROW_DESCRIPTION,
    Host,
    Policy,
    begin,
    complete,
    extended,
    kinds,
    make_relay,
    messages,
    pg_error,
    queries,
    text_row,
)

pytest.importorskip("pglast")  # statement boundaries need it


def test_an_injected_conflict_fails_the_commit_and_leaves_the_client_idle() -> None:
    host = Host()
    relay = make_relay(host)
    begin(relay)
    host.conflicts.append("OC000")
    relay.from_client(pq.query("COMMIT"))
    refuse, rollback = queries(relay.to_backend)
    assert refuse.startswith(f"CALL {REFUSE_FUNCTION}('40001', ")
    assert rollback == "ROLLBACK"
    relay.from_backend(
        pg_error("40001", OC000_MESSAGE, f"PL/pgSQL function {REFUSE_FUNCTION}")
        + FAILED
        + complete("ROLLBACK")
        + IDLE
    )
    (error, ready) = messages(relay.to_client)
    assert error[0] == "E"
    assert pq.parse_fields(error[1])["M"] == OC000_MESSAGE
    assert ready == ("Z", b"I")


def _select_answer(tag: str = "SELECT 1") -> bytes:
    return ROW_DESCRIPTION + text_row("1") + complete(tag)


def test_a_query_holding_a_commit_runs_in_pieces_and_client_data_waits() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("select 1; commit; select 2"))
    assert queries(relay.to_backend) == ["select 1;"]
    relay.from_client(pq.query("select 3"))
    assert relay.held > 0  # until the last piece is sent
    relay.from_backend(_select_answer() + IN_TRANSACTION)
    assert queries(relay.to_backend) == [" commit;"]
    assert kinds(relay.to_client) == "TDC"  # its ReadyForQuery is hidden
    relay.from_backend(complete("COMMIT") + IDLE)
    assert queries(relay.to_backend) == [" select 2", "select 3"]
    assert relay.held == 0
    relay.from_backend(_select_answer() + IDLE)
    assert kinds(relay.to_client) == "CTDCZ"


def test_a_refused_commit_piece_ends_the_query() -> None:
    host = Host()
    relay = make_relay(host)
    begin(relay)
    relay.from_client(pq.query("select 1; commit; select 2"))
    queries(relay.to_backend)
    host.conflicts.append("OC000")
    relay.from_backend(_select_answer() + IN_TRANSACTION)
    refuse, rollback = queries(relay.to_backend)
    assert (refuse.startswith(f"CALL {REFUSE_FUNCTION}('40001', "), rollback) == (
        True,
        "ROLLBACK",
    )
    relay.from_backend(
        pg_error("40001", OC000_MESSAGE) + FAILED + complete("ROLLBACK") + IDLE
    )
    assert [kind for kind, _ in messages(relay.to_client)] == list("TDCEZ")
    assert bytes(relay.to_backend) == b""  # " select 2" is never sent


def test_a_piece_that_fails_skips_the_rest_as_postgresql_does() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("select 1/0; commit; select 2"))
    queries(relay.to_backend)
    relay.from_backend(pg_error("22012", "division by zero") + FAILED)
    assert bytes(relay.to_backend) == b""
    assert messages(relay.to_client) == [
        ("E", pg_error("22012", "division by zero")[5:]),
        ("Z", b"E"),
    ]


def test_a_commit_drop_closes_the_client_connection_once_committed() -> None:
    host = Host()
    host.commit_drops = 1
    relay = make_relay(host)
    begin(relay)
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == ["COMMIT"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert relay.dropping
    assert bytes(relay.to_client) == b""


@pytest.mark.parametrize("committed", [True, False])
def test_server_unavailable_at_commit(committed: bool) -> None:
    host = Host()
    host.faults.server_unavailable(0, 1, 0.0, committed)
    relay = make_relay(host)
    begin(relay)
    relay.from_client(pq.query("COMMIT"))
    if committed:
        # It commits; its CommandComplete becomes the error.
        assert queries(relay.to_backend) == ["COMMIT"]
        relay.from_backend(complete("COMMIT") + IDLE)
    else:
        refuse, rollback = queries(relay.to_backend)
        assert rollback == "ROLLBACK"
        assert "'XX000', 'server unavailable'" in refuse
        relay.from_backend(
            pg_error("XX000", "server unavailable")
            + FAILED
            + complete("ROLLBACK")
            + IDLE
        )
    (error, ready) = messages(relay.to_client)
    assert pq.parse_fields(error[1])["C"] == "XX000"
    assert ready == ("Z", b"I")


def test_a_commit_the_policy_refuses_in_the_extended_protocol() -> None:
    relay = make_relay(Host(Policy(commit_refusal=Refusal("40001", "judged"))))
    begin(relay)
    relay.from_client(extended("COMMIT"))
    sql = queries(relay.to_backend)
    assert sql[0] == f"CALL {REFUSE_FUNCTION}('40001', 'judged')"
    assert sql[1:] == ["ROLLBACK"]  # after the Sync
    relay.from_backend(
        pq.message(b"1")
        + pq.message(b"2")
        + pg_error("40001", "judged", f"PL/pgSQL function {REFUSE_FUNCTION}")
        + FAILED
        + complete("ROLLBACK")
        + IDLE
    )
    sent = messages(relay.to_client)
    assert [kind for kind, _ in sent] == list("12EZ")
    assert "W" not in pq.parse_fields(sent[2][1])  # its context is dropped
    assert sent[3] == ("Z", b"I")  # idle, as DSQL leaves it
