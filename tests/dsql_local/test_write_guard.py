"""`_write_guard`: writes that meet another transaction's rows, without PostgreSQL.

Each test plays the client and the backend around a `Relay`: a write that
PostgreSQL refuses for another transaction's sake is answered by a read,
replayed before its COMMIT, and a transaction gives way to one that commits
first.
"""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._messages import OC000_MESSAGE, REFUSE_FUNCTION
from dsql_local._relay import Relay

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    ROW_DESCRIPTION,
    SAVEPOINT_ANSWERS,
    SAVEPOINT_STEPS,
    begin,
    complete,
    extended,
    make_relay,
    messages,
    pg_error,
    queries,
    text_row,
)

pytest.importorskip("pglast")  # guards need it


def _refused_update(relay: Relay, *, begun: bool = False) -> None:
    """An UPDATE in a transaction meets another transaction's row."""
    if not begun:
        begin(relay)
    relay.from_client(pq.query("update t set n = 1 where id = 1"))
    assert queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "update t set n = 1 where id = 1",
    ]
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error(
            "55P03",
            "canceling statement due to lock timeout",
            'while updating tuple (0,1) in relation "t"',
        )
        + FAILED
    )
    # Nothing yet for the client: the write is undone, answered by a read.
    assert bytes(relay.to_client) == b""
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT FROM t WHERE id = 1",
    ]
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + complete("SELECT 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [("C", b"UPDATE 1\0"), ("Z", b"T")]


def test_a_refused_write_is_answered_then_replayed_before_its_commit() -> None:
    relay = make_relay()
    _refused_update(relay)
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('t', '(0,1)')",
        "update t set n = 1 where id = 1",
        "COMMIT",
    ]
    # The pump then looks for the holders the replay waits for, once.
    assert relay.take_holder_lookup()
    assert not relay.take_holder_lookup()
    return_rows = ROW_DESCRIPTION + text_row("") + complete("SELECT 1")
    relay.from_backend(
        complete("SET")
        + IN_TRANSACTION
        + return_rows
        + IN_TRANSACTION
        + complete("UPDATE 1")
        + IN_TRANSACTION
        + complete("COMMIT")
        + IDLE
    )
    assert messages(relay.to_client) == [("C", b"COMMIT\0"), ("Z", b"I")]


def test_a_replay_that_fails_fails_the_commit_with_oc000() -> None:
    relay = make_relay()
    _refused_update(relay)
    relay.from_client(pq.query("COMMIT"))
    messages(relay.to_backend)
    relay.from_backend(
        complete("SET")
        + IN_TRANSACTION
        + pg_error("40001", "the holder committed first")
        + FAILED
        + pg_error("25P02", "current transaction is aborted")
        + FAILED
        + complete("ROLLBACK")  # PostgreSQL's answer to a failed COMMIT
        + IDLE
    )
    (error, ready) = messages(relay.to_client)
    fields = pq.parse_fields(error[1])
    assert (error[0], fields["C"], fields["M"]) == ("E", "40001", OC000_MESSAGE)
    assert ready == ("Z", b"I")


def test_a_transaction_gives_way_to_one_that_commits_first() -> None:
    relay = make_relay()
    woken: list[bool] = []
    relay.set_waker(lambda: woken.append(True))
    begin(relay)
    relay.give_way(relay.transaction)
    assert woken == [True]
    relay.woken()  # in the pump's thread
    assert queries(relay.to_backend) == [
        "ROLLBACK",
        "BEGIN;SELECT pg_catalog.pg_current_wal_insert_lsn()",
    ]
    # What the client sends meanwhile waits.
    relay.from_client(pq.query("COMMIT"))
    assert relay.held > 0
    assert bytes(relay.to_backend) == b""
    relay.from_backend(
        complete("ROLLBACK")
        + IDLE
        + complete("BEGIN")
        + ROW_DESCRIPTION
        + text_row("0/16B3748")
        + complete("SELECT 1")
        + IN_TRANSACTION
    )
    assert bytes(relay.to_client) == b""  # all of it hidden
    # Then its COMMIT fails: the other transaction committed first.
    assert relay.held == 0
    refuse, rollback = queries(relay.to_backend)
    assert refuse.startswith(f"CALL {REFUSE_FUNCTION}('40001', ")
    assert OC000_MESSAGE in refuse
    assert rollback == "ROLLBACK"


def test_giving_way_is_skipped_once_the_transaction_ended() -> None:
    relay = make_relay()
    begin(relay)
    asked = relay.transaction
    relay.from_client(pq.query("COMMIT"))
    messages(relay.to_backend)
    relay.from_backend(complete("COMMIT") + IDLE)
    relay.give_way(asked)
    relay.woken()
    assert bytes(relay.to_backend) == b""


