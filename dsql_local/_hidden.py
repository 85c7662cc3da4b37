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
"""

from __future__ import annotations

from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._copy import is_copy
from ._limits import Limits
from ._policy import Session, StatementPolicy
from ._units import (
    AS_IDLE,
    AUTOCOMMIT,
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
from ._yield import holder_check

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

    def may_wrap(self, wanted: bool, units_before: int) -> bool:
        """Whether to run a statement in a hidden transaction.

        Only when the policy asks (`wanted`), outside a transaction, and with
        every earlier answer in, so that the status is known to be idle.
        """
        return wanted and not self.wrap_at_sync and self._units.idle_after(units_before)

    def wrap_query(self, sql: str) -> bytes | None:
        """The Query just counted, in a hidden transaction if the policy asks."""
        units = self._units
        if not self.may_wrap(self._session.run_in_transaction, units.sent - 1):
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
        row or key, and will run again once the holders gave way."""
        if self._again is None:
            return False
        fields = pq.parse_fields(body)
        if fields.get("C") not in m.CONFLICT_SQLSTATES:
            return False
        if holder_check(fields.get("W", "")) is None:
            return False  # no row named: nothing tells who holds it
        self._retry = True
        return True

    def at_sync(self) -> bytes | None:
        """The Sync (just counted) of a wrapped statement, or None."""
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
            units.send(self._limits.begin(), HIDDEN | SNAPSHOT)
            units.send(_RETRY_LOCK_TIMEOUT, HIDDEN | QUIET)
            units.send(again, HIDE_READY | AUTOCOMMIT | RETRY)
            self._host.look_for_holders()
            return b""
        self.awaiting_commit = False
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

    def release_tag(self, status: bytes, failed: bool) -> bytes:
        """The hidden COMMIT's ReadyForQuery: the held tag, unless it failed."""
        tag, self._held_tag = self._held_tag, b""
        return (b"" if failed else tag) + pq.ready_for_query(status)


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
