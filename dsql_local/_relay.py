"""The per-connection relay between an authenticated client and the backend.

`Relay` is the protocol, without I/O: bytes in (`from_client`,
`from_backend`), bytes out (`to_backend`, `to_client`); a `Pump` holds it and
does the sockets. Only the message headers of what passes are looked at, and
the few messages DSQL Local acts on are decoded:

- client Query/Parse, and Bind of a prepared statement: COMMIT interception
  (injected conflicts, the policy's check_commit), the policy's
  check_statement and stale-schema (OC001) checks. A Query whose text holds
  COMMITs among other statements runs in pieces (see `_commits`), each sent
  when the one before has finished, so that each COMMIT is checked in turn;
  client data that follows it waits. A statement the policy wants in a
  transaction (`Session.run_in_transaction`), sent outside one, runs between a
  hidden BEGIN and a hidden COMMIT that check_commit decides on; its
  CommandComplete is held until that COMMIT has succeeded, and other client
  data waits, but the data of a ``COPY FROM STDIN`` (from CopyInResponse to
  CopyDone or CopyFail);
- conflicts as DSQL has them (see `_conflicts`): a lone BEGIN is followed, in
  the same Query, by a hidden SELECT that takes the snapshot there. In a
  transaction, a write or locking read that `_conflicts.guard` can answer runs
  after a hidden SAVEPOINT, its answer held until its ReadyForQuery. If
  PostgreSQL refused it for another transaction's sake (a lock timeout, or
  40001 for a row changed since the snapshot), the relay rolls back to the
  savepoint, runs the plain read that answers it instead (extended protocol:
  with the client's parameters and result formats), and fails the transaction's
  COMMIT with 40001 ``(OC000)``. Other client data waits meanwhile;
- DSQL's limits: a CommandComplete that takes the transaction past the
  policy's row limit (`StatementPolicy.statement_done`) becomes the error,
  and a hidden refusal fails the backend's transaction too; before the
  COMMIT of a transaction that wrote, a hidden check of the size limit,
  whose error, if any, answers the COMMIT;
- backend ErrorResponse: PostgreSQL's serialization and lock-timeout errors
  of statements not guarded become DSQL's 40001 ``(OC000)`` at the statement
  (in autocommit, the statement's end is its COMMIT); refusals lose their
  PL/pgSQL context;
- backend CommandComplete of a statement the policy rewrote into one with
  another tag (``CREATE INDEX ASYNC`` runs as a SELECT): the tag DSQL gives
  (`Session.command_tags`);
- backend ReadyForQuery/CommandComplete: the session state the policy sees;
  an injected commit drop closes the client connection at COMMIT's
  CommandComplete, after the backend has committed, and an injected
  ``server unavailable`` that lets the COMMIT commit replaces that
  CommandComplete with the error.

Responses are counted in *units*: every Query, Sync and FunctionCall gets
exactly one ReadyForQuery, so unit k is everything the backend sends after the
(k-1)-th ReadyForQuery up to and including the k-th. This lets the relay
swallow the answer to a statement it injected without tracking every message.
Within a unit, ParseCompletes are counted too, to hide those of Parses the
relay added.

A refused statement is replaced by ``CALL dsql_local.refuse(...)``, so the
backend itself raises the error and leaves the transaction exactly as any
server-side error would. A failed COMMIT becomes such a refusal followed by a
hidden ROLLBACK, so the client is idle afterwards, as with DSQL.
"""

from __future__ import annotations

import enum
import logging
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import _protocol as pq
from ._commits import Piece, commit_pieces
from ._conflicts import Guard, guard
from ._faults import SERVER_UNAVAILABLE, Faults
from ._framing import Framer
from ._policy import Refusal, Session, StatementPolicy
from ._schema import OC001_MESSAGE, SchemaClock, SchemaWatch
from ._yield import (
    BLOCKERS_SQL,
    FK_DDL_TAGS,
    HOLDER_CHECK_SQL,
    ROWS_CHANGED_SQL,
    ROWS_CHECK_SQL,
    Holders,
    holder_check,
)

logger = logging.getLogger("dsql_local")

OC000_MESSAGE = "change conflicts with another transaction (OC000)"
CONFLICT_MESSAGES = {"OC000": OC000_MESSAGE, "OC001": OC001_MESSAGE}
# PostgreSQL errors that mean "another writer got there first".
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
REFUSE_FUNCTION = "dsql_local.refuse"
BOOTSTRAP_SQL = (
    "CREATE SCHEMA dsql_local",
    "GRANT USAGE ON SCHEMA dsql_local TO PUBLIC",
    """CREATE PROCEDURE dsql_local.refuse(
        sqlstate text, message text, VARIADIC ignored text[] DEFAULT '{}')
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    END $$""",
    # DSQL's size limit, checked right before a COMMIT: the size of the row
    # versions the transaction wrote and can still see, as stored
    # (pg_column_size: compressed where PostgreSQL compresses; deleted rows,
    # index entries and per-row overhead not counted). A row is its own when
    # its xmin is still in progress: other transactions' uncommitted rows are
    # not visible. The tables to look at are those with pending insert or
    # update counts (which may include earlier transactions') that the
    # session may read: it runs with the session's privileges.
    """CREATE FUNCTION dsql_local.check_commit(size_limit bigint)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        written regclass;
        part bigint;
        total bigint := 0;
        epoch bigint := (txid_current() >> 32) << 32;
    BEGIN
        FOR written IN SELECT relid FROM pg_stat_xact_user_tables
                WHERE n_tup_ins + n_tup_upd > 0
                AND has_table_privilege(relid, 'SELECT') LOOP
            EXECUTE format('SELECT coalesce(sum(pg_column_size(t.*)), 0)'
                ' FROM ONLY %s AS t WHERE pg_xact_status('
                '(%s + t.xmin::text::bigint)::text::xid8) = ''in progress''',
                written, epoch) INTO part;
            total := total + part;
        END LOOP;
        IF total > size_limit THEN
            RAISE EXCEPTION USING ERRCODE = '54000',
                MESSAGE = format('transaction size limit %smb exceeded',
                    size_limit / 1048576),
                DETAIL = format('Current transaction size %smb > %smb',
                    ceil(total / 1048576.0), size_limit / 1048576);
        END IF;
    END $$""",
    BLOCKERS_SQL,
    HOLDER_CHECK_SQL,
    ROWS_CHANGED_SQL,
    ROWS_CHECK_SQL,
)

_STALE_SCHEMA = Refusal("40001", OC001_MESSAGE)
_CONFLICT = Refusal("40001", OC000_MESSAGE)
_COMMIT_RE = re.compile(
    r"\s*(?:commit|end)(?:\s+(?:work|transaction))?\s*;?\s*\Z", re.IGNORECASE
)
_PARAM_RE = re.compile(r"\$(\d+)")
_COPY_RE = re.compile(r"\s*copy\b", re.IGNORECASE)
_INT32 = struct.Struct("!I")
_INT16 = struct.Struct("!H")
_UNPACK_LEN = _INT32.unpack_from
_ROLLBACK = pq.query("ROLLBACK")


