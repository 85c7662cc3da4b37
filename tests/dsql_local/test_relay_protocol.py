"""The relay as a protocol: bytes in, bytes out, no sockets, no PostgreSQL.

Each test plays the client and the backend: it feeds the `Relay` what they
would send and checks what the relay passes on to the other side.
"""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._faults import Faults
from dsql_local._policy import Session
from dsql_local._relay import OC000_MESSAGE, REFUSE_FUNCTION, Relay, Unit

pytest.importorskip("pglast")  # statement boundaries and guards need it


class _Host:
    """What a Relay reads from its endpoint; conflicts injected at will."""

    policy = None
    schema_clock = None
    holders = None

    def __init__(self) -> None:
        self.faults = Faults()
        self.conflicts: list[str] = []

    def take_conflict(self) -> str | None:
        return self.conflicts.pop(0) if self.conflicts else None

    def take_commit_drop(self) -> bool:
        return False


def _relay(host: _Host | None = None) -> Relay:
    return Relay(host or _Host(), Session(user="admin"), backend_pid=4242)


def _sent(buffer: bytearray) -> list[tuple[str, bytes]]:
    """Split what the relay queued into (kind, body) messages; clear it."""
    out, pos = [], 0
    while pos < len(buffer):
        size = int.from_bytes(buffer[pos + 1 : pos + 5], "big")
        out.append((chr(buffer[pos]), bytes(buffer[pos + 5 : pos + 1 + size])))
        pos += 1 + size
    buffer.clear()
    return out


def _queries(buffer: bytearray) -> list[str]:
    """The SQL of each Query (or Parse) the relay queued; clears it."""
    found = []
    for kind, body in _sent(buffer):
        if kind == "Q":
            found.append(body[:-1].decode())
        elif kind == "P":
            found.append(pq.cstring(body, pq.cstring(body, 0)[1])[0])
    return found


def _complete(tag: str) -> bytes:
    return pq.message(b"C", tag.encode() + b"\0")


def _error(sqlstate: str, message: str, context: str = "") -> bytes:
    fields = f"SERROR\0C{sqlstate}\0M{message}\0"
    if context:
        fields += f"W{context}\0"
    return pq.message(b"E", fields.encode() + b"\0")


def _lsn_row(lsn: str = "0/16B3748") -> bytes:
    value = lsn.encode()
    return pq.message(b"D", b"\0\1" + len(value).to_bytes(4, "big") + value)


_ROW_DESCRIPTION = pq.message(b"T", b"\0\0")  # its content is not read
_IDLE, _IN_TRANSACTION, _FAILED = (pq.ready_for_query(s) for s in (b"I", b"T", b"E"))


def _begin(relay: Relay) -> None:
    """A lone BEGIN, answered: the transaction is open."""
    relay.from_client(pq.query("BEGIN"))
    assert _queries(relay.to_backend) == [
        "BEGIN\n;SELECT pg_catalog.pg_current_wal_insert_lsn()"
    ]
    relay.from_backend(
        _complete("BEGIN")
        + _ROW_DESCRIPTION
        + _lsn_row()
        + _complete("SELECT 1")
        + _IN_TRANSACTION
    )
    # The snapshot's SELECT is hidden from the client.
    assert _sent(relay.to_client) == [("C", b"BEGIN\0"), ("Z", b"T")]


def test_unit_actions_are_a_typed_record() -> None:
    assert issubclass(Unit, int)
    action = Unit.SWALLOW | Unit.HIDE_READY
    assert Unit.SWALLOW in action
    assert Unit.GUARD not in action
    assert repr(action) == "<Unit.SWALLOW|HIDE_READY: 18>"


def test_a_query_and_its_answer_pass_unchanged() -> None:
    relay = _relay()
    query = pq.query("select 1")
    relay.from_client(query)
    assert bytes(relay.to_backend) == query
    answer = _ROW_DESCRIPTION + _lsn_row("1") + _complete("SELECT 1") + _IDLE
    relay.from_backend(answer)
    assert bytes(relay.to_client) == answer


