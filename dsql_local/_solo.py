"""Writes alone: no guard where no other transaction can be in the way.

The write guard (`_write_guard`) costs each write in a transaction a hidden
SAVEPOINT and its answer held back. It is needed only where the write can
meet another transaction: a row another open transaction holds, or one
another transaction changed after this one's snapshot. Either needs another
connection to have been busy (a statement in flight, or a transaction open)
since this one became busy. `Activity` keeps which relays over one
PostgreSQL are busy; a relay's write goes unguarded while no other relay has
been busy since it became busy itself. A relay whose client went stays busy
until its backend has ended (see `_pump`).

One race is closed by a short wait: a relay that becomes busy while another's
unguarded write is in flight holds its client's data until that write is
answered, for `PATIENCE` seconds at most. Else its own write could take the
row first, and the unguarded one would wait for it and fail at the
statement, where DSQL lets both run and judges at COMMIT. A write that runs
longer than that can still meet such a row and fail at the statement; so
can one that meets a row of a connection that bypasses the relays
(``backend_dsn``): those are not seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PATIENCE = 0.5
"""Seconds a relay that became busy waits at most for another's lone write."""


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
    """One relay's part in its PostgreSQL's `Activity`.

    `clock` gives the time (seconds, monotonic), `wake` has the relay's
    thread act on a change another thread made (see `_pump.Pump.wake`).
    """

    __slots__ = (
        "_activity",
        "_alone",
        "_clock",
        "_landing",
        "_turn",
        "_wake",
        "busy",
        "cancelled",
        "flying",
        "wait_until",
        "waiting",
    )

    def __init__(
        self,
        activity: Activity | None,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._activity = activity
        self._wake = wake
        self._clock = clock
        self._alone = False
        self._turn = 0
        self._landing = 0
        self.busy = False
        self.flying = False
        """Its unguarded write is in flight."""
        self.waiting = False
        """It holds its client's data until another's write is answered."""
        self.wait_until = 0.0
        """When it stops waiting all the same."""
        self.cancelled = False
        """The client cancelled what waits: its first statement is refused."""

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
            self.wait_until = self._clock() + PATIENCE
            activity.waiting.append(self)
        return False

    def write_alone(self, unit: int) -> bool:
        """Whether the write of `unit` may go unguarded; if so, it flies
        until that unit is answered (see `answered`)."""
        activity = self._activity
        if activity is None or not self._alone:
            return False
        with activity.lock:
            if activity.turns != self._turn:
                self._alone = False  # another became busy since
                return False
            activity.flying = self
        self.flying = True
        self._landing = max(self._landing, unit)
        return True

    def answered(self, done: int, idle: bool) -> None:
        """Units up to `done` are answered; `idle`: all are, and nothing is open."""
        if self.flying and (done >= self._landing or idle):
            self._land()
        if idle and self.busy:
            self.busy = False
            activity = self._activity
            if activity is not None:
                with activity.lock:
                    activity.busy.discard(self)

    def cancel(self) -> bool:
        """From another thread: the client cancels; whether its data waits."""
        activity = self._activity
        if activity is None:
            return False
        with activity.lock:
            # (It stops waiting under the lock: then the backend has it.)
            if self.waiting:
                self.cancelled = True
            return self.waiting

    def waited(self) -> bool:
        """Stop waiting if its time is up; whether it still waits."""
        if not self.waiting or self._clock() < self.wait_until:
            return self.waiting
        activity = self._activity
        assert activity is not None
        with activity.lock:
            if self in activity.waiting:
                activity.waiting.remove(self)
            self.waiting = False
        return False

    def close(self) -> None:
        """The connection is over (and its backend with it)."""
        activity = self._activity
        if activity is not None and self.waiting:
            with activity.lock:
                if self in activity.waiting:
                    activity.waiting.remove(self)
                self.waiting = False
        self.answered(self._landing, idle=True)

    def _land(self) -> None:
        self.flying = False
        activity = self._activity
        if activity is None:
            return
        with activity.lock:
            activity.flying = None
            waiting, activity.waiting = activity.waiting, []
            for presence in waiting:
                presence.waiting = False
        for presence in waiting:
            presence._wake()