class Unit(enum.IntFlag):
    """What the relay does with one response unit (see the module's docstring)."""

    AS_IDLE = 1
    """Rewrite the unit's ReadyForQuery status to 'I'."""
    SWALLOW = 2
    """Hide the unit's messages but its errors and ReadyForQuery."""
    DROP_AT_COMMIT = 4
    """Close the client connection instead of confirming COMMIT."""
    NEXT_PIECE = 8
    """At ReadyForQuery, hide it and send the query's next piece."""
    HIDE_READY = 16
    """Hide the unit's ReadyForQuery."""
    AUTOCOMMIT = 32
    """Hold its CommandComplete; at ReadyForQuery, end the hidden transaction
    around the unit."""
    RELEASE_TAG = 64
    """The hidden COMMIT: send the held CommandComplete first."""
    UNAVAILABLE_AT_COMMIT = 128
    """Answer a COMMIT that committed with an error."""
    QUIET = 256
    """Hidden, errors too, and leaves the transaction status as it is."""
    GUARD = 512
    """A write after a hidden savepoint: its answer waits in `_write`."""
    ANSWER = 1024
    """The plain read answering a write PostgreSQL refused."""
    SNAPSHOT = 2048
    """A lone BEGIN, followed by a hidden snapshot-taking SELECT."""
    PRE_COMMIT = 4096
    """The limits' check before a COMMIT: keep its error for it."""
    REPLAY = 8192
    """A refused write, run again before its COMMIT: an error is OC000."""
    GAVE_WAY = 16384
    """The BEGIN after giving way: the new transaction is doomed."""


_NONE = Unit(0)
# Each unit's record is a `Unit`; the relay tests its bits as plain ints
# (`int(action)`, the `_X` names below): an IntFlag's own operators build a
# new member each time, which costs microseconds per message.
_AS_IDLE = Unit.AS_IDLE.value
_SWALLOW = Unit.SWALLOW.value
_DROP_AT_COMMIT = Unit.DROP_AT_COMMIT.value
_NEXT_PIECE = Unit.NEXT_PIECE.value
_HIDE_READY = Unit.HIDE_READY.value
_AUTOCOMMIT = Unit.AUTOCOMMIT.value
_RELEASE_TAG = Unit.RELEASE_TAG.value
_UNAVAILABLE_AT_COMMIT = Unit.UNAVAILABLE_AT_COMMIT.value
_QUIET = Unit.QUIET.value
_GUARD = Unit.GUARD.value
_ANSWER = Unit.ANSWER.value
_SNAPSHOT = Unit.SNAPSHOT.value
_PRE_COMMIT = Unit.PRE_COMMIT.value
_REPLAY = Unit.REPLAY.value
_GAVE_WAY = Unit.GAVE_WAY.value
_MUTATING_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
_BEGIN_RE = re.compile(r"\s*(?:begin|start\s+transaction)\b[^;]*;?\s*\Z", re.IGNORECASE)
# Taken right after BEGIN, as DSQL takes its snapshot; where the WAL stood
# then bounds what the transaction can have written (see _commit_check).
_TAKE_SNAPSHOT = "SELECT pg_catalog.pg_current_wal_insert_lsn()"
# ... and, while foreign keys with actions exist, the rows changed so far.
_TAKE_SNAPSHOT_ROWS = (
    "SELECT pg_catalog.pg_current_wal_insert_lsn()::text"
    " || ' ' || dsql_local.rows_changed()"
)
_BEGIN_ROWS = pq.query(f"BEGIN;{_TAKE_SNAPSHOT_ROWS}")
_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
_BEGIN = pq.query(f"BEGIN;{_TAKE_SNAPSHOT}")
_SAVEPOINT_NAME = "dsql_local_write"
_SAVEPOINT = pq.query(f"SAVEPOINT {_SAVEPOINT_NAME}")
_ROLLBACK_TO = pq.query(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT_NAME}")
_ANSWER_STATEMENT = b"dsql_local_answer"
# A replay waits for the holders it makes give way (see `_yield`).
_REPLAY_LOCK_TIMEOUT = pq.query("SET LOCAL lock_timeout = '2s'")
_COMMIT = pq.query("COMMIT")
_SYNC = pq.message(b"S")  # a Sync has no body: every one is these bytes

_Q, _P, _B, _S, _F = b"QPBSF"
_COPY_IN, _COPY_DONE, _COPY_FAIL = b"Gcf"
_DESCRIBE, _EXECUTE, _FLUSH = b"DEH"
_E, _Z, _C, _PARSE_COMPLETE, _PARAMETER_STATUS = b"EZC1S"
_ROW_DESCRIPTION, _DATA_ROW = b"TD"
# What a refused extended-protocol write already answered that still holds.
_KEPT_AFTER_REFUSAL = frozenset(b"12tTn")


@dataclass
class _Write:
    """A guarded write in flight: its answer waits until it is known."""

    guard: Guard
    sql: str
    bind: bytes | None = None
    """Extended protocol: the body of the client's Bind (its parameters)."""
    types: bytes = b"\0\0"
    """Extended protocol: the parameter types of the client's Parse."""
    sealed: bool = False
    """Its Sync (or its Query) is in: what the client sends next waits."""
    refused: bool = False
    holder_check: str | None = None
    """SQL checking that the row's holder did not commit first (see `_yield`)."""
    answer: bytearray = field(default_factory=bytearray)
    kept: bytearray = field(default_factory=bytearray)


# The messages the relay reads; the rest pass unread. Client side: all but
# those it may pass unread (a message type it does not know never passes),
# indexed by (prepared statements known) + 2 * (a COPY FROM STDIN streaming in).
_EVERY_KIND = frozenset(range(256))
_CLIENT_KINDS = tuple(
    _EVERY_KIND - frozenset(b"CDEHXd" + b"B" * (not prepared) + b"cf" * (not copying))
    for copying in (False, True)
    for prepared in (False, True)
)
_FRONTEND_KINDS = frozenset(b"BCDEFHPQSXcdf")  # protocol 3.0's, after startup
_BACKEND_KINDS = frozenset(b"EZ1S")
_BACKEND_KINDS_TAGS = frozenset(b"EZ1SC")  # for the policy or schema watch
# A FunctionCall runs a function by its oid: the policy cannot see which.
_FUNCTION_CALL = Refusal(
    "0A000",
    "the FunctionCall protocol message is not supported: call the function in a query",
)


