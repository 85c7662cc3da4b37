"""The relay as a protocol: bytes in, bytes out, no sockets, no PostgreSQL.

Each test plays the client and the backend: it feeds the `Relay` what they
would send and checks what the relay passes on to the other side.
"""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._messages import REFUSE_FUNCTION
from dsql_local._units import Unit

from .relay_wire import (
    IDLE,
    ROW_DESCRIPTION,
    begin,
    complete,
    make_relay,
    queries,
    text_row,
)

pytest.importorskip("pglast")  # statement boundaries and guards need it


def test_unit_actions_are_a_typed_record() -> None:
    assert issubclass(Unit, int)
    action = Unit.SWALLOW | Unit.HIDE_READY
    assert Unit.SWALLOW in action
    assert Unit.GUARD not in action
    assert repr(action) == "<Unit.SWALLOW|HIDE_READY: 18>"


def test_a_query_and_its_answer_pass_unchanged() -> None:
    relay = make_relay()
    query = pq.query("select 1")
    relay.from_client(query)
    assert bytes(relay.to_backend) == query
    answer = ROW_DESCRIPTION + text_row("1") + complete("SELECT 1") + IDLE
    relay.from_backend(answer)
    assert bytes(relay.to_client) == answer


def test_a_lone_begin_takes_the_snapshot_there() -> None:
    begin(make_relay())


def test_a_function_call_is_refused_in_its_place() -> None:
    relay = make_relay()
    relay.from_client(pq.message(b"F", b"\0\0\0\1" + b"\0\0" * 3))
    (refusal,) = queries(relay.to_backend)
    assert refusal.startswith(f"CALL {REFUSE_FUNCTION}('0A000', ")