def test_a_lone_begin_takes_the_snapshot_there() -> None:
    _begin(_relay())


def test_an_injected_conflict_fails_the_commit_and_leaves_the_client_idle() -> None:
    host = _Host()
    relay = _relay(host)
    _begin(relay)
    host.conflicts.append("OC000")
    relay.from_client(pq.query("COMMIT"))
    refuse, rollback = _queries(relay.to_backend)
    assert refuse.startswith(f"CALL {REFUSE_FUNCTION}('40001', ")
    assert rollback == "ROLLBACK"
    relay.from_backend(
        _error("40001", OC000_MESSAGE, f"PL/pgSQL function {REFUSE_FUNCTION}")
        + _FAILED
        + _complete("ROLLBACK")
        + _IDLE
    )
    (error, ready) = _sent(relay.to_client)
    assert error[0] == "E"
    assert pq.parse_fields(error[1])["M"] == OC000_MESSAGE
    assert ready == ("Z", b"I")


def test_a_function_call_is_refused_in_its_place() -> None:
    relay = _relay()
    relay.from_client(pq.message(b"F", b"\0\0\0\1" + b"\0\0" * 3))
    (refusal,) = _queries(relay.to_backend)
    assert refusal.startswith(f"CALL {REFUSE_FUNCTION}('0A000', ")


def _refused_update(relay: Relay) -> None:
    """An UPDATE in a transaction meets another transaction's row."""
    _begin(relay)
    relay.from_client(pq.query("update t set n = 1 where id = 1"))
    assert _queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "update t set n = 1 where id = 1",
    ]
    relay.from_backend(
        _complete("SAVEPOINT")
        + _IN_TRANSACTION
        + _error(
            "55P03",
            "canceling statement due to lock timeout",
            'while updating tuple (0,1) in relation "t"',
        )
        + _FAILED
    )
    # Nothing yet for the client: the write is undone, answered by a read.
    assert bytes(relay.to_client) == b""
    assert _queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT FROM t WHERE id = 1",
    ]
    relay.from_backend(
        _complete("ROLLBACK")
        + _IN_TRANSACTION
        + _ROW_DESCRIPTION
        + _complete("SELECT 1")
        + _IN_TRANSACTION
    )
    assert _sent(relay.to_client) == [("C", b"UPDATE 1\0"), ("Z", b"T")]


def test_a_refused_write_is_answered_then_replayed_before_its_commit() -> None:
    relay = _relay()
    _refused_update(relay)
    relay.from_client(pq.query("COMMIT"))
    assert _queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('t', '(0,1)')",
        "update t set n = 1 where id = 1",
        "COMMIT",
    ]
    # The pump then looks for the holders the replay waits for, once.
    assert relay.take_holder_lookup()
    assert not relay.take_holder_lookup()
    return_rows = _ROW_DESCRIPTION + _lsn_row("") + _complete("SELECT 1")
    relay.from_backend(
        _complete("SET")
        + _IN_TRANSACTION
        + return_rows
        + _IN_TRANSACTION
        + _complete("UPDATE 1")
        + _IN_TRANSACTION
        + _complete("COMMIT")
        + _IDLE
    )
    assert _sent(relay.to_client) == [("C", b"COMMIT\0"), ("Z", b"I")]


def test_a_replay_that_fails_fails_the_commit_with_oc000() -> None:
    relay = _relay()
    _refused_update(relay)
    relay.from_client(pq.query("COMMIT"))
    _sent(relay.to_backend)
    relay.from_backend(
        _complete("SET")
        + _IN_TRANSACTION
        + _error("40001", "the holder committed first")
        + _FAILED
        + _error("25P02", "current transaction is aborted")
        + _FAILED
        + _complete("ROLLBACK")  # PostgreSQL's answer to a failed COMMIT
        + _IDLE
    )
    (error, ready) = _sent(relay.to_client)
    fields = pq.parse_fields(error[1])
    assert (error[0], fields["C"], fields["M"]) == ("E", "40001", OC000_MESSAGE)
    assert ready == ("Z", b"I")


