"""`_copy`: a COPY FROM STDIN in a hidden transaction, without PostgreSQL."""

from __future__ import annotations

from dsql_local import _protocol as pq
from dsql_local._copy import is_copy

from .relay_wire import (
    IDLE,
    IN_TRANSACTION,
    SNAPSHOT_SQL,
    Host,
    Policy,
    complete,
    kinds,
    make_relay,
    queries,
    snapshot,
)

_COPY = "copy t from stdin"
_COPY_IN_RESPONSE = pq.message(b"G", b"\0\0\0")


def test_its_data_passes_while_its_hidden_commit_waits() -> None:
    relay = make_relay(Host(Policy(wrapped={_COPY})))
    relay.from_client(pq.query(_COPY))
    assert queries(relay.to_backend) == [f"BEGIN;{SNAPSHOT_SQL}", _COPY]
    data = pq.message(b"d", b"1\n")
    relay.from_client(data)
    assert relay.held == len(data)  # before the backend asks for it
    relay.from_backend(snapshot() + IN_TRANSACTION + _COPY_IN_RESPONSE)
    assert (relay.held, bytes(relay.to_backend)) == (0, data)
    relay.to_backend.clear()
    done = pq.message(b"c")
    after = pq.query("select 1")
    relay.from_client(data + done + after)
    # The data passes; what follows CopyDone waits for the COPY's end.
    assert bytes(relay.to_backend) == data + done
    assert relay.held == len(after)
    relay.to_backend.clear()
    relay.from_backend(complete("COPY 2") + IN_TRANSACTION)
    assert queries(relay.to_backend) == ["COMMIT", "select 1"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert kinds(relay.to_client) == "GCZ"


def test_copy_statements_are_told_apart() -> None:
    assert is_copy("  COPY t FROM STDIN")
    assert not is_copy("copyright")
    assert not is_copy("select 'copy'")
