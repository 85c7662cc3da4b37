"""The COMMIT gate: each COMMIT is judged before the backend runs it.

A COMMIT fails for an injected conflict, a stale schema (OC001), the
policy's check_commit, or a transaction doomed by the write guard; it is
then replaced by a refusal followed by a hidden ROLLBACK, so that the client
is idle afterwards, as with DSQL. An injected ``server unavailable`` fails
it before it runs or answers it with the error after it committed; an
injected commit drop closes the client connection at its CommandComplete,
after the backend has committed. Before the COMMIT of a transaction that
wrote or had writes refused, the relay's own checks run in the units right
before it: the refused writes again (see `_write_guard`), then the limits
(see `_limits`); the first error answers the COMMIT.

A Query whose text holds COMMITs among other statements runs in pieces (see
`_commits`), each sent when the one before has finished, so that each COMMIT
is judged in turn; client data that follows it waits. A piece in a
transaction block, or opening one, runs a statement at a time (see
`_split.run_piece`), each write guarded: judged at the piece's COMMIT.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._commits import Piece, commit_pieces
from ._faults import SERVER_UNAVAILABLE, Faults
from ._limits import Limits
from ._policy import Refusal, Session, StatementPolicy
from ._schema import SchemaWatch
from ._split import Split
from ._units import (
    DROP_AT_COMMIT,
    HIDDEN,
    NEXT_PIECE,
    PRE_COMMIT,
    REPLAY,
    UNAVAILABLE_AT_COMMIT,
    Unit,
    Units,
)
from ._write_guard import WriteGuard


class GateHost(Protocol):
    """What the COMMIT gate needs from the server that started its relay."""

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


class Checker(Protocol):
    """The statement check and the held data of the relay around the gate."""

    def check(self, sql: str) -> Refusal | str | None:
        """The verdict on a statement (see `Relay.check`)."""
        ...

    def release_held(self) -> None:
        """Pass on the client data that waited, if it need wait no more."""
        ...


class CommitGate:
    """Judge each COMMIT of one connection; run multi-COMMIT queries in pieces."""

    def __init__(
        self,
        units: Units,
        endpoint: GateHost,
        relay: Checker,
        *,
        policy: StatementPolicy | None,
        session: Session,
        schema: SchemaWatch | None,
        guard: WriteGuard,
        limits: Limits,
        split: Split | None = None,
    ) -> None:
        self._units = units
        self._endpoint = endpoint
        self._policy = policy
        self._relay = relay
        self._session = session
        self._schema = schema
        self._guard = guard
        self._limits = limits
        self._split = split
        self._pieces: deque[Piece] = deque()
        self._prefix = b""
        self._rollback_after_sync = False
        self.dropping = False
        """Close the client connection: its COMMIT committed, unconfirmed."""

    def holding(self) -> bool:
        """Whether client data waits for the pieces of a query."""
        return bool(self._pieces)

    # -- COMMIT sent by the client -----------------------------------------

    def commit_query(self, message: bytes) -> bytes | None:
        """Fail a COMMIT sent as a Query, or check the limits before it."""
        refusal = self.refusal(self._units.sent, checkable=True)
        if refusal is not None:
            return m.refusal_query(refusal) + self.rollback()
        return self.take_prefix(message)

    def refusal(self, unit: int, *, checkable: bool) -> Refusal | None:
        """Decide whether the COMMIT answered in `unit` must fail.

        Consumes an injected conflict, or else an injected commit drop. If
        the transaction wrote and the COMMIT begins its unit (`checkable`),
        the checks go first, in `unit` on, and the COMMIT in the unit after
        them: `take_prefix` gives the checks.
        """
        units = self._units
        if units.status != b"T":
            return None
        refusal = self._judge()
        if refusal is not None:
            return refusal
        if self._guard.replays and not checkable:
            return m.CONFLICT  # no room for the replays: judged at once
        committed = self._endpoint.faults.take_commit()
        if committed is False:
            return SERVER_UNAVAILABLE
        before = [
            (message, HIDDEN | PRE_COMMIT | REPLAY)
            for message in self._guard.before_commit(checkable)
        ]
        check = self._limits.commit_check()
        if check:
            before.append((check, HIDDEN | PRE_COMMIT))
        if checkable:
            for message, action in before:
                units.add(unit, action)
                units.sent += 1
                unit += 1
                self._prefix += message
        if committed:
            units.add(unit, UNAVAILABLE_AT_COMMIT)
        elif self._endpoint.take_commit_drop():
            units.add(unit, DROP_AT_COMMIT)
        return None

    def _judge(self) -> Refusal | None:
        """Refuse a COMMIT for a schema change, the policy or a conflict."""
        if self._schema is not None and self._schema.stale():
            return m.STALE_SCHEMA
        policy = self._policy
        refusal = policy.check_commit(self._session) if policy else None
        if refusal is None and self._guard.doomed:
            refusal = m.CONFLICT
        if refusal is None:
            code = self._endpoint.take_conflict()
            if code is not None:
                refusal = Refusal("40001", m.CONFLICT_MESSAGES[code])
        return refusal

    def take_prefix(self, message: bytes) -> bytes | None:
        """`message` after the checks, if some were planned; else None."""
        prefix, self._prefix = self._prefix, b""
        return prefix + message if prefix else None

    def rollback(self) -> bytes:
        """Follow a failed COMMIT with a hidden ROLLBACK, as DSQL ends it."""
        units = self._units
        units.actions[units.sent] = Unit.AS_IDLE
        units.sent += 1
        units.actions[units.sent] = Unit.SWALLOW | Unit.HIDE_READY
        return m.ROLLBACK

    def rollback_after_sync(self) -> None:
        """A COMMIT refused in the extended protocol: roll back after its Sync."""
        self._rollback_after_sync = True

    def at_sync(self) -> bytes | None:
        """The Sync (just counted) of a refused COMMIT, or None."""
        if not self._rollback_after_sync:
            return None
        self._rollback_after_sync = False
        return m.SYNC + self.rollback()

    # -- the backend's answer ----------------------------------------------

    def committed(self, action: int) -> bytes | None:
        """A COMMIT's CommandComplete: what to send for it, None as it is."""
        if action & DROP_AT_COMMIT:
            # It committed; the client shall not know.
            self.dropping = True
            return b""
        if action & UNAVAILABLE_AT_COMMIT:
            # It committed; the client is told it may not have.
            return pq.error_response(*SERVER_UNAVAILABLE)
        return None

    # -- a query split at its COMMITs --------------------------------------

    def split(self, sql: str) -> bytes | None:
        """The first piece of `sql` if it holds COMMITs among other statements."""
        pieces = commit_pieces(sql)
        if pieces is None:
            return None
        self._pieces.extend(pieces)
        return self._next_piece()

    def _next_piece(self) -> bytes:
        """Build the Query of the next piece of a split query (unit counted).

        Each piece is checked when the pieces before it have run, so a COMMIT
        sees what its transaction did. A refused piece ends the query.
        """
        units = self._units
        piece = self._pieces.popleft()
        split = self._split
        if not piece.commit and split is not None:
            # In a transaction block, or opening one: each statement guarded.
            sent = split.run_piece(piece.sql, more=bool(self._pieces))
            if sent is not None:
                return sent
        if piece.commit:
            refusal = self.refusal(units.sent, checkable=True)
            if refusal is not None:
                self._pieces.clear()
                return m.refusal_query(refusal) + self.rollback()
        verdict = self._relay.check(piece.sql)
        if isinstance(verdict, Refusal):
            self._pieces.clear()
            return m.refusal_query(verdict)
        units.note_tags(units.sent, self._session.command_tags)
        if self._pieces:
            units.add(units.sent, NEXT_PIECE)
        message = pq.query(piece.sql if verdict is None else verdict)
        return self.take_prefix(message) or message

    def after_statement_piece(
        self, sent: bytes | None, status: bytes, failed: bool
    ) -> bytes | None:
        """The end of a piece run a statement at a time (see `_split.run_piece`):
        what its end sends, less its ReadyForQuery if the next piece is sent."""
        if not self.after_piece(failed or status == b"E"):
            return sent
        ready = pq.ready_for_query(status)
        if sent is None:
            return b""
        return sent[: -len(ready)] if sent.endswith(ready) else sent

    def after_piece(self, failed: bool) -> bool:
        """At the end of a piece: send the next one, if any; True if sent."""
        sent = False
        if failed:
            # As PostgreSQL does: an error skips the rest of the query.
            self._pieces.clear()
        elif self._pieces:
            self._units.open()
            self._units.to_backend += self._next_piece()
            sent = True
        if not self._pieces:
            self._relay.release_held()
        return sent
