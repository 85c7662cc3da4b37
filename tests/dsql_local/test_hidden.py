"""`_hidden`: statements run in a hidden transaction, without PostgreSQL.

The policy asks for it (`Session.run_in_transaction`) for a statement sent
in autocommit, so that check_commit judges it before it commits.
"""

from __future__ import annotations

from dsql_local import _messages as m
from dsql_local import _protocol as pq
from dsql_local._policy import Refusal
from dsql_local._relay import Relay

from .relay_wire import (
    FAILED,
    IDLE,
    IN_TRANSACTION,
    ROW_DESCRIPTION,
    SNAPSHOT_SQL,
    Host,
    Policy,
    complete,
    error_fields,
    extended,
    kinds,
    make_relay,
    messages,
    pg_error,
    queries,
    snapshot,
    text_row,
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
    assert [kind for kind, _ in sent] == ["Q", "Q", "Q", "Q", "P", "B", "E", "S"]
    assert sent[2] == ("Q", _CHECK.encode() + b"\0")  # the row as met?
    bind = sent[5][1]
    assert bind == b"\0\0" + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0"
    relay.from_backend(
        complete("ROLLBACK")
        + IDLE
        + _BEGUN_AGAIN
        + pq.message(b"1")  # the relay's own Parse and Bind: hidden
        + pq.message(b"2")
        + pg_error("55P03", "lock timeout", held)
        + FAILED
    )
    # Not again: the statement fails, as DSQL's later committer would.
    (error,) = [body for kind, body in messages(relay.to_client) if kind == "E"]
    assert pq.parse_fields(error)["C"] == "40001"
    assert queries(relay.to_backend) == ["ROLLBACK"]


# -- statements sent together in autocommit (#25) ----------------------------

_BATCH = "select n from t; update t set n = 1"
_HELD_ROW = 'while updating tuple (0,1) in relation "t"'
# What checks, as a run again begins, that the row met is as it was met.
_CHECK = "SELECT dsql_local.check_kept('t', '(0,1)')"


def _lock_timeout() -> bytes:
    return pg_error("55P03", "canceling statement due to lock timeout", _HELD_ROW)


def _pipeline(*statements: str, name: str = "") -> bytes:
    """Each statement as psycopg pipelines it, with no Sync."""
    return b"".join(extended(sql, name)[:-5] for sql in statements)


def test_a_query_of_several_statements_runs_again_whole() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query(_BATCH))
    assert queries(relay.to_backend) == [_BATCH]  # as sent: not wrapped
    relay.from_client(pq.query("select 2"))
    assert relay.held > 0  # what follows waits for its end
    relay.from_backend(complete("SELECT 0") + _lock_timeout())
    assert bytes(relay.to_client) == b""  # held, then dropped
    relay.from_backend(IDLE)  # PostgreSQL rolled all of it back
    assert bytes(relay.to_client) == b""
    assert queries(relay.to_backend) == [
        f"BEGIN;{SNAPSHOT_SQL}",
        _CHECK,
        "SET LOCAL lock_timeout = '2s'",
        _BATCH,
    ]
    assert relay.take_holder_lookup()
    relay.from_backend(
        _BEGUN_AGAIN + complete("SELECT 0") + complete("UPDATE 1") + IN_TRANSACTION
    )
    # Its answers, once each; its hidden COMMIT ends it.
    assert kinds(relay.to_client) == "CC"
    assert queries(relay.to_backend) == ["COMMIT", "select 2"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


def test_a_query_of_several_statements_holds_its_answers_to_its_end() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query(_BATCH))
    messages(relay.to_backend)
    relay.from_backend(complete("SELECT 0") + complete("UPDATE 1"))
    assert bytes(relay.to_client) == b""
    relay.from_backend(IDLE)
    assert kinds(relay.to_client) == "CCZ"


def test_another_error_ends_a_query_after_the_answers_held() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query(_BATCH))
    messages(relay.to_backend)
    relay.from_backend(complete("SELECT 0") + pg_error("23505", "duplicate key"))
    assert kinds(relay.to_client) == "CE"
    relay.from_backend(IDLE)
    assert kinds(relay.to_client) == "Z"
    assert bytes(relay.to_backend) == b""


