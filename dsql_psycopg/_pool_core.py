"""What a pool of DSQL connections decides, for the sync and async pools.

- `PoolRecord`: the outcome of a pool's connects, so that the exception a
  checkout raises says why the pool has no connection (the last connect
  error, as cause and in the message), and so that a failure no retry can
  fix (bad configuration, no credentials, a refused token, an untrusted
  certificate) fails the next checkout at once instead of after the pool's
  whole timeout.
- The lifetime rules: DSQL closes a connection after 60 minutes and a
  transaction may last 5, so a pooled connection lives at most 55.
"""

from __future__ import annotations

import threading

import psycopg_pool

from ._classify import detail
from .errors import (
    AuthenticationError,
    ConfigurationError,
    CredentialsError,
    UntrustedCertificateError,
)

# DSQL closes a connection after 60 minutes and a transaction may last 5. A
# connection handed out just before its lifetime ends must still finish a
# 5-minute transaction: 60 - 5 = 55 minutes is the hard ceiling for
# max_lifetime, and the default keeps 5 more minutes for connect time and
# clock drift. psycopg_pool's jitter only shortens a lifetime (to between 95%
# and 100% of it), so it never takes a connection past max_lifetime.
DSQL_CONNECTION_CAP = 60 * 60.0
DSQL_TRANSACTION_CAP = 5 * 60.0
MAX_LIFETIME_CEILING = DSQL_CONNECTION_CAP - DSQL_TRANSACTION_CAP
DEFAULT_MAX_LIFETIME = 50 * 60.0

#: Connect failures that another try cannot fix.
FINAL_ERRORS = (
    ConfigurationError,
    CredentialsError,
    AuthenticationError,
    UntrustedCertificateError,
)


def check_max_lifetime(max_lifetime: object) -> float:
    """Return `max_lifetime` if DSQL allows it, else raise ConfigurationError."""
    if (
        isinstance(max_lifetime, bool)
        or not isinstance(max_lifetime, (int, float))
        or not 0 < max_lifetime <= MAX_LIFETIME_CEILING
    ):
        raise ConfigurationError(
            f"max_lifetime must be between 0 and {MAX_LIFETIME_CEILING:g} seconds:"
            " DSQL closes connections after 60 minutes and a transaction may run"
            f" for 5, got {max_lifetime!r}"
        )
    return float(max_lifetime)


#: Until a pool's first connect succeeds, a checkout waits in slices this
#: long, looking for a failure no retry fixes between them: a pool that
#: cannot connect at all (no credentials, bad parameters from a callable)
#: fails its first checkout in about this time, not after its timeout.
STARTUP_SLICE = 0.25


class PoolRecord:
    """The outcome of the connects one pool made (thread-safe)."""

    def __init__(self) -> None:
        self.connected = False
        """Whether a connect of the pool ever succeeded."""
        self._lock = threading.Lock()
        self.last_error: BaseException | None = None
        """The error of the last connect that failed, until one succeeds."""
        self.final_error: BaseException | None = None
        """A failure no retry can fix, until a connect succeeds."""

    def failed(self, error: BaseException) -> None:
        """Record a failed connect."""
        with self._lock:
            self.last_error = error
            if isinstance(error, FINAL_ERRORS):
                self.final_error = error

    def succeeded(self) -> None:
        """Record a connect that succeeded: earlier failures no longer tell."""
        with self._lock:
            self.last_error = self.final_error = None
            self.connected = True

    def wait_slice(self, remaining: float) -> float:
        """Return how long a checkout waits before it looks at the record again.

        The whole `remaining` time once the pool has connected; before, a
        `STARTUP_SLICE` at most (a slice that ends is no timeout: the caller
        checks `final` and waits again).
        """
        return remaining if self.connected else min(remaining, STARTUP_SLICE)

    def final(self) -> BaseException | None:
        """Return a copy of the final error to raise now, if there is one."""
        with self._lock:
            error = self.final_error
        if error is None:
            return None
        # A copy for each checkout: one exception object raised in several
        # threads would share (and grow) one traceback.
        again = type(error)(*error.args)
        again.__cause__ = error.__cause__
        return again

    def timeout(self, error: psycopg_pool.PoolTimeout) -> psycopg_pool.PoolTimeout:
        """Return `error`, or a copy that names the last connect error."""
        with self._lock:
            last = self.last_error
        if last is None:
            return error
        timeout = type(error)(
            f"{error}; the pool's last connect failed: {type(last).__name__}:"
            f" {detail(last)}"
        )
        timeout.__cause__ = last
        return timeout