@pytest.mark.parametrize("name", ["", "_pg3_0"])
def test_a_statement_parsed_and_run_in_one_sync_is_guarded(name: str) -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(extended("update t set n = 2 where id = $1", name))
    sent = messages(relay.to_backend)
    # The savepoint's steps open the write's unit: one Sync, one answer.
    kinds = [kind for kind, _ in sent]
    assert kinds == [*SAVEPOINT_STEPS, "P", "B", "D", "E", "S"]
    assert sent[2][1] == b"dsql_local_write\0SAVEPOINT dsql_local_write\0\0\0"


def test_a_guarded_extended_write_is_answered_without_its_savepoint() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(extended("update t set n = 2 where id = $1"))
    messages(relay.to_backend)
    relay.from_backend(
        SAVEPOINT_ANSWERS
        + pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + complete("UPDATE 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [
        ("1", b""),
        ("2", b""),
        ("n", b""),
        ("C", b"UPDATE 1\0"),
        ("Z", b"T"),
    ]


def test_a_notice_among_the_savepoint_s_answers_reaches_the_client() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(extended("update t set n = 2 where id = $1"))
    messages(relay.to_backend)
    notice = pq.message(b"N", b"SDEBUG\0C00000\0Mbind\0\0")
    relay.from_backend(
        pq.message(b"3")
        + pq.message(b"3")
        + notice
        + pq.message(b"1")
        + pq.message(b"2")
        + complete("SAVEPOINT")
        + pq.message(b"2")
        + pq.message(b"n")
        + complete("UPDATE 1")
        + IN_TRANSACTION
    )
    kinds = [kind for kind, _ in messages(relay.to_client)]
    assert kinds == ["N", "2", "n", "C", "Z"]


def test_a_failing_savepoint_s_error_reaches_the_client() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(extended("update t set n = 2 where id = $1"))
    messages(relay.to_backend)
    # The backend skips the rest of the unit, the client's write too.
    relay.from_backend(pg_error("53200", "out of shared memory") + FAILED)
    sent = messages(relay.to_client)
    assert [kind for kind, _ in sent] == ["E", "Z"]
    assert pq.parse_fields(sent[0][1])["C"] == "53200"
    assert bytes(relay.to_backend) == b""


def test_an_extended_write_is_replayed_with_its_parameters() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(extended("update t set n = 2 where id = $1"))
    messages(relay.to_backend)
    relay.from_backend(
        SAVEPOINT_ANSWERS
        + pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + pg_error(
            "55P03", "lock timeout", 'while updating tuple (0,7) in relation "t"'
        )
        + FAILED
    )
    messages(relay.to_backend)
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + pq.message(b"3")
        + pq.message(b"1")
        + pq.message(b"2")
        + complete("SELECT 1")
        + IN_TRANSACTION
    )
    assert [kind for kind, _ in messages(relay.to_client)] == ["1", "2", "n", "C", "Z"]
    relay.from_client(pq.query("COMMIT"))
    sent = messages(relay.to_backend)
    kinds = [kind for kind, _ in sent]
    assert kinds == ["Q", "Q", "P", "B", "E", "S", "Q"]
    bind = sent[3][1]
    assert bind == b"\0\0" + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0"


def test_a_guarded_write_that_stands_is_answered_at_its_end() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("delete from t where id = 1"))
    queries(relay.to_backend)
    relay.from_client(pq.query("select 1"))
    assert relay.held > 0  # until the write's answer is known
    relay.from_backend(complete("SAVEPOINT") + IN_TRANSACTION + complete("DELETE 1"))
    assert bytes(relay.to_client) == b""
    relay.from_backend(IN_TRANSACTION)
    assert messages(relay.to_client) == [("C", b"DELETE 1\0"), ("Z", b"T")]
    assert queries(relay.to_backend) == ["select 1"]


def test_a_guarded_write_s_own_error_passes() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("delete from t where id = 1"))
    queries(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error("23503", "violates foreign key constraint")
        + FAILED
    )
    sent = messages(relay.to_client)
    assert [kind for kind, _ in sent] == ["E", "Z"]
    assert pq.parse_fields(sent[0][1])["C"] == "23503"
    assert bytes(relay.to_backend) == b""  # nothing undone, nothing replayed


def test_a_write_refused_without_a_row_named_dooms_its_commit() -> None:
    relay = make_relay()
    begin(relay)
    _refused_without_a_row(relay)
    relay.from_client(pq.query("COMMIT"))
    refuse, rollback = queries(relay.to_backend)
    assert OC000_MESSAGE in refuse
    assert rollback == "ROLLBACK"


