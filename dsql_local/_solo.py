"""Writes alone: no guard where no other transaction can be in the way.

The write guard (`_write_guard`) costs each write in a transaction a hidden
SAVEPOINT and its answer held back. It is needed only where the write can
meet another transaction: a row another open transaction holds, or one
another transaction changed after this one's snapshot. Either needs another
connection to have been busy (a statement in flight, or a transaction open)
since this one became busy. `Activity` keeps which relays over one
PostgreSQL are busy; a relay's write goes unguarded while no other relay has
been busy since it became busy itself.

One race is closed by a short wait: a relay that becomes busy while another's
unguarded write is in flight holds its client's data until that write is
answered. Else its own write could take the row first, and the unguarded
one would wait for it and fail at the statement, where DSQL lets both run
and judges at COMMIT. Connections that bypass the relays (``backend_dsn``)
are not seen: a write of theirs can still meet an unguarded one that way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Activity:
    """Which relays over one PostgreSQL are busy, and whose write flies alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy: set[Presence] = set()
        self.turns = 0
        """How often a relay became busy."""
        self.flying: Presence | None = None
        """The relay whose unguarded write is in flight."""
        self.waiting: list[Presence] = []
        """Relays that hold their client's data until it is answered."""


class Presence:
    """One relay's part in its PostgreSQL's `Activity`."""

    __slots__ = ("_activity", "_alone", "_turn", "_wake", "busy", "flying", "waiting")

    def __init__(self, activity: Activity | None, wake: Callable[[], None]) -> None:
        self._activity = activity
        self._wake = wake
        self._alone = False
        self._turn = 0
        self.busy = False
        self.flying = False
        """Its unguarded write is in flight."""
        self.waiting = False
        """It holds its client's data until another's write is answered."""

    def arrive(self) -> bool:
        """Client data came: be busy. False: hold the data until woken."""
        if self.busy:
            return not self.waiting
        activity = self._activity
        self.busy = True
        if activity is None:
            return True
        with activity.lock:
            activity.turns += 1
            self._turn = activity.turns
            self._alone = not activity.busy
            activity.busy.add(self)
            if activity.flying is None:
                return True
            self.waiting = True
            activity.waiting.append(self)
        return False

    def write_alone(self) -> bool:
        """Whether a write may go unguarded; if so, it flies until answered."""
        activity = self._activity
        if activity is None or not self._alone:
            return False
        with activity.lock:
            if activity.turns != self._turn:
                self._alone = False  # another became busy since
                return False
            activity.flying = self
        self.flying = True
        return True

    def answered(self, idle: bool) -> None:
        """Everything sent is answered; `idle`: and no transaction is open."""
        activity = self._activity
        if activity is None:
            self.busy = self.busy and not idle
            return
        if self.flying:
            self.flying = False
            with activity.lock:
                activity.flying = None
                waiting, activity.waiting = activity.waiting, []
                for presence in waiting:
                    presence.waiting = False
            for presence in waiting:
                presence._wake()
        if idle and self.busy:
            self.busy = False
            with activity.lock:
                activity.busy.discard(self)

    def close(self) -> None:
        """The connection is over."""
        activity = self._activity
        if activity is not None and self.waiting:
            with activity.lock:
                if self in activity.waiting:
                    activity.waiting.remove(self)
        self.answered(idle=True)
