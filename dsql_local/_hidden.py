"""Hidden transactions: a statement the policy wants in a transaction.

A statement sent outside a transaction that the policy wants in one
(`Session.run_in_transaction`) runs between a hidden BEGIN and a hidden
COMMIT that check_commit decides on: DSQL judges it before it commits. Its
CommandComplete is held until that COMMIT has succeeded, and other client
data waits, but the data of a COPY it runs (see `_copy`). A COMMIT that
fails is a refusal followed by a hidden ROLLBACK, so the client is idle
afterwards, as with DSQL.
"""

from __future__ import annotations

from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._limits import Limits
from ._policy import Session, StatementPolicy
from ._units import (
    AS_IDLE,
    AUTOCOMMIT,
    HIDDEN,
    HIDE_READY,
    PRE_COMMIT,
    RELEASE_TAG,
    SNAPSHOT,
    SWALLOW,
    Units,
)


class HiddenHost(Protocol):
    """What hidden transactions need from the relay around them."""

    def release_held(self) -> None:
        """Pass on the client data that waited, if it need wait no more."""
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
        return self._limits.begin() + pq.query(sql)

    def wrap_extended(self, message: bytes) -> bytes:
        """Precede the unit's first message with a hidden BEGIN."""
        units = self._units
        units.sent += 1
        units.add(units.sent, HIDDEN | SNAPSHOT)
        self.wrap_at_sync = True
        return self._limits.begin() + message

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
