"""Hidden transactions: a statement the policy wants in a transaction.

A statement sent outside a transaction that the policy wants in one
(`Session.run_in_transaction`) runs between a hidden BEGIN and a hidden
COMMIT that check_commit decides on: DSQL judges it before it commits. Its
CommandComplete is held until that COMMIT has succeeded, and other client
data waits, but the data of a COPY it runs (see `_copy`). A COMMIT that
fails is a refusal followed by a hidden ROLLBACK, so the client is idle
afterwards, as with DSQL.

DSQL never makes a writer wait, and a statement in autocommit is a
transaction that commits at once: of it and an open transaction that wrote
the same row, it commits first and wins. When the wrapped statement meets
another transaction's row (PostgreSQL's lock timeout names the row or key),
it runs again, once, in a new hidden transaction, while the transactions it
waits for are made to give way (see `_yield`): their COMMIT will fail.

Statements sent together in autocommit, a query text of several statements
or a pipeline's statements before one Sync, are one implicit transaction in
PostgreSQL, which commits at its end: in DSQL too, and it wins over an open
transaction holding a row it writes. In strict mode such a batch of plain
reads and writes (`_split.plain_statements`) runs as the client sent it,
unwrapped, while this part keeps what was sent (`record`: the pipeline's
messages up to its Sync, as they went to the backend) and holds the
answers (`Unit.BATCH`). When a statement meets another transaction's row,
PostgreSQL fails and rolls back the whole batch: its error and the answers
held are dropped, and the batch runs again, once, whole, in a hidden
transaction (the named statements it prepared closed first), while the
holders give way; its answers then pass as they come, and its hidden COMMIT
ends it, an error rolling all of it back. Any other error passes after the
answers held, and ends the batch as PostgreSQL ends it. A batch that asks
for its answers before its end (a Flush), whose answers outgrow
`_HOLD_LIMIT` or messages `_RECORD_LIMIT`, or that holds anything else
(a Close, a statement not plain, a COPY), gets its answers at once and
fails with the conflict, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._copy import is_copy
from ._limits import Limits
from ._policy import Session, StatementPolicy
from ._split import plain_statements
from ._units import (
    AS_IDLE,
    AUTOCOMMIT,
    BATCH,
    HIDDEN,
    HIDE_READY,
    PRE_COMMIT,
    QUIET,
    RELEASE_TAG,
    RETRY,
    SNAPSHOT,
    SWALLOW,
    Units,
)
from ._yield import holder_check, kept_check

# The run again waits for the holders it makes give way.
_RETRY_LOCK_TIMEOUT = pq.query("SET LOCAL lock_timeout = '2s'")
# A batch's answers held beyond this are passed on: it will not run again.
_HOLD_LIMIT = 1 << 20
# Nor does a batch that sends more than this.
_RECORD_LIMIT = 16 << 20
# What a batch's run again does not answer again: a notification, a setting.
_NOT_ANSWERS = frozenset(b"AS")
_ASIDE = frozenset(b"ASN")  # and a notice: which may come before any answer
_P, _B, _QUERY = b"PBQ"
# The answer a batch's first message gets first: else it was not the first.
_FIRST_ANSWER = {_P: m.PARSE_COMPLETE, _B: ord("2")}


@dataclass
class Batch:
    """Statements sent together in autocommit: one implicit transaction."""

    unit: int
    """Its unit: its ReadyForQuery ends it."""
    first: int
    """The type of its first message (a Query, Parse or Bind)."""
    again: bytearray = field(default_factory=bytearray)
    """What it sent the backend, to run it again."""
    recording: bool = False
    """Extended protocol: its messages are coming, up to its Sync."""
    holding: bool = True
    """Its answers wait, so that it can run again."""
    can_run_again: bool = True
    names: list[bytes] = field(default_factory=list)
    """The statements it prepared (Parse with a name)."""
    held: bytearray = field(default_factory=bytearray)
    conflict: bytes = b""
    """The error of a statement that met another transaction's row."""
    check: str = ""
    """What checks, as its run again begins, that the row it met is as it
    met it (see `_yield.kept_check`)."""


