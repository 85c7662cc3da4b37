"""The check of every client statement, and the session state it reads.

A statement fails with an injected ``server unavailable``, or with 40001
``(OC001)`` in a transaction that a committed schema change made stale (see
`_schema`); else the policy's check_statement decides. The relay keeps the
`Session` the policy reads (in a transaction or not, since when, its
scratch state) as ReadyForQuery reports the transaction status, and tells
the schema watch what it must know.
"""

from __future__ import annotations

import time

from . import _messages as m
from ._faults import SERVER_UNAVAILABLE, Faults
from ._policy import Refusal, Session, StatementPolicy
from ._schema import SchemaClock, SchemaWatch


class Checks:
    """Check one connection's statements; keep the session the policy sees."""

    def __init__(
        self,
        faults: Faults,
        policy: StatementPolicy | None,
        clock: SchemaClock | None,
        session: Session,
    ) -> None:
        self._faults = faults
        self._policy = policy
        self.schema = SchemaWatch(clock) if clock is not None else None
        self.session = session
        self._pending_start: float | None = None
        """When the first statement of what may become a transaction came."""

    def check(self, sql: str, status: bytes) -> Refusal | str | None:
        """The verdict on a client statement: refuse it, run another, or pass."""
        session = self.session
        if self._faults.take_statement(sql):
            session.run_in_transaction = False
            return SERVER_UNAVAILABLE
        if status == b"T" and self.schema is not None and self.schema.stale():
            return m.STALE_SCHEMA
        if self._policy is None:
            return None
        session.run_in_transaction = False
        session.command_tags = ()
        return self._policy.check_statement(sql, session)

    def client_sent(self) -> None:
        """A client message that runs statements: a transaction may begin."""
        if not self.session.in_transaction and self._pending_start is None:
            self._pending_start = time.monotonic()
            if self.schema is not None:
                self.schema.begin()

    def failed(self) -> None:
        """A client statement failed."""
        if self.schema is not None:
            self.schema.error()

    def command_done(self, tag: str) -> None:
        if self.schema is not None:
            self.schema.command_done(tag)

    def status(self, status: bytes) -> None:
        """Note the transaction status a ReadyForQuery reported."""
        session = self.session
        if status == b"I":
            if self.schema is not None:
                self.schema.idle()
            session.in_transaction = False
            session.transaction_started_at = None
            session.scratch.clear()
            self._pending_start = None
        else:
            session.in_transaction = True
            if session.transaction_started_at is None:
                session.transaction_started_at = self._pending_start or time.monotonic()