def test_a_query_that_is_not_plain_reads_and_writes_is_not_held() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query("set x.y = 1; update t set n = 1"))
    messages(relay.to_backend)
    relay.from_backend(complete("SET"))
    assert kinds(relay.to_client) == "C"


def test_without_a_policy_a_batch_is_not_held() -> None:
    relay = make_relay(Host(None))
    relay.from_client(pq.query(_BATCH))
    messages(relay.to_backend)
    relay.from_backend(complete("SELECT 0"))
    assert kinds(relay.to_client) == "C"


def test_a_pipeline_runs_again_whole_its_statements_closed_first() -> None:
    relay = make_relay(Host(Policy()))
    first = _pipeline("update t set n = 1", name="s1")
    second = _pipeline("update t set n = 2")
    # As psycopg sends them: a statement at a time, then the Sync.
    relay.from_client(first)
    relay.from_client(second)
    relay.from_client(pq.message(b"S"))
    assert bytes(relay.to_backend) == first + second + pq.message(b"S")
    relay.to_backend.clear()
    relay.from_backend(
        pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + complete("UPDATE 1")
        + pq.message(b"1")
        + pq.message(b"2")
        + pq.message(b"n")
        + _lock_timeout()
        + IDLE
    )
    assert bytes(relay.to_client) == b""
    sent = messages(relay.to_backend)
    assert sent[:2] == [("C", b"Ss1\0"), ("S", b"")]  # its named statement
    again = b"".join(pq.message(k.encode(), body) for k, body in sent[5:])
    # BEGIN, the check, the lock timeout
    assert [kind for kind, _ in sent[2:5]] == ["Q", "Q", "Q"]
    assert sent[3] == ("Q", _CHECK.encode() + b"\0")
    assert again == first + second + pq.message(b"S")
    relay.from_backend(pq.message(b"3") + IDLE + _BEGUN_AGAIN)
    answer = (
        pq.message(b"1") + pq.message(b"2") + pq.message(b"n") + complete("UPDATE 1")
    )
    relay.from_backend(answer + answer + IN_TRANSACTION)
    assert bytes(relay.to_client) == answer + answer
    relay.to_client.clear()
    assert queries(relay.to_backend) == ["COMMIT"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


_FLUSH = pq.message(b"H")
_UPDATE_ANSWER = (
    pq.message(b"1") + pq.message(b"2") + pq.message(b"n") + complete("UPDATE 1")
)
_READ_ANSWER = (
    pq.message(b"1")
    + pq.message(b"2")
    + ROW_DESCRIPTION
    + text_row("0")
    + complete("SELECT 1")
)
# What a run again's BEGIN, check and lock timeout answer.
_BEGUN_AGAIN = (
    snapshot()
    + IN_TRANSACTION
    + complete("SELECT 1")
    + IN_TRANSACTION
    + complete("SET")
    + IN_TRANSACTION
)


def _begun_again(relay: Relay, *, gave: bool = False) -> bytes:
    """The run again's BEGIN, check and lock timeout, sent: what follows.

    The holders are made to give way at once, unless the batch `gave`
    answers: then once its run again answered them alike.
    """
    sent = bytes(relay.to_backend)
    relay.to_backend.clear()
    begin, check, timeout = (pq.query(sql) for sql in _RUN_AGAIN_QUERIES)
    assert sent.startswith(begin + check + timeout)
    assert relay.take_holder_lookup() is not gave
    return sent[len(begin + check + timeout) :]


def _flushed(sent: bytes) -> bytes:
    """`sent`, a Flush after each message but a Sync."""
    return b"".join(
        pq.message(kind.encode(), body) + (_FLUSH if kind != "S" else b"")
        for kind, body in messages(bytearray(sent))
    )


_RUN_AGAIN_QUERIES = (
    f"BEGIN;{SNAPSHOT_SQL}",
    _CHECK,
    "SET LOCAL lock_timeout = '2s'",
)


def test_a_pipeline_that_met_a_held_row_runs_again_when_its_client_waits() -> None:
    """The client asks for the answers (a Flush) and waits for them before
    it sends its Sync: the relay ends the first run with a Sync of its own
    and runs it again at once; what the client sends next joins the run
    again, which the client's Sync commits."""
    relay = make_relay(Host(Policy()))
    sent = _pipeline("update t set n = 1", "update t set n = 2")
    relay.from_client(sent)
    relay.to_backend.clear()
    relay.from_backend(_UPDATE_ANSWER + pq.message(b"1") + pq.message(b"2"))
    relay.from_backend(pq.message(b"n") + _lock_timeout())
    assert bytes(relay.to_client) == b""  # held
    later = _pipeline("update t set n = 3")
    relay.from_client(_FLUSH + later)
    assert bytes(relay.to_backend) == _FLUSH + pq.message(b"S")
    relay.to_backend.clear()
    assert relay.held > 0  # what follows waits for the run again
    relay.from_backend(IDLE)  # PostgreSQL rolled it back: not the client's
    assert bytes(relay.to_client) == b""
    # Run again up to the Flush; what followed joins it.
    assert _begun_again(relay) == sent + _FLUSH + later
    assert relay.held == 0
    relay.from_backend(_BEGUN_AGAIN + _UPDATE_ANSWER + _UPDATE_ANSWER)
    assert bytes(relay.to_client) == _UPDATE_ANSWER + _UPDATE_ANSWER
    relay.to_client.clear()
    relay.from_client(pq.message(b"S"))
    assert bytes(relay.to_backend) == pq.message(b"S")
    relay.to_backend.clear()
    relay.from_backend(_UPDATE_ANSWER + IN_TRANSACTION)
    assert bytes(relay.to_client) == _UPDATE_ANSWER
    relay.to_client.clear()
    assert queries(relay.to_backend) == ["COMMIT"]  # the client's Sync's
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


def test_a_sync_sent_with_the_flush_commits_the_run_again() -> None:
    """The client sends its Sync right after its Flush: it waits for the
    run again, then ends it."""
    relay = make_relay(Host(Policy()))
    sent = _pipeline("update t set n = 1")
    relay.from_client(sent)
    relay.to_backend.clear()
    relay.from_backend(pq.message(b"1") + pq.message(b"2") + _lock_timeout())
    relay.from_client(_FLUSH + pq.message(b"S"))
    assert bytes(relay.to_backend) == _FLUSH + pq.message(b"S")  # the relay's
    relay.to_backend.clear()
    relay.from_backend(IDLE)
    assert _begun_again(relay) == sent + _FLUSH + pq.message(b"S")  # the client's
    relay.from_backend(_BEGUN_AGAIN + _UPDATE_ANSWER + IN_TRANSACTION)
    assert bytes(relay.to_client) == _UPDATE_ANSWER
    relay.to_client.clear()
    assert queries(relay.to_backend) == ["COMMIT"]
    relay.from_backend(complete("COMMIT") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


def test_a_batch_that_gave_more_than_its_limit_fails_at_once() -> None:
    """Answers given past 1 MiB are not kept to be matched: the batch
    cannot run again, and the conflict passes as PostgreSQL sent it."""
    relay = make_relay(Host(Policy()))
    relay.from_client(_pipeline("select n from t", "update t set n = 1") + _FLUSH)
    relay.to_backend.clear()
    big = text_row("x" * (1 << 20))
    relay.from_backend(pq.message(b"1") + pq.message(b"2") + ROW_DESCRIPTION + big)
    relay.from_backend(complete("SELECT 1") + pq.message(b"2") + _lock_timeout())
    assert kinds(relay.to_client) == "12TDC2E"
    assert bytes(relay.to_backend) == b""  # no Sync of the relay's
    relay.from_client(pq.message(b"S"))
    relay.from_backend(IDLE)
    assert kinds(relay.to_client) == "Z"


def _given_then_met() -> Relay:
    """A read answered at a Flush, then a write met a held row (its first
    answers passed as they came): the first run ended by the relay."""
    relay = make_relay(Host(Policy()))
    relay.from_client(_pipeline("select n from t") + _FLUSH)
    relay.from_backend(_READ_ANSWER)
    assert bytes(relay.to_client) == _READ_ANSWER  # the client waits for it
    relay.to_client.clear()
    relay.from_client(_pipeline("update t set n = 1") + _FLUSH)
    relay.to_backend.clear()
    relay.from_backend(pq.message(b"1") + pq.message(b"2") + _lock_timeout())
    assert kinds(relay.to_client) == "12"
    assert bytes(relay.to_backend) == pq.message(b"S")
    relay.to_backend.clear()
    relay.from_backend(IDLE)
    # Run again, the backend made to send each answer as it comes.
    again = _pipeline("select n from t") + _FLUSH + _pipeline("update t set n = 1")
    assert _begun_again(relay, gave=True) == _flushed(again + _FLUSH)
    return relay


def test_a_run_again_drops_the_answers_the_client_was_given() -> None:
    relay = _given_then_met()
    relay.from_backend(_BEGUN_AGAIN + _READ_ANSWER + pq.message(b"1"))
    assert not relay.take_holder_lookup()  # not all answered alike yet
    relay.from_backend(pq.message(b"2"))
    # All alike: the holders give way now (a Flush has the pump look).
    assert bytes(relay.to_backend) == _FLUSH
    relay.to_backend.clear()
    assert relay.take_holder_lookup()
    relay.from_backend(pq.message(b"n") + complete("UPDATE 1"))
    # Its answers but those given.
    assert messages(relay.to_client) == [("n", b""), ("C", b"UPDATE 1\0")]
    relay.from_client(pq.message(b"S"))
    relay.to_backend.clear()
    relay.from_backend(IN_TRANSACTION)
    assert queries(relay.to_backend) == ["COMMIT"]


def test_a_run_again_answering_otherwise_than_the_client_was_given_fails() -> None:
    """The read now sees another value: the answer given cannot be taken
    back, so the batch fails with the conflict in its place, rolled back."""
    relay = _given_then_met()
    changed = _READ_ANSWER.replace(text_row("0"), text_row("5"))
    relay.from_backend(_BEGUN_AGAIN + changed + _UPDATE_ANSWER)
    (error,) = error_fields(relay.to_client)  # that alone
    assert (error["C"], error["M"]) == ("40001", m.OC000_MESSAGE)
    # The holders do not give way: they commit first.
    assert not relay.take_holder_lookup()
    relay.from_client(pq.message(b"S"))
    relay.to_backend.clear()
    relay.from_backend(IN_TRANSACTION)
    assert queries(relay.to_backend) == ["ROLLBACK"]
    relay.from_backend(complete("ROLLBACK") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


def test_a_batch_given_answers_runs_again_at_its_end_if_its_sync_is_in() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(_pipeline("select n from t") + _FLUSH)
    relay.from_backend(_READ_ANSWER)
    relay.to_client.clear()
    rest = _pipeline("update t set n = 1") + pq.message(b"S")
    relay.from_client(rest)
    relay.to_backend.clear()
    relay.from_backend(pq.message(b"1") + pq.message(b"2") + _lock_timeout())
    assert kinds(relay.to_client) == "12"  # passed, as they came
    assert bytes(relay.to_backend) == b""  # its own Sync ends it
    relay.from_backend(IDLE)
    again = _pipeline("select n from t") + _FLUSH + rest
    assert _begun_again(relay, gave=True) == _flushed(again)
    relay.from_backend(_BEGUN_AGAIN + _READ_ANSWER + _UPDATE_ANSWER + IN_TRANSACTION)
    assert messages(relay.to_client) == [("n", b""), ("C", b"UPDATE 1\0")]
    assert queries(relay.to_backend) == ["COMMIT"]


def test_a_batch_whose_client_asked_for_a_conflict_s_answer_does_not_wait() -> None:
    """A batch that cannot run again (its first answer is not its own)
    passes the conflict at the Flush, as PostgreSQL would have."""
    relay = make_relay(Host(Policy()))
    relay.from_client(_pipeline("update t set n = 1"))
    relay.to_backend.clear()
    relay.from_backend(pq.message(b"n") + _lock_timeout())
    relay.from_client(_FLUSH)
    assert bytes(relay.to_backend) == _FLUSH  # no Sync of the relay's
    assert [kind for kind, _ in messages(relay.to_client)] == ["n", "E"]


def test_a_statement_alone_in_its_sync_is_no_batch() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(extended("select 1"))
    messages(relay.to_backend)
    relay.from_backend(pq.message(b"1"))
    assert kinds(relay.to_client) == "1"


def test_a_notice_before_a_pipeline_s_first_answer_does_not_stop_its_run_again() -> (
    None
):
    relay = make_relay(Host(Policy()))
    sent = _pipeline("update t set n = 1", "update t set n = 2") + pq.message(b"S")
    relay.from_client(sent)
    relay.to_backend.clear()
    notice = pq.message(b"N", b"SDEBUG\0Mparse\0\0")
    relay.from_backend(notice + pq.message(b"1") + _lock_timeout() + IDLE)
    assert bytes(relay.to_client) == b""
    assert bytes(relay.to_backend).endswith(sent)  # run again


def test_a_pipeline_whose_first_answer_is_not_its_own_does_not_run_again() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(
        _pipeline("update t set n = 1", "update t set n = 2") + pq.message(b"S")
    )
    relay.to_backend.clear()
    # The answer to a message before the first one it kept (a Describe).
    relay.from_backend(pq.message(b"n") + _lock_timeout() + IDLE)
    assert [kind for kind, _ in messages(relay.to_client)] == ["n", "E", "Z"]
    assert bytes(relay.to_backend) == b""


def test_a_batch_given_up_is_no_longer_kept_nor_waited_for() -> None:
    relay = make_relay(Host(Policy()))
    close = pq.message(b"C", b"Ss1\0")  # a Close cannot run again as it ran
    relay.from_client(_pipeline("update t set n = 1") + close)
    later = _pipeline("update t set n = 2") + pq.message(b"S") + pq.query("select 3")
    relay.to_backend.clear()
    relay.from_client(later)
    # What follows passes, the next Query too.
    assert bytes(relay.to_backend) == later
    assert relay.held == 0


def _aborted() -> bytes:
    return pg_error("25P02", "current transaction is aborted") + FAILED


def test_a_run_again_whose_row_changed_since_fails_with_the_check_s_error() -> None:
    """The holder committed between the first run and the run again's
    snapshot: the check's error is the statement's, sent once."""
    relay = _wrapped(Policy(), extended(_INSERT))
    relay.from_backend(
        pq.message(b"1") + pq.message(b"2") + pq.message(b"n") + _lock_timeout()
    )
    relay.from_backend(FAILED)
    relay.to_client.clear()
    relay.to_backend.clear()
    relay.from_backend(
        complete("ROLLBACK")
        + IDLE
        + snapshot()
        + IN_TRANSACTION
        + pg_error("40001", "change conflicts with another transaction (OC000)")
        + FAILED
        + _aborted()  # its lock timeout
        + _aborted()  # the statement
    )
    (error,) = messages(relay.to_client)  # that alone
    assert pq.parse_fields(error[1])["C"] == "40001"
    assert queries(relay.to_backend) == ["ROLLBACK"]
    relay.from_backend(complete("ROLLBACK") + IDLE)
    assert messages(relay.to_client) == [("Z", b"I")]


def test_a_batch_whose_row_changed_since_fails_with_the_check_s_error() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query(_BATCH))
    relay.to_backend.clear()
    relay.from_backend(complete("SELECT 0") + _lock_timeout() + IDLE)
    assert queries(relay.to_backend)[1] == _CHECK
    relay.to_backend.clear()
    relay.from_backend(
        snapshot()
        + IN_TRANSACTION
        + pg_error("40001", "change conflicts with another transaction (OC000)")
        + FAILED
        + _aborted()  # its lock timeout
        + _aborted()  # the batch: not answered again
    )
    assert queries(relay.to_backend) == ["ROLLBACK"]
    relay.from_backend(complete("ROLLBACK") + IDLE)
    error, ready = messages(relay.to_client)
    assert (error[0], ready) == ("E", ("Z", b"I"))
    assert pq.parse_fields(error[1])["C"] == "40001"


def test_a_key_met_is_not_checked_as_a_run_again_begins() -> None:
    """An INSERT's key names no row version: the run again alone tells."""
    relay = make_relay(Host(Policy()))
    relay.from_client(pq.query("select 1; insert into t values (1)"))
    relay.to_backend.clear()
    inserting = 'while inserting index tuple (0,3) in relation "t"'
    relay.from_backend(
        complete("SELECT 1")
        + pg_error("55P03", "canceling statement due to lock timeout", inserting)
        + IDLE
    )
    assert queries(relay.to_backend) == [
        f"BEGIN;{SNAPSHOT_SQL}",
        "SET LOCAL lock_timeout = '2s'",
        "select 1; insert into t values (1)",
    ]