class HiddenHost(Protocol):
    """What hidden transactions need from the relay around them."""

    def release_held(self) -> None:
        """Pass on the client data that waited, if it need wait no more."""
        ...

    def look_for_holders(self) -> None:
        """Have the holders of the rows the statement just sent waits for
        give way, once it is sent (see `_yield`)."""
        ...

    @property
    def to_client(self) -> bytearray:
        """The bytes queued for the client."""
        ...

    def statement_error(self, body: memoryview) -> bytes | None:
        """Note a client statement's error; the error to send, None as is."""
        ...

    def command_complete(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """The relay's handling of a CommandComplete (tags, limits)."""
        ...


class HiddenTransactions:
    """Wrap statements sent in autocommit in a transaction of their own."""

    def __init__(
        self,
        units: Units,
        host: HiddenHost,
        policy: StatementPolicy | None,
        session: Session,
        *,
        limits: Limits,
    ) -> None:
        self._units = units
        self._host = host
        self._limits = limits
        self._policy = policy
        self._session = session
        self.wrap_at_sync = False
        """An extended-protocol statement is wrapped: its Sync is to come."""
        self.awaiting_commit = False
        """A wrapped statement's answer, then its hidden COMMIT's, is awaited."""
        self._held_tag = b""
        self._again: bytes | None = None
        """The wrapped statement, to run again if it meets a held row."""
        self._retry = False
        self._check = ""
        """What checks the row the wrapped statement met (see `_begin_again`)."""
        self._batch: Batch | None = None

    def may_wrap(self, wanted: bool, units_before: int) -> bool:
        """Whether to run a statement in a hidden transaction.

        Only when the policy asks (`wanted`), outside a transaction, and with
        every earlier answer in, so that the status is known to be idle.
        """
        return (
            wanted
            and not self.wrap_at_sync
            and self._batch is None
            and self._units.idle_after(units_before)
        )

    def wrap_query(self, sql: str) -> bytes | None:
        """The Query just counted, in a hidden transaction if the policy asks.

        Several plain statements are a batch instead (see `start_batch`).
        """
        units = self._units
        if not self.may_wrap(self._session.run_in_transaction, units.sent - 1):
            if ";" in sql and plain_statements(sql) > 1:
                self.start_batch(sql, m.Q)
            return None
        # The hidden BEGIN takes the client's unit; the query the next.
        units.add(units.sent, HIDDEN | SNAPSHOT)
        units.sent += 1
        units.add(units.sent, HIDE_READY | AUTOCOMMIT)
        self.awaiting_commit = True
        self._again = None if is_copy(sql) else pq.query(sql)
        return self._limits.begin() + pq.query(sql)

    def wrap_extended(self, message: bytes, again: bytes | None = None) -> bytes:
        """Precede the unit's first message with a hidden BEGIN.

        `again` runs the statement again (see `run_again`), if it can be.
        """
        units = self._units
        units.sent += 1
        units.add(units.sent, HIDDEN | SNAPSHOT)
        self.wrap_at_sync = True
        self._again = again
        return self._limits.begin() + message

    def conflict(self, body: memoryview) -> bool:
        """A wrapped statement's error: whether it met another transaction's
        row or key, and will run again once the holders gave way; or whether
        its run again was refused before it ran (its error was sent)."""
        if self._units.status == b"E":
            return True  # the transaction failed before it: see `_begin_again`
        context = _row_met(body)
        if self._again is None or context is None:
            return False
        self._retry = True
        self._check = kept_check(context)
        return True

    def at_sync(self) -> bytes | None:
        """The Sync (just counted) of a wrapped statement, or None."""
        batch = self._batch
        if batch is not None and batch.recording:
            batch.recording = False
            batch.again += m.SYNC
            if batch.unit != self._units.sent:
                self._give_up(batch)  # a Query came in between
            # What follows waits for its end, to follow a run again.
            self.awaiting_commit = batch.can_run_again
        if not self.wrap_at_sync:
            return None
        self.wrap_at_sync = False
        self._units.add(self._units.sent, HIDE_READY | AUTOCOMMIT)
        self.awaiting_commit = True
        return m.SYNC

    def hold_tag(self, message: bytes) -> None:
        """Hold the CommandComplete until the hidden COMMIT has succeeded."""
        self._held_tag = message

    def end(self, status: bytes, failed: bool) -> bytes:
        """Commit the hidden transaction, or fail it as a COMMIT would fail.

        Returns what to send in place of the unit's ReadyForQuery: nothing
        when a unit sent now answers for it.
        """
        units = self._units
        again, self._again = self._again, None
        retry, self._retry = self._retry, False
        if retry and again is not None:
            # Undone; run again in a new transaction, the holders giving way.
            units.send(m.ROLLBACK, HIDDEN)
            self._begin_again(self._check)
            units.send(again, HIDE_READY | AUTOCOMMIT | RETRY)
            self._host.look_for_holders()
            return b""
        self.awaiting_commit = False
        self._check = ""
        tag, self._held_tag = self._held_tag, b""
        if status == b"E" or failed:
            units.send(m.ROLLBACK, SWALLOW | AS_IDLE)
        elif status != b"T":  # not in the transaction after all: pass it on
            self._host.release_held()
            return tag + pq.ready_for_query(status)
        else:
            policy = self._policy
            refusal = policy.check_commit(self._session) if policy else None
            if refusal is None:
                self._held_tag = tag
                check = self._limits.commit_check()
                if check:
                    units.send(check, HIDDEN | PRE_COMMIT)
                units.send(m.COMMIT, SWALLOW | RELEASE_TAG)
            else:
                units.send(m.refusal_query(refusal), HIDE_READY)
                units.send(m.ROLLBACK, SWALLOW | AS_IDLE)
        self._host.release_held()
        return b""

    def _begin_again(self, check: str) -> None:
        """Begin the transaction of a run again: its snapshot, then `check`.

        The run again's snapshot is taken after the first run met the held
        row: if the holder committed in between, it would see the change,
        and succeed, where DSQL fails it (it began before the holder
        committed). `check` fails it then, with 40001 ``(OC000)`` sent as
        its error (what it then runs fails unseen: see `conflict` and
        `batch_message`). A holder that commits after the snapshot fails
        its write (a serialization error, as DSQL's).
        """
        units = self._units
        units.send(self._limits.begin(), HIDDEN | SNAPSHOT)
        if check:
            units.send(pq.query(check), HIDDEN)
        units.send(_RETRY_LOCK_TIMEOUT, HIDDEN | QUIET)

    def release_tag(self, status: bytes, failed: bool) -> bytes:
        """The hidden COMMIT's ReadyForQuery: the held tag, unless it failed."""
        tag, self._held_tag = self._held_tag, b""
        return (b"" if failed else tag) + pq.ready_for_query(status)

    # -- statements sent together in autocommit ----------------------------

    @property
    def recording(self) -> bool:
        """Whether the client's messages are kept: a batch's, up to its Sync."""
        batch = self._batch
        return batch is not None and batch.recording

    def start_batch(self, sql: str, first: int) -> None:
        """Hold the answers of statements sent together in autocommit.

        `sql` is the first statement (a Query's whole text), `first` the type
        of the message bringing it: a Query (counted), or a Parse or Bind
        beginning its unit, whose Sync is not in. Only in strict mode, the
        connection known idle, for plain reads and writes.
        """
        units = self._units
        query = first == _QUERY
        unit = units.sent if query else units.sent + 1
        if (
            self._policy is None
            or self._batch is not None
            or self.wrap_at_sync
            or self.awaiting_commit
            or not units.idle_after(unit - 1)
            or plain_statements(sql) == 0
        ):
            return
        batch = self._batch = Batch(unit, first, recording=not query)
        units.add(unit, BATCH)
        if query:
            batch.again += pq.query(sql)
            self.awaiting_commit = True  # what follows waits for its end

    def record(self, kind: int, message: bytes | memoryview, sql: str) -> None:
        """Keep a message of the batch, as it went to the backend.

        `sql` is the statement a Parse or Bind brings.
        """
        batch = self._batch
        assert batch is not None
        batch.again += message
        if len(batch.again) > _RECORD_LIMIT:
            self._give_up(batch)
            return
        if kind == _P:
            name, _ = pq.cstring(message, 5)
            if name:
                batch.names.append(name.encode())
        if kind in (_P, _B):
            # (A Bind the policy refused comes with a Parse of the relay's.)
            if message[0] != kind or plain_statements(sql) != 1:
                self._give_up(batch)
        elif kind not in (m.DESCRIBE, m.EXECUTE):
            # A Flush asks for the answers now; a Close, a Query cannot run
            # again as they ran.
            self._give_up(batch)

    def _give_up(self, batch: Batch) -> None:
        """The batch will not run again: pass on what it held; what the
        client sends next is not kept."""
        batch.can_run_again = False
        batch.recording = False
        batch.again.clear()
        if batch.holding:
            batch.holding = False
            self._host.to_client.extend(batch.held + batch.conflict)
            batch.held.clear()
            batch.conflict = b""

    def batch_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A message of a batch's answer: what to send, None as it is."""
        batch = self._batch
        assert batch is not None
        units = self._units
        unit = units.done + 1
        action = units.action(unit)
        sent: bytes | None = None
        if units.status == b"E":
            sent = b""  # a run again failed before it ran: see `_begin_again`
        elif kind == m.PARSE_COMPLETE and units.parse_complete(unit, action):
            sent = b""
        elif kind == m.E:
            body = view[pos + 5 : end]
            sent = self._host.statement_error(body)
            context = _row_met(body) if batch.holding and not batch.conflict else None
            if context is not None:
                # Whether it runs again is known at its end.
                batch.conflict = bytes(view[pos:end]) if sent is None else sent
                batch.check = kept_check(context)
                return b""
            return self._let_go(batch, sent, view, pos, end)
        elif kind == m.C:
            sent = self._host.command_complete(action & ~AUTOCOMMIT, view, pos, end)
            if self._limits.late_refusal is not None:
                return self._let_go(batch, b"", view, pos, end)  # it waits there
        if sent == b"" or not batch.holding:
            return sent
        batch.held += view[pos:end] if sent is None else sent
        if len(batch.held) > _HOLD_LIMIT:
            return self._let_go(batch, b"", view, pos, end)
        return b""

    def _let_go(
        self, batch: Batch, sent: bytes | None, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """Send the answers held, then `sent` (None: the message as it is)."""
        batch.can_run_again = False
        if not batch.holding:
            return sent
        batch.holding = False
        held = bytes(batch.held)
        batch.held.clear()
        return held + (bytes(view[pos:end]) if sent is None else sent)

    def unit_end(self, action: int, status: bytes, failed: bool) -> bytes:
        """The ReadyForQuery of a wrapped statement or of a batch: what to
        send in its place (see `end` and `batch_end`)."""
        if not action & BATCH:
            return self.end(status, failed)
        batch, self._batch = self._batch, None
        assert batch is not None
        if action & AUTOCOMMIT:
            return self.end(status, failed)  # a run again: commit it
        return self._batch_end(batch, status)

    def _batch_end(self, batch: Batch, status: bytes) -> bytes:
        """A batch's ReadyForQuery: what to send in its place.

        A batch that met another transaction's row runs again, its answers
        dropped.
        """
        self.awaiting_commit = False
        if batch.conflict and batch.can_run_again and status == b"I":
            expected = _FIRST_ANSWER.get(batch.first)
            # (Else a message it did not keep came first: it cannot run again.)
            if expected is None or _first_answer(batch.held) == expected:
                return self._run_again(batch)
        self._host.release_held()
        answer = bytes(batch.held) + batch.conflict
        return answer + pq.ready_for_query(status)

    def _run_again(self, batch: Batch) -> bytes:
        """Run the batch again in a hidden transaction, the holders giving way."""
        units = self._units
        if batch.names:
            closes = (pq.message(b"C", b"S" + name + b"\0") for name in batch.names)
            units.send(b"".join(closes) + m.SYNC, HIDDEN | QUIET)
        self._begin_again(batch.check)
        units.send(bytes(batch.again), HIDE_READY | AUTOCOMMIT | BATCH)
        # Its answers pass as they come.
        self._batch = Batch(units.sent, batch.first, holding=False)
        self.awaiting_commit = True
        self._host.look_for_holders()
        return _not_answers(batch.held)


def _row_met(body: memoryview) -> str | None:
    """The context of an error that says that the statement met another
    transaction's row or key, and names it (see `_yield`); else None."""
    fields = pq.parse_fields(body)
    if fields.get("C") not in m.CONFLICT_SQLSTATES:
        return None
    context = fields.get("W", "")
    # No row named (NOWAIT): nothing tells who holds it.
    return None if holder_check(context) is None else context


def _first_answer(held: bytearray) -> int | None:
    """The type of the first message of `held` that answers a message (not
    a notice, a notification or a setting)."""
    pos, n = 0, len(held)
    while pos < n:
        if held[pos] not in _ASIDE:
            return held[pos]
        pos += 1 + m.UNPACK_LEN(held, pos + 1)[0]
    return None


def _not_answers(held: bytearray) -> bytes:
    """What of `held` is not a statement's answer (a notification)."""
    kept = bytearray()
    pos, n = 0, len(held)
    while pos < n:
        end = pos + 1 + m.UNPACK_LEN(held, pos + 1)[0]
        if held[pos] in _NOT_ANSWERS:
            kept += held[pos:end]
        pos = end
    return bytes(kept)


def run_again(sql: str, bind: bytes, types: bytes) -> bytes | None:
    """A statement sent by Parse and Bind, to run again: the same SQL and
    parameters, its rows in the formats asked, nothing described."""
    if not bind:
        return None  # its Bind is yet to come
    params, formats = m.split_bind(bind)
    return (
        m.parse("", sql, types)
        + m.bind(b"", b"", params, formats)
        + m.execute()
        + m.SYNC
    )
