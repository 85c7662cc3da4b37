"""`_hidden`: statements run in a hidden transaction, without PostgreSQL.

The policy asks for it (`Session.run_in_transaction`) for a statement sent
in autocommit, so that check_commit judges it before it commits.
"""

from __future__ import annotations

from dsql_local import _protocol as pq
from dsql_local._policy import Refusal
from dsql_local._relay import Relay

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    SNAPSHOT_SQL,
    Host,
    Policy,
    complete,
    extended,
    kinds,
    make_relay,
    messages,
    pg_error,
    queries,
    snapshot,
)

_INSERT = "insert into t values (1)"


def _wrapped(policy: Policy, message: bytes | None = None) -> Relay:
    """The INSERT sent in autocommit, run in a hidden transaction, answered."""
    policy.wrapped.add(_INSERT)
    relay = make_relay(Host(policy))
    relay.from_client(message or pq.query(_INSERT))
    assert queries(relay.to_backend) == [f"BEGIN;{SNAPSHOT_SQL}", _INSERT]
    relay.from_backend(snapshot() + IN_TRANSACTION)
    assert bytes(relay.to_client) == b""  # the hidden BEGIN's answer
    return relay


def test_its_tag_is_confirmed_once_the_hidden_commit_succeeded() -> None:
    relay = _wrapped(Policy())
    relay.from_client(pq.query("select 1"))
    assert relay.held > 0  # other client data waits for the statement's end
    relay.from_backend(complete("INSERT 0 1") + IN_TRANSACTION)
    # then follows the hidden COMMIT
    assert queries(relay.to_backend) == ["COMMIT", "select 1"]
    assert (relay.held, bytes(relay.to_client)) == (0, b"")  # its tag waits
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("C", b"INSERT 0 1\0"), ("Z", b"I")]


def test_a_commit_the_policy_refuses_fails_the_statement() -> None:
    relay = _wrapped(Policy(commit_refusal=Refusal("40001", "judged")))
    relay.from_backend(complete("INSERT 0 1") + IN_TRANSACTION)
    refuse, rollback = queries(relay.to_backend)
    assert (refuse, rollback) == (
        "CALL dsql_local.refuse('40001', 'judged')",
        "ROLLBACK",
    )
    relay.from_backend(
        pg_error("40001", "judged", "PL/pgSQL function dsql_local.refuse")
        + FAILED
        + complete("ROLLBACK")
        + IDLE
    )
    sent = messages(relay.to_client)
    assert [kind for kind, _ in sent] == ["E", "Z"]  # no INSERT tag
    assert pq.parse_fields(sent[0][1])["M"] == "judged"
    assert sent[1] == ("Z", b"I")


def test_a_statement_that_fails_is_rolled_back_unseen() -> None:
    relay = _wrapped(Policy())
    relay.from_backend(pg_error("23505", "duplicate key") + FAILED)
    assert queries(relay.to_backend) == ["ROLLBACK"]
    relay.from_backend(complete("ROLLBACK") + IDLE)
    assert messages(relay.to_client) == [
        ("E", pg_error("23505", "duplicate key")[5:]),
        ("Z", b"I"),
    ]


def test_the_extended_protocol_is_wrapped_at_its_parse_and_sync() -> None:
    relay = _wrapped(Policy(), extended(_INSERT))
    relay.from_backend(
        pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + complete("INSERT 0 1")
        + IN_TRANSACTION
    )
    assert queries(relay.to_backend) == ["COMMIT"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert kinds(relay.to_client) == "12nCZ"


def test_a_statement_in_a_transaction_is_not_wrapped() -> None:
    policy = Policy(wrapped={_INSERT})
    relay = make_relay(Host(policy))
    relay.from_client(pq.query("BEGIN"))
    messages(relay.to_backend)
    relay.from_backend(snapshot() + IN_TRANSACTION)
    messages(relay.to_client)
    relay.from_client(pq.query("select 1"))
    assert queries(relay.to_backend) == ["select 1"]


def test_a_statement_that_meets_a_held_row_runs_again_as_its_holders_give_way() -> None:
    relay = _wrapped(Policy())
    relay.from_backend(
        pg_error(
            "55P03",
            "canceling statement due to lock timeout",
            'while inserting index tuple (0,3) in relation "t"',
        )
        + FAILED
    )
    assert bytes(relay.to_client) == b""  # it is not the statement's end
    # Undone; run again in a new hidden transaction, waiting for its holders,
    # which the pump then makes give way (see `_yield`), once.
    assert queries(relay.to_backend) == [
        "ROLLBACK",
        f"BEGIN;{SNAPSHOT_SQL}",
        "SET LOCAL lock_timeout = '2s'",
        _INSERT,
    ]
    assert relay.take_holder_lookup()
    assert not relay.take_holder_lookup()
    relay.from_backend(
        complete("ROLLBACK")
        + IDLE
        + snapshot()
        + IN_TRANSACTION
        + complete("SET")
        + IN_TRANSACTION
        + complete("INSERT 0 1")
        + IN_TRANSACTION
    )
    assert queries(relay.to_backend) == ["COMMIT"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("C", b"INSERT 0 1\0"), ("Z", b"I")]


def test_a_statement_runs_again_once_and_with_its_parameters() -> None:
    message = extended(_INSERT)
    relay = _wrapped(Policy(), message)
    held = 'while updating tuple (0,1) in relation "t"'
    relay.from_backend(
        pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + pg_error("55P03", "lock timeout", held)
        + FAILED
    )
    assert kinds(relay.to_client) == "12n"  # the client's Parse, Bind, Describe
    sent = messages(relay.to_backend)
    assert [kind for kind, _ in sent] == ["Q", "Q", "Q", "P", "B", "E", "S"]
    bind = sent[4][1]
    assert bind == b"\0\0" + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0"
    relay.from_backend(
        complete("ROLLBACK")
        + IDLE
        + snapshot()
        + IN_TRANSACTION
        + complete("SET")
        + IN_TRANSACTION
        + pq.message(b"1")  # the relay's own Parse and Bind: hidden
        + pq.message(b"2")
        + pg_error("55P03", "lock timeout", held)
        + FAILED
    )
    # Not again: the statement fails, as DSQL's later committer would.
    (error,) = [body for kind, body in messages(relay.to_client) if kind == "E"]
    assert pq.parse_fields(error)["C"] == "40001"
    assert queries(relay.to_backend) == ["ROLLBACK"]
