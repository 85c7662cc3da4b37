"""The per-connection relay between an authenticated client and the backend.

`Relay` is the protocol, without I/O: bytes in (`from_client`,
`from_backend`), bytes out (`to_backend`, `to_client`); a `Pump` holds it and
does the sockets. Only the message headers of what passes are looked at, and
the few messages DSQL Local acts on are decoded. The relay checks each
statement (`_checks`: injected ``server unavailable``, stale-schema OC001,
the policy's check_statement) and hands the rest to one part per feature,
each with its own state:

- `_commit_gate`: each COMMIT judged (injected conflicts and faults, the
  policy's check_commit, a stale schema, a doomed transaction); a Query
  holding COMMITs among other statements runs in pieces;
- `_hidden`: a statement the policy wants in a transaction, sent outside
  one, runs in a hidden transaction that check_commit decides on;
  statements sent together in autocommit run again, whole, when one meets
  another transaction's row;
- `_write_guard`: conflicts as DSQL has them (see `_conflicts`): a write that
  meets another transaction's row is answered by a read and replayed before
  its COMMIT; a transaction gives way to one that commits first;
- `_limits`: DSQL's row and size limits, counted from the snapshot that a
  hidden SELECT takes right after each BEGIN;
- `_copy`: the data of a COPY FROM STDIN in a hidden transaction passes;
- `_prepared`: Parse and Bind of the extended protocol, each checked;
- `_split`: in a transaction block, a query text of several statements and
  a pipeline run one statement at a time, so that each can be guarded.

The relay's backend side, what it does with each message the backend sends,
is `_answers.BackendAnswers`, its base class: there, the relay itself also
turns PostgreSQL's serialization and lock-timeout errors of statements not
guarded into DSQL's 40001 ``(OC000)`` at the statement (in autocommit, the
statement's end is its COMMIT), strips refusals of their PL/pgSQL context,
gives a statement the policy rewrote into one with another tag (``CREATE
INDEX ASYNC`` runs as a SELECT) the tag DSQL gives (`Session.command_tags`),
and has `_checks` keep the session state the policy sees.

Responses are counted in units (see `_units`): this lets the parts swallow
the answer to a statement they injected without tracking every message.
While the relay's own statements are in flight, the client data that
follows waits.

A refused statement is replaced by ``CALL dsql_local.refuse(...)``, so the
backend itself raises the error and leaves the transaction exactly as any
server-side error would.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._answers import AT_REST, BackendAnswers
from ._checks import Checks
from ._commit_gate import CommitGate, GateHost
from ._copy import CopyIn
from ._framing import Framer
from ._hidden import HiddenTransactions
from ._limits import Limits
from ._messages import EVERY_KIND
from ._policy import Refusal, Session, StatementPolicy
from ._prepared import PreparedStatements
from ._schema import SchemaClock
from ._solo import Presence
from ._split import Split
from ._units import Units
from ._write_guard import WriteGuard

# The messages the relay reads; the rest pass unread. Client side: all but
# those it may pass unread (a message type it does not know never passes),
# indexed by (prepared statements known) + 2 * (a COPY FROM STDIN streaming in).
_CLIENT_KINDS = tuple(
    EVERY_KIND - frozenset(b"CDEHXd" + b"B" * (not prepared) + b"cf" * (not copying))
    for copying in (False, True)
    for prepared in (False, True)
)
_FRONTEND_KINDS = frozenset(b"BCDEFHPQSXcdf")  # protocol 3.0's, after startup
# What a statement cancelled before it reached the backend gets (PostgreSQL's).
_CANCELLED = Refusal("57014", "canceling statement due to user request")
# Client messages that leave open what came before them (see `_solo`).
_UNNOTED = frozenset(b"Hcdf")
# What is read only to be kept, while an autocommit batch is (see `_hidden`).
_KEPT_UNREAD = frozenset(b"CDHXdcf")
_BACKEND_KINDS = frozenset(b"EZ1S")
_BACKEND_KINDS_TAGS = frozenset(b"EZ1SC")  # for the policy or schema watch


class RelayHost(GateHost, Protocol):
    """What a relay needs from the server that started it."""

    @property
    def policy(self) -> StatementPolicy | None:
        """The statement policy, read once per connection."""
        ...

    @property
    def schema_clock(self) -> SchemaClock | None:
        """The endpoint-wide count of schema changes, if they conflict."""
        ...


class Relay(BackendAnswers):
    """Relay the messages of one client and its backend, rewriting a few."""

    def __init__(
        self,
        endpoint: RelayHost,
        session: Session,
        *,
        backend_pid: int = 0,
        key: bytes = b"",
    ) -> None:
        self._to_client = bytearray()
        self._to_backend = bytearray()
        self.session = session
        self.backend_pid = backend_pid
        self._key = key
        """The backend's BackendKeyData, which a CancelRequest names."""
        policy = endpoint.policy
        checks = self._checks = Checks(
            endpoint.faults, policy, endpoint.schema_clock, session
        )
        self._held = bytearray()
        """Client data that waits for the relay's own statements."""
        units = self._units = Units(self._to_backend)
        holders = getattr(endpoint, "holders", None)
        limits = self._limits = Limits(units, policy, holders, session)
        self._presence = Presence(getattr(holders, "activity", None), self._wake)
        guard = self._guard = WriteGuard(units, self, limits, self._write_alone)
        self._copy = CopyIn()
        self._split = Split(units, self, guard)
        hidden = self._hidden = HiddenTransactions(
            units, self, policy, session, limits=limits
        )
        gate = self._gate = CommitGate(
            units,
            endpoint,
            self,
            policy=policy,
            session=session,
            schema=checks.schema,
            guard=guard,
            limits=limits,
            split=self._split,
        )
        self._prepared = PreparedStatements(
            units, self, session, gate=gate, guard=guard, hidden=hidden
        )
        tags_read = policy is not None or checks.schema is not None
        self._backend_kinds = _BACKEND_KINDS_TAGS if tags_read else _BACKEND_KINDS
        self._client_framer = Framer(
            self._to_backend,
            self._client_message,
            self._client_watches,
            pq.MAX_MESSAGE_LENGTH,
            # After a Sync, so is a Flush; COPY data ends its Query's.
            unnoted=_UNNOTED,
        )
        self._backend_framer = Framer(
            self._to_client, self._backend_message, self._backend_watches
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
        return self._gate.dropping

    @property
    def held(self) -> int:
        return len(self._held)

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Give the function that has the pump call `woken` in its thread."""
        self._guard.waker = waker

    def take_holder_lookup(self) -> bool:
        """Whether the replays before a COMMIT were just sent (see `_yield`)."""
        return self._guard.take_holder_lookup()

    def from_client(self, data: bytes) -> None:
        if self._held or not self._presence.arrive():
            # After what waits already; or until another's write is answered.
            self._held += data
            self.release_held()
            return
        rest = self._client_framer.feed(data)
        if rest is not None:
            self._held += rest

    def from_backend(self, data: bytes) -> None:
        # Stopped only by a commit drop: nothing after it reaches the client.
        self._backend_framer.feed(data)
        if self._guard.asked_to_give_way:
            self._guard.try_giving_way()

    # -- giving way to a transaction that commits first (see `_yield`) -----

    @property
    def transaction(self) -> int:
        """The number of this connection's current (or next) transaction."""
        return self._guard.transaction

    def give_way(self, transaction: int) -> None:
        """From another relay's thread: roll back `transaction` if still open."""
        self._guard.give_way(transaction)

    def woken(self) -> None:
        self._presence.waited()  # given up once its time is up
        self._guard.try_giving_way()
        self.release_held()

    @property
    def wake_at(self) -> float | None:
        """When the pump is to call `woken` (monotonic seconds), if at all."""
        presence = self._presence
        return presence.wait_until if presence.waiting else None

    @property
    def busy(self) -> bool:
        """Whether its backend may run a statement or hold a transaction."""
        units = self._units
        return (
            units.done != units.sent
            or units.status != b"I"
            or self._client_framer.last not in AT_REST
        )

    def _wake(self) -> None:
        """From another relay's thread: have the pump call `woken`."""
        waker = self._guard.waker
        if waker is not None:
            waker()

    def close(self) -> None:
        """The connection is over, and its backend has ended."""
        self._presence.close()

    def _write_alone(self, unit: int) -> bool:
        """Whether the write of `unit`, in a transaction, may go unguarded
        (see `_solo`).

        Not while rows that foreign key actions change are counted: the
        guard checks them after each write.
        """
        return not self._limits.counts_fk_rows and self._presence.write_alone(unit)

    # -- what the parts share ----------------------------------------------

    def holding(self) -> bool:
        """Client data waits: the relay still sends statements of its own."""
        return (
            self._presence.waiting
            or self._gate.holding()
            or self._guard.holding()
            or self._split.holding()
            or (self._hidden.awaiting_commit and not self._copy.streaming)
        )

    def look_for_holders(self) -> None:
        self._guard.look_for_holders()

    def release_held(self) -> None:
        if self._held and not self.holding():
            held = bytes(self._held)
            self._held.clear()
            self.from_client(held)
            self._presence.cancelled = False  # (a cancel reaches one statement)

    def check(self, sql: str) -> Refusal | str | None:
        """The verdict on a client statement: refuse it, run another, or pass."""
        presence = self._presence
        if presence.cancelled:
            # Cancelled while it waited for another's write (see `_solo`).
            presence.cancelled = False
            return _CANCELLED
        return self._checks.check(sql, self._units.status)

    def cancel_held(self, key: bytes) -> bool:
        """From another thread: a CancelRequest for this relay's backend.

        Whether the statement it names waits here, not having reached the
        backend: it is refused, as the backend would have cancelled it.
        """
        return (
            bool(self._key)
            and hmac.compare_digest(key, self._key)
            and self._presence.cancel()
        )

    # -- client -> backend -------------------------------------------------

    def _client_watches(self) -> frozenset[int] | None:
        if self.holding():
            return None  # what follows waits for the relay's own statements
        if self._hidden.recording:
            return EVERY_KIND
        prepared = self._prepared
        kinds = _CLIENT_KINDS[bool(prepared.statements) + 2 * self._copy.streaming]
        return self._split.client_kinds(kinds, prepared.current_sql)

    def _client_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        hidden = self._hidden
        if hidden.recording and kind in _KEPT_UNREAD:
            sent = None
        else:
            sent = self._client_message_read(kind, view, pos, end)
        if hidden.recording:
            # An autocommit batch's message, kept as sent, to run it again.
            message = view[pos:end] if sent is None else sent
            then = hidden.record(kind, message, self._prepared.current_sql)
            if then:  # a Sync of its own, after a Flush (see `_hidden`)
                return bytes(message) + then
        return sent

    def _client_message_read(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if kind in (m.COPY_DONE, m.COPY_FAIL):
            # The data is in: the hidden COMMIT decides, then what follows.
            self._copy.ended()
            return None
        units = self._units
        if kind in (m.S, m.EXECUTE) or self._split.skipping:
            return self._boundary(kind, view, pos, end)
        if kind == m.F:
            # Refused in its place, answered once like it (its own unit).
            units.open()
            return m.refusal_query(m.FUNCTION_CALL)
        if kind not in _FRONTEND_KINDS:
            raise pq.ProtocolViolation("08P01", f"invalid frontend message type {kind}")
        self._checks.client_sent()
        if kind == m.Q:
            units.open()
            return self.query_message(view, pos, end)
        if kind == m.B:
            return self._prepared.bind_message(view, pos, end)
        units.parses_sent += 1
        return self._prepared.parse_message(view, pos, end)

    def _boundary(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A Sync, an Execute, or a message skipped to the Sync (see `_split`)."""
        if kind != m.S:
            sql, wrapping = self._prepared.current_sql, self._hidden.wrap_at_sync
            return self._split.client_message(
                kind, view, pos, end, sql, wrapping=wrapping
            )
        self._split.synced()
        self._units.open()
        self._guard.seal()
        wrapped = self._hidden.at_sync()
        return wrapped if wrapped is not None else self._gate.at_sync()

    def query_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        """Handle a client's Query (counted); what to send, None as it is."""
        sql = bytes(view[pos + 5 : end - 1]).decode("utf-8", "replace")
        if m.COMMIT_RE.match(sql):
            return self._gate.commit_query(bytes(view[pos:end]))
        pieces = self._gate.split(sql)
        if pieces is not None:
            return pieces
        verdict = self.check(sql)
        if isinstance(verdict, Refusal):
            return m.refusal_query(verdict)
        units = self._units
        # Several statements, one at a time (see `_split`).
        split = verdict is None
        rewritten = self._split.query(sql, units.sent - 1) if split else None
        if rewritten is None:
            units.note_tags(units.sent, self.session.command_tags)
            # A rewritten statement is guarded as it runs (say, a FOR UPDATE
            # whose SKIP LOCKED DSQL ignores).
            run = sql if verdict is None else verdict
            if m.BEGIN_RE.match(run):
                return self._limits.snapshot_after(run)
            rewritten = self._guard.guard_query(run, self._hidden.wrap_at_sync)
            if rewritten is None:
                rewritten = self._hidden.wrap_query(run)
        if rewritten is not None:
            return rewritten
        return None if verdict is None else pq.query(verdict)