def test_a_refused_insert_returning_is_answered_by_a_clone_then_inserted() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("insert into s.t (name) values ('a') returning id"))
    assert queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "insert into s.t (name) values ('a') returning id",
    ]
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error(
            "55P03",
            "canceling statement due to lock timeout",
            'while inserting index tuple (0,2) in relation "t_name_key"',
        )
        + FAILED
    )
    assert bytes(relay.to_client) == b""
    # Undone; the same INSERT runs into an empty clone of the table.
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT dsql_local.clone_for_insert('s.t'::regclass, 0)",
        "INSERT INTO pg_temp.dsql_local_rows_0 AS t (name) VALUES ('a') RETURNING id",
    ]
    row = pq.message(b"D", b"\0\1\0\0\0\0017")
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + pq.message(b"D", b"\0\1\0\0\0\0")  # the clone function's void
        + complete("SELECT 1")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + row
        + complete("INSERT 0 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [
        ("T", b"\0\0"),
        ("D", b"\0\1\0\0\0\0017"),
        ("C", b"INSERT 0 1\0"),
        ("Z", b"T"),
    ]
    # Right before the COMMIT, the clone's rows go into the table.
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.insert_rows('s.t'::regclass, 0)",
        "COMMIT",
    ]


def test_a_refused_update_returning_star_is_answered_in_a_clone() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("update t set n = 1 returning *"))
    queries(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error(
            "55P03", "lock timeout", 'while updating tuple (0,1) in relation "t"'
        )
        + FAILED
    )
    # Its rows go into a clone, where the same UPDATE runs.
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT dsql_local.clone_for_insert('t'::regclass, 1, true)",
        "INSERT INTO pg_temp.dsql_local_rows_1 SELECT t.* FROM t",
        "UPDATE pg_temp.dsql_local_rows_1 AS t SET n = 1 RETURNING *",
    ]
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("")
        + complete("SELECT 1")
        + IN_TRANSACTION
        + complete("INSERT 0 1")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("1")
        + complete("UPDATE 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [
        ("T", b"\0\0"),
        ("D", b"\0\1\0\0\0\0011"),
        ("C", b"UPDATE 1\0"),
        ("Z", b"T"),
    ]
    # Before the COMMIT: the holder's check, the UPDATE itself, the clone gone.
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('t', '(0,1)')",
        "update t set n = 1 returning *",
        "DROP TABLE IF EXISTS pg_temp.dsql_local_rows_1",
        "COMMIT",
    ]


def test_a_refused_upsert_is_answered_in_a_clone_holding_the_table_s_rows() -> None:
    relay = make_relay()
    begin(relay)
    upsert = (
        "insert into t values (1, 5) on conflict (id)"
        " do update set n = t.n + excluded.n returning n"
    )
    relay.from_client(pq.query(upsert))
    assert queries(relay.to_backend) == ["SAVEPOINT dsql_local_write", upsert]
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error(
            "55P03",
            "canceling statement due to lock timeout",
            'while locking tuple (0,1) in relation "t"',
        )
        + FAILED
    )
    assert bytes(relay.to_client) == b""
    # Undone; the same upsert runs in a clone holding the snapshot's rows.
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT dsql_local.clone_for_upsert('t'::regclass, 1)",
        "INSERT INTO pg_temp.dsql_local_rows_1 AS t VALUES (1, 5) ON CONFLICT (id)"
        " DO UPDATE SET n = t.n + excluded.n RETURNING n",
    ]
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("")  # the clone function's void
        + complete("SELECT 1")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("5")
        + complete("INSERT 0 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [
        ("T", b"\0\0"),
        ("D", b"\0\1\0\0\0\0015"),
        ("C", b"INSERT 0 1\0"),
        ("Z", b"T"),
    ]
    # Before the COMMIT: the holder's check, then what it wrote in the clone.
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('t', '(0,1)')",
        "SELECT dsql_local.upsert_rows('t'::regclass, 1, ARRAY['n']::text[])",
        "COMMIT",
    ]
    relay.from_backend(
        complete("SET")
        + IN_TRANSACTION
        + pg_error("40001", "could not serialize access due to concurrent update")
        + FAILED
        + pg_error("25P02", "current transaction is aborted")
        + FAILED
        + complete("ROLLBACK")
        + IDLE
    )
    (error, ready) = messages(relay.to_client)
    assert pq.parse_fields(error[1])["M"] == OC000_MESSAGE
    assert ready == ("Z", b"I")


