"""Injected faults: what a DSQL cluster does on a bad day, on demand.

The endpoint asks `Faults` at each connection's admission whether to refuse
it, and the relay asks before each statement and each COMMIT whether to fail
it with ``server unavailable``. Every decision takes the lock once; with no
fault armed it is a few comparisons.
"""

from __future__ import annotations

import random
import re
import threading
import time
from typing import Literal

from ._errors import DsqlLocalError
from ._policy import Refusal

ConnectRefusal = Literal["waking_up", "rate_exceeded", "too_many"]

#: What DSQL answers at connect, per refusal. The SQLSTATE of the waking-up
#: refusal is not documented or recorded (DSQL-SURFACE.md quotes the message
#: only); 57P03 (cannot_connect_now, PostgreSQL's "starting up") is a guess,
#: and clients should match the message, as they must for every connection
#: error libpq reports.
CONNECT_REFUSALS: dict[str, tuple[str, str]] = {
    "waking_up": (
        "57P03",
        "unable to accept connection, waking up cluster, please retry later",
    ),
    "rate_exceeded": ("53400", "Unable to accept connection, rate exceeded."),
    "too_many": ("53300", "Unable to accept connection, too many open connections."),
}
SERVER_UNAVAILABLE = Refusal("XX000", "server unavailable")

# Transaction control never fails with an injected `server unavailable`
# statement fault: COMMIT has its own fault, and BEGIN/ROLLBACK fail nowhere.
_CONTROL = re.compile(
    r"\s*(?:begin|start|commit|end|rollback|abort|savepoint|release)\b", re.I
)


class Faults:
    """The faults armed on one endpoint; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refusal: ConnectRefusal | None = None
        self._refusals_left: int | None = None
        self._refuse_until: float | None = None
        self._statements = 0
        self._commits = 0
        self._commit_fraction = 0.0
        self._committed: bool | None = False
        # Not for security: only which COMMITs fail.
        self._random = random.Random()  # noqa: S311

    # -- at connect -----------------------------------------------------------

    def refuse_connections(
        self,
        reason: ConnectRefusal,
        count: int | None,
        seconds: float | None,
    ) -> None:
        if reason not in CONNECT_REFUSALS:
            raise DsqlLocalError(
                f"reason must be one of {sorted(CONNECT_REFUSALS)}, not {reason!r}"
            )
        if count is None and seconds is None:
            raise DsqlLocalError(
                "say for how long: count=N connections and/or seconds=S"
            )
        if count is not None and count < 0:
            raise DsqlLocalError("count must be zero or more")
        if seconds is not None and not seconds >= 0:
            raise DsqlLocalError("seconds must be zero or more")
        with self._lock:
            self._refusal = reason
            self._refusals_left = count
            self._refuse_until = None if seconds is None else time.monotonic() + seconds

    def connect_refusal(self) -> tuple[str, str] | None:
        """Return (SQLSTATE, message) to refuse this connection with, or None."""
        if self._refusal is None:
            return None
        with self._lock:
            reason = self._refusal
            expired = (
                self._refuse_until is not None
                and time.monotonic() >= self._refuse_until
            )
            if reason is None or expired or self._refusals_left == 0:
                self._refusal = None
                return None
            if self._refusals_left is not None:
                self._refusals_left -= 1
            return CONNECT_REFUSALS[reason]

    # -- inside a session -----------------------------------------------------

    def server_unavailable(
        self,
        statements: int,
        commits: int,
        commit_fraction: float,
        committed: bool | None,
    ) -> None:
        if statements < 0 or commits < 0:
            raise DsqlLocalError("statements and commits must be zero or more")
        if not 0.0 <= commit_fraction <= 1.0:
            raise DsqlLocalError("commit_fraction must be between 0 and 1")
        with self._lock:
            self._statements = statements
            self._commits = commits
            self._commit_fraction = commit_fraction
            self._committed = committed

    def take_statement(self, sql: str) -> bool:
        """Whether this statement fails with ``server unavailable``."""
        if not self._statements or _CONTROL.match(sql):
            return False
        with self._lock:
            if self._statements <= 0:
                return False
            self._statements -= 1
            return True

    def take_commit(self) -> bool | None:
        """Whether this COMMIT fails: None if not, else whether it committed."""
        if not (self._commits or self._commit_fraction):
            return None
        with self._lock:
            if self._commits > 0:
                self._commits -= 1
            elif not self._random.random() < self._commit_fraction:
                return None
            if self._committed is None:
                return self._random.random() < 0.5
            return self._committed
