"""`_split`: several statements in one unit run one at a time, without PostgreSQL.

Each test plays the client and the backend around a `Relay`: in a
transaction block, a query text of several statements runs one Query per
statement, and a pipeline's statement followed by more gets a hidden Sync
of its own, so that each statement can be guarded.
"""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._split import executes_next, nothing_next, sync_follows

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    ROW_DESCRIPTION,
    SAVEPOINT_ANSWERS,
    SAVEPOINT_STEPS,
    SNAPSHOT_SQL,
    begin,
    complete,
    extended,
    make_relay,
    messages,
    pg_error,
    queries,
    snapshot,
)

pytest.importorskip("pglast")  # statement boundaries and guards need it

_FLUSH = pq.message(b"H")


def test_what_follows_a_message_is_read_from_the_client_data() -> None:
    unit = extended("select $1")
    parse_end = 1 + int.from_bytes(unit[1:5], "big")
    view = memoryview(unit)
    assert executes_next(view, parse_end)
    assert not sync_follows(view, parse_end)
    execute_end = len(unit) - 5
    assert sync_follows(
        memoryview(unit[:execute_end] + _FLUSH + unit[-5:]), execute_end
    )
    assert not sync_follows(view[:execute_end], execute_end)  # not in yet
    assert nothing_next(memoryview(unit[:parse_end] + _FLUSH), parse_end)
    assert not nothing_next(view, parse_end)


def test_a_query_of_several_statements_runs_one_statement_at_a_time() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("select 1; update t set n = 1 where id = 1"))
    # In a transaction block: the first statement alone; the client's next
    # data waits.
    assert queries(relay.to_backend) == ["select 1"]
    relay.from_client(pq.query("select 2"))
    assert bytes(relay.to_backend) == b""
    relay.from_backend(ROW_DESCRIPTION + complete("SELECT 1") + IN_TRANSACTION)
    assert messages(relay.to_client) == [("T", b"\0\0"), ("C", b"SELECT 1\0")]
    # The next one, guarded as any write.
    assert queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "update t set n = 1 where id = 1",
    ]
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + complete("UPDATE 1") + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [("C", b"UPDATE 1\0"), ("Z", b"T")]
    assert queries(relay.to_backend) == ["select 2"]


def test_an_error_in_a_split_query_ends_the_rest() -> None:
    relay = make_relay()
    begin(relay)
    relay.from_client(pq.query("select 1/0; update t set n = 1 where id = 1"))
    assert queries(relay.to_backend) == ["select 1/0"]
    relay.from_backend(pg_error("22012", "division by zero") + FAILED)
    assert [kind for kind, _ in messages(relay.to_client)] == ["E", "Z"]
    assert bytes(relay.to_backend) == b""


def test_a_pipeline_statement_followed_by_more_gets_a_sync_of_its_own() -> None:
    relay = make_relay()
    begin(relay)
    first = "update t set n = 2 where id = $1"
    pipeline = extended(first)[:-5] + extended("update t set n = 3 where id = $1")
    relay.from_client(pipeline)
    sent = messages(relay.to_backend)
    kinds = [kind for kind, _ in sent]
    # A hidden Sync after the first Execute; the rest waits for its answer.
    assert kinds == [*SAVEPOINT_STEPS, "P", "B", "D", "E", "S"]
    relay.from_backend(
        SAVEPOINT_ANSWERS
        + pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + complete("UPDATE 1")
        + IN_TRANSACTION
    )
    # Its ReadyForQuery is hidden: the client's Sync answers for the pipeline.
    assert [kind for kind, _ in messages(relay.to_client)] == ["1", "2", "n", "C"]
    sent = messages(relay.to_backend)
    kinds = [kind for kind, _ in sent]
    assert kinds == [*SAVEPOINT_STEPS, "P", "B", "D", "E", "S"]


def test_an_error_in_a_pipeline_skips_to_the_clients_sync() -> None:
    relay = make_relay()
    begin(relay)
    pipeline = extended("select 1/$1")[:-5] + extended("select 2")
    relay.from_client(pipeline)
    assert [kind for kind, _ in messages(relay.to_backend)] == ["P", "B", "D", "E", "S"]
    relay.from_backend(
        pq.message(b"1") + pg_error("22012", "division by zero") + FAILED
    )
    assert [kind for kind, _ in messages(relay.to_client)] == ["1", "E"]
    # As the backend would: the rest up to the client's Sync is skipped.
    assert messages(relay.to_backend) == [("S", b"")]
    relay.from_backend(FAILED)
    assert messages(relay.to_client) == [("Z", b"E")]


