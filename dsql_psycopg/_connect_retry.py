"""Which connect failures are worth another try, and how long to wait.

libpq reports a refused connection as text only (psycopg gives connection
errors no SQLSTATE), so the decision reads the message. A failure is retried
only when the server said "not now" (waking up, rate exceeded, full) or when
nothing answered or the connection was reset, as while the endpoint
restarts. Credentials, TLS verification and configuration errors are final:
another try would fail the same way.
"""

from __future__ import annotations

import logging
import random
import time

import psycopg

from ._retry_testing import is_retry_testing
from .errors import ConnectRetryExhausted

logger = logging.getLogger("dsql_psycopg")

# Full jitter between 0 and min(cap, base * 2 ** (n - 1)): clients refused
# together (a fleet starting, a pool refilling) spread out at once, and the
# cap keeps one waiting for a waking cluster to about a second between tries.
BASE_DELAY = 0.05
MAX_DELAY = 1.0

# (phrase in libpq's message, lower case) -> the cause named in logs and errors.
_TRANSIENT = (
    ("waking up cluster", "the cluster is waking up"),
    ("rate exceeded", "the connection rate limit was exceeded"),
    ("too many open connections", "the cluster has too many open connections"),
    ("too many clients", "the server has too many connections"),
    ("connection refused", "the connection was refused"),
    ("connection reset", "the connection was reset"),
    ("server closed the connection unexpectedly", "the connection was reset"),
    ("eof detected", "the connection was reset"),
    ("unexpected eof", "the connection was reset"),
    ("ssl connection has been closed unexpectedly", "the connection was reset"),
    ("connection timeout expired", "the connection timed out"),
)
# Never retried, even when a transient phrase appears too: TLS verification.
_FINAL = ("certificate", "does not match host name", "sslrootcert")


def transient_cause(error: psycopg.OperationalError) -> str | None:
    """Return why `error` is worth another connect, or None if it is final."""
    text = str(error).lower()
    if any(phrase in text for phrase in _FINAL):
        return None
    for phrase, cause in _TRANSIENT:
        if phrase in text:
            return cause
    return None


class ConnectRetry:
    """The tries of one connect: their count, time spent and next wait."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.attempts = 0
        self.skipped = 0.0  # waits retry_testing() skipped, counted as spent

    def elapsed(self) -> float:
        return time.monotonic() - self.started + self.skipped

    def wait_or_raise(
        self, error: psycopg.OperationalError, cause: str, budget: float
    ) -> None:
        """Wait before the next try, or raise if `budget` does not allow one."""
        self.attempts += 1
        elapsed = self.elapsed()
        cap = min(MAX_DELAY, BASE_DELAY * 2.0 ** min(self.attempts - 1, 30))
        # Not for security: jitter only decorrelates clients.
        delay = cap * random.random()  # noqa: S311
        if elapsed + delay >= budget:
            raise ConnectRetryExhausted(
                f"could not connect: {cause} ({detail(error)}); gave up after"
                f" {self.attempts} attempt(s) in {elapsed:.2f} s"
                f" (connect_retry={budget:g} s)",
                attempts=self.attempts,
                elapsed=elapsed,
                cause=cause,
            ) from error
        logger.info(
            "connect attempt %d failed: %s; retrying in %.3f s",
            self.attempts,
            cause,
            delay,
        )
        if is_retry_testing():
            self.skipped += delay
        else:
            time.sleep(delay)


def detail(error: BaseException) -> str:
    """Return the server's or the socket's own words, without libpq's preamble."""
    first = str(error).strip().partition("\n")[0]
    return first.rpartition("failed: ")[2].strip() or type(error).__name__