def test_a_transaction_gives_way_to_one_that_commits_first() -> None:
    relay = _relay()
    woken: list[bool] = []
    relay.set_waker(lambda: woken.append(True))
    _begin(relay)
    relay.give_way(relay.transaction)
    assert woken == [True]
    relay.woken()  # in the pump's thread
    assert _queries(relay.to_backend) == [
        "ROLLBACK",
        "BEGIN;SELECT pg_catalog.pg_current_wal_insert_lsn()",
    ]
    # What the client sends meanwhile waits.
    relay.from_client(pq.query("COMMIT"))
    assert relay.held > 0
    assert bytes(relay.to_backend) == b""
    relay.from_backend(
        _complete("ROLLBACK")
        + _IDLE
        + _complete("BEGIN")
        + _ROW_DESCRIPTION
        + _lsn_row()
        + _complete("SELECT 1")
        + _IN_TRANSACTION
    )
    assert bytes(relay.to_client) == b""  # all of it hidden
    # Then its COMMIT fails: the other transaction committed first.
    assert relay.held == 0
    refuse, rollback = _queries(relay.to_backend)
    assert refuse.startswith(f"CALL {REFUSE_FUNCTION}('40001', ")
    assert OC000_MESSAGE in refuse
    assert rollback == "ROLLBACK"


def test_giving_way_is_skipped_once_the_transaction_ended() -> None:
    relay = _relay()
    _begin(relay)
    asked = relay.transaction
    relay.from_client(pq.query("COMMIT"))
    _sent(relay.to_backend)
    relay.from_backend(_complete("COMMIT") + _IDLE)
    relay.give_way(asked)
    relay.woken()
    assert bytes(relay.to_backend) == b""


def _extended(sql: str, name: str = "") -> bytes:
    """Parse, Bind (one text parameter), Describe, Execute, Sync."""
    statement = name.encode() + b"\0"
    return (
        pq.message(b"P", statement + sql.encode() + b"\0\0\0")
        + pq.message(b"B", b"\0" + statement + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0")
        + pq.message(b"D", b"P\0")
        + pq.message(b"E", b"\0\0\0\0\0")
        + pq.message(b"S")
    )


@pytest.mark.parametrize("name", ["", "_pg3_0"])
def test_a_statement_parsed_and_run_in_one_sync_is_guarded(name: str) -> None:
    relay = _relay()
    _begin(relay)
    relay.from_client(_extended("update t set n = 2 where id = $1", name))
    sent = _sent(relay.to_backend)
    assert sent[0] == ("Q", b"SAVEPOINT dsql_local_write\0")
    assert [kind for kind, _ in sent[1:]] == ["P", "B", "D", "E", "S"]


def test_an_extended_write_is_replayed_with_its_parameters() -> None:
    relay = _relay()
    _begin(relay)
    relay.from_client(_extended("update t set n = 2 where id = $1"))
    _sent(relay.to_backend)
    relay.from_backend(
        _complete("SAVEPOINT")
        + _IN_TRANSACTION
        + pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + _error("55P03", "lock timeout", 'while updating tuple (0,7) in relation "t"')
        + _FAILED
    )
    _sent(relay.to_backend)
    relay.from_backend(
        _complete("ROLLBACK")
        + _IN_TRANSACTION
        + pq.message(b"3")
        + pq.message(b"1")
        + pq.message(b"2")
        + _complete("SELECT 1")
        + _IN_TRANSACTION
    )
    assert [kind for kind, _ in _sent(relay.to_client)] == ["1", "2", "n", "C", "Z"]
    relay.from_client(pq.query("COMMIT"))
    sent = _sent(relay.to_backend)
    kinds = [kind for kind, _ in sent]
    assert kinds == ["Q", "Q", "P", "B", "E", "S", "Q"]
    bind = sent[3][1]
    assert bind == b"\0\0" + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0"
