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

Statements sent together in autocommit (a query text of several
statements, a pipeline's statements before one Sync) are one implicit
transaction, which commits first and wins too: in strict mode, this part
keeps what such a batch sent (`record`) and holds its answers
(`Unit.BATCH`), and runs it again, whole, in a hidden transaction when a
statement meets another transaction's row, while the holders give way; a
batch whose client asked for answers before its Sync (a Flush) runs again
at once, the answers the client was given answered alike (see `_batches`).
"""

from __future__ import annotations

from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._batches import FLUSH, QUERY, Batch, not_answers, parses_in, row_met
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
from ._yield import kept_check

# The run again waits for the holders it makes give way.
_RETRY_LOCK_TIMEOUT = pq.query("SET LOCAL lock_timeout = '2s'")


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
        context = row_met(body)
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

    # -- statements sent together in autocommit (see `_batches`) -----------

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
        query = first == QUERY
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

    def record(self, kind: int, message: bytes | memoryview, sql: str) -> bytes:
        """Keep a message of the batch, as it went to the backend.

        `sql` is the statement a Parse or Bind brings. Returns what to send
        after it: at a Flush (the client asks for the answers and waits for
        them) when a statement met another transaction's row, a Sync of the
        relay's, which ends the first run so that it can run again now.
        """
        batch = self._batch
        assert batch is not None
        if not batch.keep(kind, message, sql):
            self._give_up(batch)
        elif kind == m.FLUSH:
            if batch.conflict:
                sync = self._end_first_run(batch)
                if sync:
                    return sync
                self._give_up(batch)
            elif batch.holding:
                self._host.to_client.extend(batch.give_held())
        return b""

    def _end_first_run(self, batch: Batch) -> bytes:
        """End the first run of a batch that met another transaction's row,
        its Sync still to come: a Sync of the relay's, to send, or b"" if
        it cannot run again (it then fails as PostgreSQL fails it)."""
        units = self._units
        if not batch.first_answer_ok() or batch.unit != units.sent + 1:
            return b""
        units.open()  # the batch's unit: its ReadyForQuery runs it again
        batch.recording = False
        batch.ended = True
        self.awaiting_commit = True  # what the client sends next waits
        return m.SYNC

    def _give_up(self, batch: Batch) -> None:
        """The batch will not run again: pass on what it held; what the
        client sends next is not kept."""
        self._host.to_client.extend(batch.give_up())

    def batch_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A message of a batch's answer: what to send, None as it is."""
        batch = self._batch
        assert batch is not None
        units = self._units
        unit = units.done + 1
        action = units.action(unit)
        if units.status == b"E" or batch.broken:
            # A run again failed before it ran (see `_begin_again`), or
            # answered otherwise than the client was given.
            return b""
        if kind == m.PARSE_COMPLETE and units.parse_complete(unit, action):
            return b""
        if kind == m.E:
            return self._batch_error(batch, view, pos, end)
        sent: bytes | None = None
        if kind == m.C:
            sent = self._host.command_complete(action & ~AUTOCOMMIT, view, pos, end)
            if self._limits.late_refusal is not None:
                return batch.let_go(b"", view[pos:end])  # it waits there
        return self._answer(batch, kind, sent, view[pos:end])

    def _batch_error(
        self, batch: Batch, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """An error of a batch: met another transaction's row, or not."""
        body = view[pos + 5 : end]
        sent = self._host.statement_error(body)
        met = batch.can_run_again and not batch.conflict
        context = row_met(body) if met else None
        if context is not None:
            batch.conflict = bytes(view[pos:end]) if sent is None else sent
            batch.check = kept_check(context)
            return self._met_a_row(batch)
        if batch.matching():
            return self._answer(batch, m.E, sent, view[pos:end])
        return batch.let_go(sent, view[pos:end])

    def _answer(
        self, batch: Batch, kind: int, sent: bytes | None, message: memoryview
    ) -> bytes | None:
        """An answer of a batch, `sent` in its place (None: as it is).

        A run again's answers alike to those the client was given: the
        holders give way now (a Flush goes to the backend, so that the pump
        looks for them). One that differs fails the batch, rolled back at
        its end, and the holders do not give way: its write meets their
        row, and fails at the lock timeout, unseen.
        """
        matching = batch.matching()
        answer = batch.answer(kind, sent, message)
        if batch.broken:
            self._units.failed = True
        elif matching and not batch.matching():
            self._units.to_backend += FLUSH
            self._host.look_for_holders()
        return answer

    def _met_a_row(self, batch: Batch) -> bytes:
        """A statement of the batch's first run met another transaction's
        row: what to send now. A batch whose answers pass (a Flush asked for
        them) ends its first run now, if its Sync is still to come."""
        if batch.holding or not batch.recording:
            return b""  # (to its end, or to a Flush: see `record`)
        sync = self._end_first_run(batch)
        if sync:
            self._units.to_backend += sync
            return b""
        batch.can_run_again = False
        conflict, batch.conflict = batch.conflict, b""
        return conflict

    def unit_end(self, action: int, status: bytes, failed: bool) -> bytes:
        """The ReadyForQuery of a wrapped statement or of a batch: what to
        send in its place (see `end` and `batch_end`)."""
        if not action & BATCH:
            return self.end(status, failed)
        batch, self._batch = self._batch, None
        assert batch is not None
        if action & AUTOCOMMIT:
            return self.end(status, failed or batch.broken)  # a run again: commit it
        return self._batch_end(batch, status)

    def _batch_end(self, batch: Batch, status: bytes) -> bytes:
        """A batch's ReadyForQuery: what to send in its place.

        A batch that met another transaction's row runs again, its answers
        dropped.
        """
        self.awaiting_commit = False
        if batch.ended or (
            batch.conflict
            and batch.can_run_again
            and status == b"I"
            and batch.first_answer_ok()
        ):
            return self._run_again(batch)
        self._host.release_held()
        answer = bytes(batch.held) + batch.conflict
        return answer + pq.ready_for_query(status)

    def _run_again(self, batch: Batch) -> bytes:
        """Run the batch again in a hidden transaction, the holders giving way.

        A batch whose first run the relay ended (`Batch.ended`) runs again
        up to what the client sent so far; what it sends next, up to its
        Sync, follows in the same transaction, which its Sync commits. A
        batch that gave answers has the holders give way only once its run
        again answered them alike (see `_answer`).
        """
        units = self._units
        if batch.names:
            closes = (pq.message(b"C", b"S" + name + b"\0") for name in batch.names)
            units.send(b"".join(closes) + m.SYNC, HIDDEN | QUIET)
        self._begin_again(batch.check)
        again = self._batch = batch.run_again()
        sent = batch.sent_again()
        if batch.ended:
            units.to_backend += sent
            units.parses_sent = parses_in(sent)
            again.unit = units.sent + 1  # the client's Sync's
            units.add(again.unit, BATCH)
            self.wrap_at_sync = True  # its Sync commits it (see `at_sync`)
        else:
            units.send(sent, HIDE_READY | AUTOCOMMIT | BATCH)
            again.unit = units.sent
            self.awaiting_commit = True  # what follows waits for its end
        if not again.matching():
            self._host.look_for_holders()
        if batch.ended:
            self._host.release_held()  # what the client sent since
        return not_answers(batch.held)


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