def test_a_refused_statement_of_two_writes_gets_a_clone_for_each() -> None:
    relay = make_relay()
    begin(relay)
    move = (
        "with d as (delete from q where id = 1 returning id)"
        " insert into a select id from d"
    )
    relay.from_client(pq.query(move))
    queries(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error(
            "55P03", "lock timeout", 'while deleting tuple (0,1) in relation "q"'
        )
        + FAILED
    )
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT dsql_local.clone_for_insert('q'::regclass, 1, true)",
        "INSERT INTO pg_temp.dsql_local_rows_1 SELECT q.* FROM q WHERE id = 1",
        "SELECT dsql_local.clone_for_insert('a'::regclass, 2)",
        "WITH d AS (DELETE FROM pg_temp.dsql_local_rows_1 AS q WHERE id = 1"
        " RETURNING id) INSERT INTO pg_temp.dsql_local_rows_2 AS a SELECT id FROM d",
    ]
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("")
        + complete("SELECT 1")
        + IN_TRANSACTION
        + complete("INSERT 0 1")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + text_row("")
        + complete("SELECT 1")
        + IN_TRANSACTION
        + complete("INSERT 0 1")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [("C", b"INSERT 0 1\0"), ("Z", b"T")]
    # Before the COMMIT: the DELETE alone, its clone dropped, the rows moved.
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('q', '(0,1)')",
        "DELETE FROM q WHERE id = 1",
        "DROP TABLE IF EXISTS pg_temp.dsql_local_rows_1",
        "SELECT dsql_local.insert_rows('a'::regclass, 2)",
        "COMMIT",
    ]


def _client_command(relay: Relay, sql: str, tag: str) -> None:
    """A statement of the client's that passes as it is, and its answer."""
    relay.from_client(pq.query(sql))
    assert queries(relay.to_backend) == [sql]
    relay.from_backend(complete(tag) + IN_TRANSACTION)
    assert messages(relay.to_client) == [("C", tag.encode() + b"\0"), ("Z", b"T")]


def _refused_without_a_row(relay: Relay) -> None:
    """A DELETE refused with no row named: the transaction is doomed."""
    relay.from_client(pq.query("delete from t where id = 1"))
    queries(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT")
        + IN_TRANSACTION
        + pg_error("40001", "could not serialize access due to concurrent update")
        + FAILED
    )
    # Undone, and answered by a read; nothing to replay but the doom.
    assert queries(relay.to_backend) == [
        "ROLLBACK TO SAVEPOINT dsql_local_write",
        "SELECT FROM t WHERE id = 1",
    ]
    relay.from_backend(
        complete("ROLLBACK")
        + IN_TRANSACTION
        + ROW_DESCRIPTION
        + complete("SELECT 0")
        + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [("C", b"DELETE 0\0"), ("Z", b"T")]


@pytest.mark.parametrize(
    ("set_it", "back_to"),
    [
        ("SAVEPOINT a", "ROLLBACK TO SAVEPOINT a"),
        ('savepoint "A b"', 'rollback work to "A b"'),
        ("SAVEPOINT A", "rollback transaction to savepoint a"),
    ],
)
def test_a_rollback_to_a_savepoint_drops_the_replays_since(
    set_it: str, back_to: str
) -> None:
    relay = make_relay()
    begin(relay)
    _client_command(relay, set_it, "SAVEPOINT")
    _refused_update(relay, begun=True)
    _refused_without_a_row(relay)
    _client_command(relay, back_to, "ROLLBACK")
    relay.from_client(pq.query("COMMIT"))
    # Neither replayed nor doomed: the COMMIT goes as it is.
    assert queries(relay.to_backend) == ["COMMIT"]


def test_replays_before_a_savepoint_and_released_ones_stay() -> None:
    relay = make_relay()
    begin(relay)
    _refused_update(relay, begun=True)
    _client_command(relay, "SAVEPOINT a", "SAVEPOINT")
    _client_command(relay, "SAVEPOINT b", "SAVEPOINT")
    _refused_without_a_row(relay)
    _client_command(relay, "RELEASE SAVEPOINT b", "RELEASE")
    _client_command(relay, "ROLLBACK TO SAVEPOINT b", "ROLLBACK")  # gone: no effect
    relay.from_client(pq.query("COMMIT"))
    refuse, rollback = queries(relay.to_backend)
    assert OC000_MESSAGE in refuse  # still doomed
    assert rollback == "ROLLBACK"
    relay.from_backend(pg_error("40001", OC000_MESSAGE) + FAILED)
    relay.from_backend(complete("ROLLBACK") + IDLE)
    messages(relay.to_client)
    # Rolled back to `a` in the next transaction: what is before it stays.
    begin(relay)
    _refused_update(relay, begun=True)
    _client_command(relay, "SAVEPOINT a", "SAVEPOINT")
    _client_command(relay, "ROLLBACK TO SAVEPOINT a", "ROLLBACK")
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [
        "SET LOCAL lock_timeout = '2s'",
        "SELECT dsql_local.check_holder('t', '(0,1)')",
        "update t set n = 1 where id = 1",
        "COMMIT",
    ]