def test_a_copy_gets_no_sync_of_its_own() -> None:
    relay = make_relay()
    begin(relay)
    # Its data follows its Execute: a Sync in between, the backend ignores.
    copy = extended("copy t from stdin")[:-5] + pq.message(b"d", b"1\n")
    relay.from_client(copy)
    assert [kind for kind, _ in messages(relay.to_backend)] == ["P", "B", "D", "E", "d"]


def test_a_query_of_other_statements_than_reads_and_writes_is_not_split() -> None:
    relay = make_relay()
    begin(relay)
    text = "create table x (id int); update t set n = 1 where id = 1"
    relay.from_client(pq.query(text))
    assert queries(relay.to_backend) == [text]


@pytest.mark.parametrize("comment", ["", "/* c\n */ ", "-- c\n ", " /* a */ -- b\n"])
def test_a_query_that_opens_its_transaction_runs_its_begin_first(
    comment: str,
) -> None:
    relay = make_relay()
    relay.from_client(
        pq.query(f"{comment}begin; update t set n = 1 where id = 1; select 2")
    )
    # Its BEGIN alone (a comment before it left out), with the snapshot a
    # lone BEGIN takes.
    assert queries(relay.to_backend) == [f"begin\n;{SNAPSHOT_SQL}"]
    relay.from_backend(snapshot() + IN_TRANSACTION)
    assert messages(relay.to_client) == [("C", b"BEGIN\0")]
    # Then each statement in the block it opened, guarded as any write.
    assert queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "update t set n = 1 where id = 1",
    ]
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + complete("UPDATE 1") + IN_TRANSACTION
    )
    assert messages(relay.to_client) == [("C", b"UPDATE 1\0")]
    assert queries(relay.to_backend) == ["select 2"]
    relay.from_backend(ROW_DESCRIPTION + complete("SELECT 1") + IN_TRANSACTION)
    assert [kind for kind, _ in messages(relay.to_client)] == ["T", "C", "Z"]


@pytest.mark.parametrize(
    "sql",
    [
        "begin; update t set n = 1; commit",  # the COMMIT pieces' (`_commit_gate`)
        "begin; set x.y = 1; update t set n = 1",
        "begin; select 1",  # nothing guarded
        "update t set n = 1; begin",
    ],
)
def test_other_texts_with_a_begin_are_sent_whole(sql: str) -> None:
    relay = make_relay()
    relay.from_client(pq.query(sql))
    assert len(queries(relay.to_backend)) == 1


def test_a_query_that_commits_its_transaction_runs_its_statements_one_by_one() -> None:
    relay = make_relay()
    relay.from_client(pq.query("begin; update t set n = 1; commit; select 2"))
    assert queries(relay.to_backend) == [f"begin\n;{SNAPSHOT_SQL}"]
    relay.from_backend(snapshot() + IN_TRANSACTION)
    assert queries(relay.to_backend) == [
        "SAVEPOINT dsql_local_write",
        "update t set n = 1",
    ]
    relay.from_client(pq.query("select 3"))  # waits for the whole text
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + complete("UPDATE 1") + IN_TRANSACTION
    )
    # Its COMMIT, judged as the gate judges any, then the rest of the text.
    assert [sql.strip() for sql in queries(relay.to_backend)] == ["commit;"]
    relay.from_backend(complete("COMMIT") + IDLE)
    # Its last piece as sent before; what the client sent next follows.
    sent = [sql.strip() for sql in queries(relay.to_backend)]
    assert sent == ["select 2", "select 3"]
    relay.from_backend(ROW_DESCRIPTION + complete("SELECT 1") + IDLE)
    assert [kind for kind, _ in messages(relay.to_client)] == list("CCCTCZ")


def test_an_error_in_a_query_that_commits_its_transaction_ends_all_of_it() -> None:
    relay = make_relay()
    relay.from_client(pq.query("begin; update t set n = 1; select 1; commit"))
    messages(relay.to_backend)
    relay.from_backend(snapshot() + IN_TRANSACTION)
    messages(relay.to_backend)
    relay.from_client(pq.query("rollback"))  # waits for the whole text
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + pg_error("23505", "dup") + FAILED
    )
    # As PostgreSQL: nothing more of the text runs, and the client is told.
    assert [kind for kind, _ in messages(relay.to_client)] == list("CEZ")
    assert queries(relay.to_backend) == ["rollback"]
