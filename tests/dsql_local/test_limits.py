"""`_limits`: DSQL's row and size limits, without PostgreSQL."""

from __future__ import annotations

import pytest

from dsql_local import _protocol as pq
from dsql_local._relay import Relay

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    ROW_DESCRIPTION,
    Holders,
    Host,
    Policy,
    begin,
    complete,
    kinds,
    make_relay,
    messages,
    pg_error,
    queries,
    snapshot,
    text_row,
)

pytest.importorskip("pglast")  # guards need it

_ROWS = ROW_DESCRIPTION + text_row("1") + text_row("2") + text_row("3")
_SIZE_CHECK = (
    "SELECT CASE WHEN pg_catalog.pg_current_wal_insert_lsn()"
    " - '0/16B3748'::pg_catalog.pg_lsn > 1048576"
    " THEN dsql_local.check_commit(1048576) END"
)


def test_a_statement_past_the_row_limit_fails_its_transaction() -> None:
    relay = make_relay(Host(Policy(row_limit=2)))
    begin(relay)
    relay.from_client(pq.query("select n from t"))
    messages(relay.to_backend)
    relay.from_backend(_ROWS + complete("SELECT 3") + IN_TRANSACTION)
    sent = messages(relay.to_client)
    assert [kind for kind, _ in sent] == list("TDDDEZ")
    assert pq.parse_fields(sent[4][1])["C"] == "54000"
    assert sent[5] == ("Z", b"E")
    # The backend's transaction fails too, unseen.
    (refusal,) = queries(relay.to_backend)
    assert refusal == (
        "CALL dsql_local.refuse('54000', 'transaction row limit exceeded')"
    )
    relay.from_backend(pg_error("54000", "transaction row limit exceeded") + FAILED)
    assert bytes(relay.to_client) == b""


def test_a_statement_past_the_row_limit_stands_once_committed() -> None:
    relay = make_relay(Host(Policy(row_limit=2)))
    relay.from_client(pq.query("select n from t"))
    messages(relay.to_backend)
    answer = _ROWS + complete("SELECT 3") + IDLE
    relay.from_backend(answer)
    assert bytes(relay.to_client) == answer
    assert bytes(relay.to_backend) == b""


def _wrote(relay: Relay) -> None:
    """A guarded INSERT in the transaction, answered."""
    relay.from_client(pq.query("insert into t values (1)"))
    messages(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + complete("INSERT 0 1") + IN_TRANSACTION
    )
    assert kinds(relay.to_client) == "CZ"


def test_the_size_limit_is_checked_before_a_commit_and_answers_it() -> None:
    relay = make_relay(Host(Policy(transaction_size_limit=1048576)))
    begin(relay)
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == ["COMMIT"]  # nothing written
    relay.from_backend(complete("COMMIT") + IDLE)
    messages(relay.to_client)
    begin(relay)
    _wrote(relay)
    relay.from_client(pq.query("COMMIT"))
    assert queries(relay.to_backend) == [_SIZE_CHECK, "COMMIT"]
    relay.from_backend(
        pg_error("54000", "transaction size limit 1mb exceeded")
        + FAILED
        + complete("ROLLBACK")
        + IDLE
    )
    (error, ready) = messages(relay.to_client)
    assert pq.parse_fields(error[1])["M"] == "transaction size limit 1mb exceeded"
    assert ready == ("Z", b"I")


def test_rows_changed_by_foreign_key_actions_are_counted_from_the_snapshot() -> None:
    holders = Holders(fk_actions=True)
    relay = make_relay(Host(Policy(transaction_row_limit=3000), holders))
    relay.from_client(pq.query("BEGIN"))
    (begin_sql,) = queries(relay.to_backend)
    assert begin_sql.endswith("|| ' ' || dsql_local.rows_changed()")
    relay.from_backend(snapshot("0/16B3748 17") + IN_TRANSACTION)
    messages(relay.to_client)
    _wrote(relay)
    relay.from_client(pq.query("COMMIT"))
    check, commit = queries(relay.to_backend)
    assert (check, commit) == ("SELECT dsql_local.check_rows(3000, 17)", "COMMIT")


def test_a_table_created_or_altered_has_foreign_keys_looked_up_again() -> None:
    holders = Holders()
    relay = make_relay(Host(Policy(), holders))
    relay.from_client(pq.query("create table u (id int)"))
    relay.from_backend(complete("CREATE TABLE") + IDLE)
    relay.from_client(pq.query("alter table u add n int"))
    relay.from_backend(complete("ALTER TABLE") + IDLE)
    relay.from_client(pq.query("select 1"))
    relay.from_backend(complete("SELECT 1") + IDLE)
    assert holders.changed == 2


def _fk_transaction() -> Relay:
    """A transaction begun while a foreign key with actions exists."""
    relay = make_relay(Host(Policy(transaction_row_limit=3000), Holders(True)))
    relay.from_client(pq.query("BEGIN"))
    messages(relay.to_backend)
    relay.from_backend(snapshot("0/16B3748 17") + IN_TRANSACTION)
    messages(relay.to_client)
    return relay


@pytest.mark.parametrize("within", [True, False])
def test_a_delete_whose_foreign_key_actions_cross_the_row_limit_fails(
    within: bool,
) -> None:
    relay = _fk_transaction()
    relay.from_client(pq.query("delete from p where id = 1"))
    messages(relay.to_backend)
    relay.from_backend(
        complete("SAVEPOINT") + IN_TRANSACTION + complete("DELETE 1") + IN_TRANSACTION
    )
    # Its answer waits for the count of the rows its actions changed.
    assert bytes(relay.to_client) == b""
    assert queries(relay.to_backend) == ["SELECT dsql_local.check_rows(3000, 17)"]
    if within:
        relay.from_backend(ROW_DESCRIPTION + text_row("") + complete("SELECT 1"))
        relay.from_backend(IN_TRANSACTION)
        assert messages(relay.to_client) == [("C", b"DELETE 1\0"), ("Z", b"T")]
        return
    relay.from_backend(
        pg_error("54000", "transaction row limit exceeded", "PL/pgSQL function")
        + FAILED
    )
    (error, ready) = messages(relay.to_client)
    fields = pq.parse_fields(error[1])
    assert (error[0], fields["C"], fields["M"]) == (
        "E",
        "54000",
        "transaction row limit exceeded",
    )
    assert "W" not in fields  # the check's own context is not shown
    assert ready == ("Z", b"E")


def test_an_insert_needs_no_check_of_foreign_key_actions() -> None:
    relay = _fk_transaction()
    _wrote(relay)
    assert bytes(relay.to_backend) == b""