def refusal_sql(refusal: Refusal, undeclared: list[int] | None = None) -> str:
    """SQL that makes the backend raise `refusal` (referencing parameters)."""
    extra = ""
    if undeclared:
        refs = ", ".join(f"${n}::text" for n in undeclared)
        extra = f", VARIADIC ARRAY[{refs}]::text[]"
    return (
        f"CALL {REFUSE_FUNCTION}({pq.quote_literal(refusal.sqlstate)}, "
        f"{pq.quote_literal(refusal.message)}{extra})"
    )


class RelayHost(Protocol):
    """What a relay needs from the server that started it."""

    @property
    def policy(self) -> StatementPolicy | None:
        """The statement policy, read once per connection."""
        ...

    @property
    def schema_clock(self) -> SchemaClock | None:
        """The endpoint-wide count of schema changes, if they conflict."""
        ...

    @property
    def faults(self) -> Faults:
        """The faults injected at statements and COMMITs."""
        ...

    def take_conflict(self) -> str | None:
        """Consume an injected COMMIT conflict: its code, or None."""
        ...

    def take_commit_drop(self) -> bool:
        """Consume an injected commit drop."""
        ...


class Relay:
    """Relay the messages of one client and its backend, rewriting a few."""

    def __init__(
        self,
        endpoint: RelayHost,
        session: Session,
        *,
        backend_pid: int = 0,
    ) -> None:
        self._endpoint = endpoint
        self._to_client = bytearray()
        self._to_backend = bytearray()
        # Close the client connection once _to_client has been sent.
        self._dropping = False
        self._waker: Callable[[], None] | None = None
        self.session = session
        self.backend_pid = backend_pid
        self._policy: StatementPolicy | None = endpoint.policy
        clock = endpoint.schema_clock
        self._schema = SchemaWatch(clock) if clock is not None else None
        self._client_framer = Framer(
            self._to_backend,
            self._client_message,
            self._client_watches,
            pq.MAX_MESSAGE_LENGTH,
        )
        self._backend_kinds = (
            _BACKEND_KINDS_TAGS
            if self._policy is not None or self._schema is not None
            else _BACKEND_KINDS
        )
        self._backend_framer = Framer(
            self._to_client, self._backend_message, self._backend_watches
        )
        self._status = b"I"
        self._units_sent = 0
        self._units_done = 0
        self._unit_actions: dict[int, Unit] = {}
        self._rollback_after_sync = False
        self._unit_failed = False
        # A query split at its COMMITs: the pieces not sent yet, and the
        # client data that arrived after the query and waits for them.
        self._pieces: deque[Piece] = deque()
        self._held = bytearray()
        # A statement sent outside a transaction that runs in a hidden one:
        # its Sync is still to come / its answer is awaited.
        self._wrap_at_sync = False
        self._awaiting_commit = False
        # ... and the client streams COPY data into it meanwhile.
        self._copy_in = False
        self._held_tag = b""
        self._pending_start: float | None = None
        # A write run after a hidden savepoint, and whether a refused one
        # dooms the transaction to fail at COMMIT.
        self._write: _Write | None = None
        self._doomed = False
        # Writes refused for another transaction's sake, answered as DSQL
        # would: each runs again right before the COMMIT, which fails if one
        # of them does (the other transaction committed first).
        self._replays: list[bytes] = []
        self._look_for_holders = False
        # Giving way to a transaction that commits first (see `_yield`): the
        # number of this connection's transaction, and the one to roll back.
        self._transaction = 0
        self._give_way: int | None = None
        self._giving_way = False
        # DSQL's limits: a statement past the row limit fails after the
        # fact; a transaction that wrote is checked right before its COMMIT,
        # whose answer becomes the check's error, if any.
        self._late_refusal: Refusal | None = None
        self._late_answer = bytearray()
        self._wrote = False
        self._start_lsn = ""
        self._start_rows: int | None = None
        self._commit_prefix = b""
        self._commit_error = b""
        # Prepared (named) statements: name -> (SQL, not run yet, to wrap in
        # a hidden transaction, its parameter types); and
        # the ParseCompletes to hide: {unit: {index of an added Parse}}.
        self._statements: dict[
            str, tuple[str, bool, bool, tuple[str | None, ...], bytes]
        ] = {}
        self._parses_sent = 0
        self._parses_done = 0
        self._hidden_parses: dict[int, set[int]] = {}
        # The command tags DSQL gives for rewritten statements, per unit, in
        # the order of the unit's CommandCompletes (None: the backend's own).
        self._tags: dict[int, list[str | None]] = {}

    # -- client -> backend -------------------------------------------------

    def _holding(self) -> bool:
        """Client data waits: the relay still sends statements of its own."""
        return (
            bool(self._pieces)
            or self._giving_way
            or (self._awaiting_commit and not self._copy_in)
            or (self._write is not None and self._write.sealed)
        )

    # -- what the pump sees (see `_pump.Relayed`) ---------------------------

    @property
    def to_client(self) -> bytearray:
        return self._to_client

    @property
    def to_backend(self) -> bytearray:
        return self._to_backend

    @property
    def dropping(self) -> bool:
        return self._dropping

    @property
    def held(self) -> int:
        return len(self._held)

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Give the function that has the pump call `woken` in its thread."""
        self._waker = waker

    def take_holder_lookup(self) -> bool:
        """Whether the replays before a COMMIT were just sent (see `_yield`)."""
        wanted, self._look_for_holders = self._look_for_holders, False
        return wanted

    def from_client(self, data: bytes) -> None:
        rest = self._client_framer.feed(data)
        if rest is not None:
            self._held += rest

    def _client_watches(self) -> frozenset[int] | None:
        if self._holding():
            return None  # what follows waits for the relay's own statements
        return _CLIENT_KINDS[bool(self._statements) + 2 * self._copy_in]

    def _client_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if kind in (_COPY_DONE, _COPY_FAIL):
            # The data is in: the hidden COMMIT decides, then what follows.
            self._copy_in = False
            return None
        if kind == _S:
            return self._end_of_unit()
        if kind == _F:
            # Refused in its place, answered once like it (its own unit).
            self._units_sent += 1
            self._parses_sent = 0
            return pq.query(refusal_sql(_FUNCTION_CALL))
        if kind not in _FRONTEND_KINDS:
            raise pq.ProtocolViolation("08P01", f"invalid frontend message type {kind}")
        if not self.session.in_transaction and self._pending_start is None:
            self._pending_start = time.monotonic()
            if self._schema is not None:
                self._schema.begin()
        if kind == _Q:
            self._units_sent += 1
            self._parses_sent = 0
            return self._query_message(view, pos, end)
        if kind == _B:
            return self._bind_message(view, pos, end)
        self._parses_sent += 1
        return self._parse_message(view, pos, end)

    def _end_of_unit(self) -> bytes | None:
        """Count a Sync, which the backend answers once."""
        self._units_sent += 1
        self._parses_sent = 0
        if self._write is not None:
            self._write.sealed = True
        if self._wrap_at_sync:
            self._wrap_at_sync = False
            self._add_action(self._units_sent, _HIDE_READY | _AUTOCOMMIT)
            self._awaiting_commit = True
            return _SYNC
        if self._rollback_after_sync:
            self._rollback_after_sync = False
            return _SYNC + self._inject_rollback()
        return None

    def _query_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        sql = bytes(view[pos + 5 : end - 1]).decode("utf-8", "replace")
        if _COMMIT_RE.match(sql):
            return self._commit_query(bytes(view[pos:end]))
        pieces = commit_pieces(sql)
        if pieces is not None:
            self._pieces.extend(pieces)
            return self._next_piece()
        verdict = self._check(sql)
        if isinstance(verdict, Refusal):
            return pq.query(refusal_sql(verdict))
        self._note_tags(self._units_sent, self.session.command_tags)
        # A rewritten statement is guarded as it runs (say, a FOR UPDATE
        # whose SKIP LOCKED DSQL ignores).
        rewritten = self._conflict_rewrite(sql if verdict is None else verdict)
        if rewritten is not None:
            return rewritten
        if self._may_wrap(self.session.run_in_transaction, self._units_sent - 1):
            # The hidden BEGIN takes the client's unit; the query the next.
            self._add_action(self._units_sent, _SWALLOW | _HIDE_READY | _SNAPSHOT)
            self._units_sent += 1
            self._add_action(self._units_sent, _HIDE_READY | _AUTOCOMMIT)
            self._awaiting_commit = True
            return self._begin() + pq.query(sql if verdict is None else verdict)
        return None if verdict is None else pq.query(verdict)

    def _commit_query(self, message: bytes) -> bytes | None:
        """Fail a COMMIT sent as a Query, or check the limits before it."""
        refusal = self._commit_refusal(self._units_sent, checkable=True)
        if refusal is not None:
            return pq.query(refusal_sql(refusal)) + self._inject_rollback()
        return self._take_commit_prefix(message)

    def _conflict_rewrite(self, sql: str) -> bytes | None:
        """Take a snapshot after a lone BEGIN; guard a write in a transaction."""
        if _BEGIN_RE.match(sql):
            # A comment at the end ends with the line.
            self._add_action(self._units_sent, _SNAPSHOT)
            take = _TAKE_SNAPSHOT_ROWS if self._fk_actions() else _TAKE_SNAPSHOT
            return pq.query(f"{sql}\n;{take}")
        write = self._guard(sql, self._units_sent - 1)
        if write is None:
            return None
        # The hidden SAVEPOINT takes the client's unit; the query the next.
        write.sealed = True
        self._add_action(self._units_sent, _SWALLOW | _HIDE_READY | _QUIET)
        self._units_sent += 1
        self._add_action(self._units_sent, _GUARD)
        return _SAVEPOINT + pq.query(sql)

    def _may_wrap(self, wanted: bool, units_before: int) -> bool:
        """Whether to run a statement in a hidden transaction.

        Only when the policy asks (`wanted`), outside a transaction, and with
        every earlier answer in, so that the status is known to be idle.
        """
        return (
            wanted
            and self._status == b"I"
            and self._units_done == units_before
            and not self._wrap_at_sync
        )

    def _guard(self, sql: str, units_before: int) -> _Write | None:
        """Guard `sql`, sent in a transaction, if a refused write of it can be answered.

        Only when the status is known: every earlier unit answered, but
        hidden ones that leave it as it is.
        """
        if self._status != b"T" or self._write is not None or self._wrap_at_sync:
            return None
        for unit in range(self._units_done + 1, units_before + 1):
            if not int(self._unit_actions.get(unit, _NONE)) & _QUIET:
                return None
        found = guard(sql)
        if found is None:
            return None
        self._write = _Write(found, sql)
        return self._write

    def _enclose(
        self,
        sql: str | None,
        message: bytes,
        wanted: bool,
        bind: Callable[[], bytes],
        types: bytes,
    ) -> bytes | None:
        """Guard the unit's statement, or wrap it in a hidden transaction.

        `message` is the unit's first (a Parse or a Bind), `sql` the statement
        if it may be guarded, `wanted` whether the policy wants it wrapped,
        `bind` gives the unit's Bind body and `types` its parameter types.
        """
        write = None if sql is None else self._guard(sql, self._units_sent)
        if write is not None:
            # Precede the unit's first message with a hidden SAVEPOINT.
            write.bind = bind()
            write.types = types
            self._units_sent += 1
            self._add_action(self._units_sent, _SWALLOW | _HIDE_READY | _QUIET)
            self._add_action(self._units_sent + 1, _GUARD)
            return _SAVEPOINT + message
        if self._may_wrap(wanted, self._units_sent):
            return self._wrap_extended(message)
        return None

    def _wanted_extended(self, sql: str) -> bool:
        """Whether the policy wants `sql`, sent by Parse, in a hidden transaction.

        Never a COPY: the backend skips the Sync sent along with it, and libpq
        sends another one after the data, which the relay would hold.
        """
        return self.session.run_in_transaction and not _COPY_RE.match(sql)

    def _wrap_extended(self, message: bytes) -> bytes:
        """Precede the unit's first message with a hidden BEGIN."""
        self._units_sent += 1
        self._add_action(self._units_sent, _SWALLOW | _HIDE_READY | _SNAPSHOT)
        self._wrap_at_sync = True
        return self._begin() + message

    def _end_hidden_transaction(self, status: bytes, failed: bool) -> bytes:
        """Commit the hidden transaction, or fail it as a COMMIT would fail.

        Returns what to send in place of the unit's ReadyForQuery: nothing
        when a unit sent now answers for it.
        """
        self._awaiting_commit = False
        tag, self._held_tag = self._held_tag, b""
        if status == b"E" or failed:
            self._to_backend += self._hidden(_ROLLBACK, _SWALLOW | _AS_IDLE)
        elif status != b"T":  # not in the transaction after all: pass it on
            self._release_held()
            return tag + pq.ready_for_query(status)
        else:
            refusal = self._policy.check_commit(self.session) if self._policy else None
            if refusal is None:
                self._held_tag = tag
                check = self._commit_check()
                if check:
                    self._to_backend += self._hidden(
                        check, _SWALLOW | _HIDE_READY | _PRE_COMMIT
                    )
                self._to_backend += self._hidden(_COMMIT, _SWALLOW | _RELEASE_TAG)
            else:
                self._to_backend += self._hidden(
                    pq.query(refusal_sql(refusal)), _HIDE_READY
                ) + self._hidden(_ROLLBACK, _SWALLOW | _AS_IDLE)
        self._release_held()
        return b""

    def _hidden(self, message: bytes, action: int) -> bytes:
        self._units_sent += 1
        self._parses_sent = 0
        self._add_action(self._units_sent, action)
        return message

    def _next_piece(self) -> bytes:
        """Build the Query of the next piece of a split query (unit counted).

        Each piece is checked when the pieces before it have run, so a COMMIT
        sees what its transaction did. A refused piece ends the query.
        """
        piece = self._pieces.popleft()
        if piece.commit:
            refusal = self._commit_refusal(self._units_sent, checkable=True)
            if refusal is not None:
                self._pieces.clear()
                return pq.query(refusal_sql(refusal)) + self._inject_rollback()
        verdict = self._check(piece.sql)
        if isinstance(verdict, Refusal):
            self._pieces.clear()
            return pq.query(refusal_sql(verdict))
        self._note_tags(self._units_sent, self.session.command_tags)
        if self._pieces:
            self._add_action(self._units_sent, _NEXT_PIECE)
        message = pq.query(piece.sql if verdict is None else verdict)
        return self._take_commit_prefix(message) or message

    def _after_piece(self, failed: bool) -> bool:
        """At the end of a piece: send the next one, if any; True if sent."""
        sent = False
        if failed:
            # As PostgreSQL does: an error skips the rest of the query.
            self._pieces.clear()
        elif self._pieces:
            self._units_sent += 1
            self._parses_sent = 0
            self._to_backend += self._next_piece()
            sent = True
        if not self._pieces:
            self._release_held()
        return sent

    def _release_held(self) -> None:
        if self._held and not self._holding():
            held = bytes(self._held)
            self._held.clear()
            self.from_client(held)

    def _check(self, sql: str) -> Refusal | str | None:
        if self._endpoint.faults.take_statement(sql):
            self.session.run_in_transaction = False
            return SERVER_UNAVAILABLE
        if self._status == b"T" and self._schema is not None and self._schema.stale():
            return _STALE_SCHEMA
        if self._policy is None:
            return None
        self.session.run_in_transaction = False
        self.session.command_tags = ()
        return self._policy.check_statement(sql, self.session)

    def _note_tags(self, unit: int, tags: tuple[str | None, ...]) -> None:
        """Remember the command tags DSQL gives for a statement of `unit`."""
        if tags or unit in self._tags:
            self._tags.setdefault(unit, []).extend(tags or (None,))

    def _parse_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        body = bytes(view[pos + 5 : end])
        name, at = pq.cstring(body, 0)
        sql, at = pq.cstring(body, at)
        if not name and _COMMIT_RE.match(sql):
            refusal = self._commit_refusal(
                self._units_sent + 1, checkable=self._parses_sent == 1
            )
            if refusal is not None:
                self._rollback_after_sync = True
                return self._parse(name, refusal_sql(refusal), body, at, [])
            return self._take_commit_prefix(bytes(view[pos:end]))
        verdict = self._check(sql)
        wanted = self._wanted_extended(sql)
        if name:
            # Wrapped or guarded, if need be, where it runs: at its Bind.
            tags = self.session.command_tags
            self._statements[name] = (sql, True, wanted, tags, body[at:])
        elif not isinstance(verdict, Refusal):
            self._note_tags(self._units_sent + 1, self.session.command_tags)
        if (
            not isinstance(verdict, Refusal)
            and self._parses_sent == 1
            and _synced_alone(view, end)
        ):
            # A named statement's first run, when its Bind follows in the
            # same Sync, is guarded or wrapped here: its Bind comes too late.
            message = (
                bytes(view[pos:end])
                if verdict is None
                else self._parse(name, verdict, body, at, None)
            )
            enclosed = self._enclose(
                sql if verdict is None else verdict,
                message,
                wanted,
                lambda: _next_bind(view, end),
                body[at:],
            )
            if enclosed is not None:
                return enclosed
        if verdict is None:
            return None
        if isinstance(verdict, Refusal):
            # Keep the parameter count so that the client's Bind still fits.
            (count,) = _INT16.unpack_from(body, at)
            oids = struct.unpack_from(f"!{count}I", body, at + 2)
            used = max((int(m) for m in _PARAM_RE.findall(sql)), default=0)
            undeclared = [
                i + 1 for i in range(max(count, used)) if i >= count or oids[i] == 0
            ]
            return self._parse(name, refusal_sql(verdict, undeclared), body, at, None)
        return self._parse(name, verdict, body, at, None)

    def _bind_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        """Check a prepared statement again each time it runs."""
        body = bytes(view[pos + 5 : end])
        portal, at = pq.cstring(body, 0)
        statement, _ = pq.cstring(body, at)
        known = self._statements.get(statement)
        if known is None:
            return None
        sql, fresh, wanted, tags, types = known
        if _COMMIT_RE.match(sql):
            refusal = self._commit_refusal(
                self._units_sent + 1, checkable=self._parses_sent == 0
            )
            if refusal is None:
                return self._take_commit_prefix(bytes(view[pos:end]))
            self._rollback_after_sync = True
            return self._refuse_bind(portal, refusal)
        if fresh:
            # Its first run was checked at its Parse, which psycopg sends
            # right before (in the same Sync or the previous one).
            self._statements[statement] = (sql, False, wanted, tags, types)
        else:
            verdict = self._check(sql)
            if isinstance(verdict, Refusal):
                return self._refuse_bind(portal, verdict)
            # A rewrite cannot apply to a prepared statement: it runs as prepared.
            wanted = self._wanted_extended(sql)
        self._note_tags(self._units_sent + 1, tags)
        if self._parses_sent == 0 and _synced_alone(view, end):
            return self._enclose(sql, bytes(view[pos:end]), wanted, lambda: body, types)
        return None

    def _refuse_bind(self, portal: str, refusal: Refusal) -> bytes:
        """Bind `portal` to an extra unnamed statement raising `refusal`.

        The backend answers the extra Parse too: its ParseComplete is hidden.
        """
        unit = self._units_sent + 1
        self._hidden_parses.setdefault(unit, set()).add(self._parses_sent)
        self._parses_sent += 1
        parse = self._parse("", refusal_sql(refusal), b"\0\0", 0, [])
        no_params = _INT16.pack(0) * 3
        return parse + pq.message(b"B", portal.encode() + b"\0\0" + no_params)

    @staticmethod
    def _parse(
        name: str, sql: str, body: bytes, at: int, oids: list[int] | None
    ) -> bytes:
        """Build a Parse; `oids` None keeps the client's parameter types."""
        if oids is None:
            types = body[at:]
        else:
            types = _INT16.pack(len(oids)) + b"".join(_INT32.pack(o) for o in oids)
        return pq.message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + types)

    def _commit_refusal(self, unit: int, *, checkable: bool) -> Refusal | None:
        """Decide whether the COMMIT answered in `unit` must fail.

        Consumes an injected conflict, or else an injected commit drop. If
        the transaction wrote and the COMMIT begins its unit (`checkable`),
        the limits' check goes first, in `unit`, and the COMMIT in the next
        one: `_take_commit_prefix` gives the check.
        """
        if self._status != b"T":
            return None
        refusal = self._judge_commit()
        if refusal is not None:
            return refusal
        if self._replays and not checkable:
            return _CONFLICT  # no room for the replays: judged at once
        committed = self._endpoint.faults.take_commit()
        if committed is False:
            return SERVER_UNAVAILABLE
        before = [
            (message, _SWALLOW | _HIDE_READY | _PRE_COMMIT | _REPLAY)
            for message in (
                [_REPLAY_LOCK_TIMEOUT, *self._replays] if self._replays else []
            )
        ]
        check = self._commit_check()
        if check:
            before.append((check, _SWALLOW | _HIDE_READY | _PRE_COMMIT))
        if checkable and before:
            for message, action in before:
                self._add_action(unit, action)
                self._units_sent += 1
                unit += 1
                self._commit_prefix += message
            self._look_for_holders = bool(self._replays)
        if committed:
            self._add_action(unit, _UNAVAILABLE_AT_COMMIT)
        elif self._endpoint.take_commit_drop():
            self._add_action(unit, _DROP_AT_COMMIT)
        return None

    def _judge_commit(self) -> Refusal | None:
        """Refuse a COMMIT for a schema change, the policy or a conflict."""
        if self._schema is not None and self._schema.stale():
            return _STALE_SCHEMA
        refusal = self._policy.check_commit(self.session) if self._policy else None
        if refusal is None and self._doomed:
            refusal = _CONFLICT
        if refusal is None:
            code = self._endpoint.take_conflict()
            if code is not None:
                refusal = Refusal("40001", CONFLICT_MESSAGES[code])
        return refusal

    def _commit_check(self) -> bytes:
        """The Query checking DSQL's limits before a COMMIT, if one is due.

        The size: measuring costs a scan of each table written; it is skipped
        when the whole server wrote less WAL than the limit since the
        transaction's snapshot (the WAL holds every row version written, as
        stored). The rows, counting those foreign key actions changed: only
        while a foreign key with actions exists (see `_yield`).
        """
        if not self._wrote:
            return b""
        checks = []
        rows = getattr(self._policy, "transaction_row_limit", None)
        if rows is not None and self._start_rows is not None:
            checks.append(
                f"SELECT dsql_local.check_rows({int(rows)}, {self._start_rows})"
            )
        limit = getattr(self._policy, "transaction_size_limit", None)
        if limit is not None:
            check = f"dsql_local.check_commit({int(limit)})"
            if self._start_lsn:
                checks.append(
                    "SELECT CASE WHEN pg_catalog.pg_current_wal_insert_lsn()"
                    f" - '{self._start_lsn}'::pg_catalog.pg_lsn > {int(limit)}"
                    f" THEN {check} END"
                )
            else:
                checks.append(f"SELECT {check}")
        return pq.query(";".join(checks)) if checks else b""

    def _fk_actions(self) -> bool:
        """Whether rows changed by foreign key actions are to be counted."""
        if getattr(self._policy, "transaction_row_limit", None) is None:
            return False
        holders: Holders | None = getattr(self._endpoint, "holders", None)
        return holders is not None and holders.fk_actions()

    def _begin(self) -> bytes:
        """A hidden BEGIN and the query taking its snapshot."""
        return _BEGIN_ROWS if self._fk_actions() else _BEGIN

    def _take_commit_prefix(self, message: bytes) -> bytes | None:
        """`message` after the limits' check, if one was planned; else None."""
        prefix, self._commit_prefix = self._commit_prefix, b""
        return prefix + message if prefix else None

    def _add_action(self, unit: int, action: int) -> None:
        self._unit_actions[unit] = Unit(
            int(self._unit_actions.get(unit, _NONE)) | action
        )

    def _inject_rollback(self) -> bytes:
        """Follow a failed COMMIT with a hidden ROLLBACK, as DSQL ends it."""
        self._unit_actions[self._units_sent] = Unit.AS_IDLE
        self._units_sent += 1
        self._unit_actions[self._units_sent] = Unit.SWALLOW | Unit.HIDE_READY
        return _ROLLBACK

    # -- giving way to a transaction that commits first --------------------

    @property
    def transaction(self) -> int:
        """The number of this connection's current (or next) transaction."""
        return self._transaction

    def give_way(self, transaction: int) -> None:
        """From another relay's thread: roll back `transaction` if still open."""
        self._give_way = transaction
        if self._waker is not None:
            self._waker()

    def woken(self) -> None:
        self._try_giving_way()

    def _try_giving_way(self) -> None:
        """Roll back the backend's transaction, asked to; begin a doomed one.

        Only between units (the backend idle in its transaction): else at
        the end of the units in flight. The client's data waits meanwhile.
        """
        wanted = self._give_way
        if wanted is None:
            return
        if wanted != self._transaction or self._status == b"I":
            self._give_way = None  # it has ended meanwhile
            return
        if self._units_done != self._units_sent or self._holding():
            return
        self._give_way = None
        self._giving_way = True
        failed = self._status == b"E"
        self._to_backend += self._hidden(_ROLLBACK, _SWALLOW | _HIDE_READY | _QUIET)
        begin = _SWALLOW | _HIDE_READY | _SNAPSHOT
        if failed:
            self._to_backend += self._hidden(self._begin(), begin)
            self._to_backend += self._hidden(
                pq.query(refusal_sql(_CONFLICT)),
                _SWALLOW | _HIDE_READY | _QUIET | _GAVE_WAY,
            )
        else:
            self._to_backend += self._hidden(self._begin(), begin | _GAVE_WAY)
        logger.debug("a transaction gave way to one that committed first")

    # -- backend -> client -------------------------------------------------

    def from_backend(self, data: bytes) -> None:
        # Stopped only by a commit drop: nothing after it reaches the client.
        self._backend_framer.feed(data)
        if self._give_way is not None:
            self._try_giving_way()

    def _backend_watches(self) -> frozenset[int] | None:
        if self._dropping:
            return None
        if self._unit_actions or self._late_refusal is not None or self._commit_error:
            return _EVERY_KIND
        return self._backend_kinds

    def _backend_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if kind == _PARAMETER_STATUS:
            # What the policy cannot have seen (it refuses the SET).
            pq.check_parameter_status(view[pos + 5 : end])
        unit = self._units_done + 1
        action = int(self._unit_actions.get(unit, _NONE))
        if kind == _Z:
            return self._end_of_unit_answer(unit, action, view[pos + 5 : pos + 6])
        if self._late_refusal is not None or action & (_GUARD | _ANSWER | _SNAPSHOT):
            return self._conflict_message(action, kind, view, pos, end)
        if kind == _PARSE_COMPLETE:
            return self._parse_complete(unit, action)
        if kind == _E:
            return self._backend_error(action, view, pos, end)
        if kind == _COPY_IN and action & _AUTOCOMMIT:
            # COPY FROM STDIN in a hidden transaction: let its data through.
            self._copy_in = True
            self._release_held()
        swallow = action & _SWALLOW
        if kind == _C and (not swallow or self._commit_error):
            return self._command_complete(action, view, pos, end)
        return b"" if swallow else None

    def _end_of_unit_answer(
        self, unit: int, action: int, status_byte: memoryview
    ) -> bytes | None:
        """Handle a ReadyForQuery; fail a statement refused after it ran.

        It fails if its transaction can still be failed: a hidden one, or
        one still open with nothing sent after the unit. Otherwise (it
        committed, or a pipeline goes on) it stands as the backend answered.
        """
        status = bytes(status_byte)
        refusal, self._late_refusal = self._late_refusal, None
        if refusal is None:
            return self._ready_for_query(unit, action, status)
        answer, self._late_answer = bytes(self._late_answer), bytearray()
        if status != b"T" or not (action & _AUTOCOMMIT or unit == self._units_sent):
            replaced = self._ready_for_query(unit, action, status)
            return answer + (
                pq.ready_for_query(status) if replaced is None else replaced
            )
        error = pq.error_response(refusal.sqlstate, refusal.message)
        self._unit_failed = True
        if not action & _AUTOCOMMIT:
            # The backend's transaction fails as the client is told.
            self._to_backend += self._hidden(
                pq.query(refusal_sql(refusal)), _SWALLOW | _HIDE_READY | _QUIET
            )
            status = b"E"
        if self._write is not None and action & _GUARD:
            self._write.answer += error  # after what the write answered before
            error = b""
        replaced = self._ready_for_query(unit, action, status)
        return error + (pq.ready_for_query(status) if replaced is None else replaced)

    def _backend_error(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if action & _PRE_COMMIT:
            # The COMMIT that follows answers with the first such error; a
            # replay's means another transaction committed the row first.
            if not self._commit_error:
                if action & _REPLAY:
                    self._commit_error = pq.error_response(*_CONFLICT)
                else:
                    fields = pq.parse_fields(view[pos + 5 : end])
                    self._commit_error = pq.build_fields(b"E", fields)
            return b""
        if action & _QUIET:
            return b""
        self._unit_failed = True
        if self._schema is not None:
            self._schema.error()
        return self._rewrite_error(view[pos + 5 : end])

    def _command_complete(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if self._commit_error:
            # The limits' check failed: the backend rolled back.
            error, self._commit_error = self._commit_error, b""
            self._unit_failed = True
            return error
        tag, _ = pq.cstring(view, pos + 5)
        replacement: bytes | None = None
        tags = self._tags.get(self._units_done + 1)
        if tags:
            wanted = tags.pop(0)
            if wanted is not None:
                tag = wanted
                replacement = pq.message(b"C", wanted.encode() + b"\0")
        if action & _DROP_AT_COMMIT and tag == "COMMIT":
            # It committed; the client shall not know.
            self._dropping = True
            return b""
        if action & _UNAVAILABLE_AT_COMMIT and tag == "COMMIT":
            # It committed; the client is told it may not have.
            return pq.error_response(*SERVER_UNAVAILABLE)
        if self._schema is not None:
            self._schema.command_done(tag)
        if tag in FK_DDL_TAGS:
            holders: Holders | None = getattr(self._endpoint, "holders", None)
            if holders is not None:
                holders.tables_changed()
        verb, _, count = tag.rpartition(" ")
        if count.isdigit() and count != "0" and verb.split(" ", 1)[0] in _MUTATING_TAGS:
            self._wrote = True
        if self._policy is not None:
            refusal = self._policy.statement_done(tag, self.session)
            if refusal is not None:
                # Whether it can still fail is known at the unit's end.
                self._late_refusal = refusal
                self._late_answer = bytearray(replacement or view[pos:end])
                return b""
        if action & _AUTOCOMMIT:
            # Confirmed only once the hidden COMMIT has succeeded.
            self._held_tag = replacement or bytes(view[pos:end])
            return b""
        return replacement

    def _ready_for_query(self, unit: int, action: int, status: bytes) -> bytes | None:
        """End a unit: apply its action and note the transaction status."""
        self._units_done = unit
        self._parses_done = 0
        self._copy_in = False  # a failed COPY ends before its data does
        self._hidden_parses.pop(unit, None)
        self._tags.pop(unit, None)
        failed, self._unit_failed = self._unit_failed, False
        if action:
            del self._unit_actions[unit]
            if action & (_GUARD | _ANSWER):
                return self._end_of_write(action, status)
        self._set_status(b"I" if action & _AS_IDLE else status)
        if action & _GAVE_WAY:
            self._doomed = True
            self._giving_way = False
            self._release_held()
        if action & _NEXT_PIECE and self._after_piece(failed):
            return b""
        if action & _AUTOCOMMIT:
            return self._end_hidden_transaction(status, failed)
        if action & _HIDE_READY:
            return b""
        if action & _RELEASE_TAG:
            tag, self._held_tag = self._held_tag, b""
            return (b"" if failed else tag) + pq.ready_for_query(status)
        return pq.ready_for_query(b"I") if action & _AS_IDLE else None

    def _conflict_message(
        self, action: int, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A message of a guarded write, of its answer, or of a BEGIN's snapshot.

        After a late refusal, the rest of the unit's answer waits for its end.
        """
        if self._late_refusal is not None:
            self._late_answer += view[pos:end]
            return b""
        if action & _GUARD:
            return self._write_message(kind, view, pos, end)
        if action & _ANSWER:
            return self._answer_message(kind, view, pos, end)
        return self._snapshot_message(action, kind, view, pos, end)

    def _snapshot_message(
        self, action: int, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """Note where the WAL stood at the snapshot; hide the hidden SELECT."""
        if kind == _DATA_ROW:
            # One text column: (count 1, length, value).
            lsn, _, rows = (
                bytes(view[pos + 11 : end]).decode("ascii", "replace").partition(" ")
            )
            self._start_lsn = lsn if _LSN.fullmatch(lsn) else ""
            self._start_rows = int(rows) if rows.isdigit() else None
            return b""
        if (
            kind == _ROW_DESCRIPTION
            or (kind == _C and bytes(view[pos + 5 : pos + 11]) == b"SELECT")
            or (action & _SWALLOW and kind != _E)
        ):
            return b""  # the snapshot's, not the client's
        if kind == _E:
            return self._backend_error(action, view, pos, end)
        return self._command_complete(action, view, pos, end) if kind == _C else None

    def _write_message(self, kind: int, view: memoryview, pos: int, end: int) -> bytes:
        """Hold a guarded write's answer until it is known to stand."""
        write = self._write
        assert write is not None
        message = view[pos:end]
        if kind == _E:
            fields = pq.parse_fields(view[pos + 5 : end])
            if fields.get("C") in _CONFLICT_SQLSTATES:
                write.refused = True
                write.holder_check = holder_check(fields.get("W", ""))
                return b""
            self._unit_failed = True
            if self._schema is not None:
                self._schema.error()
            rewritten = self._rewrite_error(view[pos + 5 : end])
            write.answer += message if rewritten is None else rewritten
            return b""
        if kind == _PARSE_COMPLETE:
            self._parses_done += 1
        if kind in _KEPT_AFTER_REFUSAL:
            write.kept += message
        if kind == _C:
            replaced = self._command_complete(0, view, pos, end)
            write.answer += message if replaced is None else replaced
        else:
            write.answer += message
        return b""

    def _end_of_write(self, action: int, status: bytes) -> bytes | None:
        """At a guarded write's ReadyForQuery: send its answer, or answer it as DSQL.

        A write PostgreSQL refused for another transaction's sake is undone
        (to the savepoint before it) and answered by a plain read of the
        rows it would have touched; the transaction will fail at COMMIT.
        The read's own ReadyForQuery ends it.
        """
        write = self._write
        assert write is not None
        if action & _ANSWER:
            self._write = None
            self._set_status(status)
            self._release_held()
            return None
        if not write.refused:
            self._write = None
            self._set_status(status)
            self._release_held()
            return bytes(write.answer) + pq.ready_for_query(status)
        if write.holder_check is None:
            self._doomed = True  # who held the row is not known: it wins
        elif write.holder_check:
            self._replays.append(pq.query(write.holder_check))
        self._replays.append(self._replay_of(write))
        self._to_backend += self._hidden(_ROLLBACK_TO, _SWALLOW | _HIDE_READY | _QUIET)
        self._to_backend += self._hidden(self._answer_query(write), _ANSWER)
        # The extended protocol's ParseComplete, BindComplete and row
        # description stand; the rows come from the read.
        return bytes(write.kept) if write.bind is not None else b""

    @staticmethod
    def _replay_of(write: _Write) -> bytes:
        """The refused write itself, to run again before the COMMIT."""
        if write.bind is None:
            return pq.query(write.sql)
        params, _ = _split_bind(write.bind)
        return (
            pq.message(b"P", b"\0" + write.sql.encode() + b"\0" + write.types)
            + pq.message(b"B", b"\0\0" + params + _INT16.pack(0))
            + pq.message(_EXECUTE.to_bytes(1, "big"), b"\0" + _INT32.pack(0))
            + _SYNC
        )

    @staticmethod
    def _answer_query(write: _Write) -> bytes:
        """The read that answers a refused write, with the client's parameters."""
        read = write.guard.read
        if write.bind is None:
            return pq.query(read)
        name = _ANSWER_STATEMENT + b"\0"
        params, formats = _split_bind(write.bind)
        if not write.guard.rows:
            formats = _INT16.pack(0)
        return (
            pq.message(b"C", b"S" + name)
            + pq.message(b"P", name + read.encode() + b"\0" + write.types)
            + pq.message(b"B", b"\0" + name + params + formats)
            + pq.message(_EXECUTE.to_bytes(1, "big"), b"\0" + _INT32.pack(0))
            + _SYNC
        )

    def _answer_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """Pass on the read's rows, if the write returns rows, and its count."""
        write = self._write
        assert write is not None
        if kind == _E:
            self._unit_failed = True
            return self._rewrite_error(view[pos + 5 : end])
        if kind in (_ROW_DESCRIPTION, _DATA_ROW):
            return None if write.guard.rows else b""
        if kind == _C:
            tag, _ = pq.cstring(view, pos + 5)
            tagged = pq.message(
                b"C", f"{write.guard.verb} {tag.rsplit(' ', 1)[-1]}".encode() + b"\0"
            )
            replaced = self._command_complete(0, memoryview(tagged), 0, len(tagged))
            return tagged if replaced is None else replaced
        if kind in b"123":  # the read's own Close, Parse and Bind
            return b""
        return None

    def _parse_complete(self, unit: int, action: int) -> bytes | None:
        index = self._parses_done
        self._parses_done += 1
        if (action and action & _SWALLOW) or index in self._hidden_parses.get(unit, ()):
            return b""
        return None

    def _rewrite_error(self, body: memoryview) -> bytes | None:
        fields = pq.parse_fields(body)
        if REFUSE_FUNCTION in fields.get("W", ""):
            return pq.build_fields(b"E", fields)
        if fields.get("C") in _CONFLICT_SQLSTATES:
            fields["C"] = "40001"
            fields["M"] = OC000_MESSAGE
            fields.pop("D", None)
            fields.pop("H", None)
            return pq.build_fields(b"E", fields)
        return None

    def _set_status(self, status: bytes) -> None:
        if status == b"I" and self._status != b"I":
            self._transaction += 1
        self._status = status
        session = self.session
        if status == b"I":
            self._replays.clear()
            self._doomed = self._wrote = False
            self._start_lsn = ""
            self._start_rows = None
            if self._schema is not None:
                self._schema.idle()
            session.in_transaction = False
            session.transaction_started_at = None
            session.scratch.clear()
            self._pending_start = None
        else:
            session.in_transaction = True
            if session.transaction_started_at is None:
                session.transaction_started_at = self._pending_start or time.monotonic()


def _next_bind(view: memoryview, end: int) -> bytes:
    """The body of the Bind that follows `end` (`_synced_alone` holds)."""
    pos = end
    while view[pos] != _B:
        pos += 1 + _UNPACK_LEN(view, pos + 1)[0]
    return bytes(view[pos + 5 : pos + 1 + _UNPACK_LEN(view, pos + 1)[0]])


def _split_bind(body: bytes) -> tuple[bytes, bytes]:
    """Split a Bind body after its names: (parameters, result formats)."""
    _, at = pq.cstring(body, 0)
    _, at = pq.cstring(body, at)
    start = at
    (count,) = _INT16.unpack_from(body, at)
    at += 2 + 2 * count
    (count,) = _INT16.unpack_from(body, at)
    at += 2
    for _ in range(count):
        (size,) = _INT32.unpack_from(body, at)
        at += 4 + (0 if size == 0xFFFFFFFF else size)
    return body[start:at], body[at:]


def _synced_alone(view: memoryview, end: int) -> bool:
    """Whether the client data after `end` runs one statement, then Sync.

    That is: Bind and Describe messages, one Execute, and a Sync, all already
    received, as libpq sends a statement outside pipeline mode.
    """
    executes = 0
    pos, n = end, len(view)
    while n - pos >= 5:
        kind = view[pos]
        pos += 1 + _UNPACK_LEN(view, pos + 1)[0]
        if pos > n:
            return False
        if kind == _S:
            return executes == 1
        if kind == _EXECUTE:
            executes += 1
        elif kind not in (_B, _DESCRIBE, _FLUSH):
            return False
    return False
