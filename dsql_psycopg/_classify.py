"""Which failures are worth another try: pure functions over exceptions.

Transactions: a conflict (SQLSTATE 40001), ``server unavailable`` from a
statement, and a connection lost before COMMIT was sent run again; a COMMIT
whose outcome is unknown runs again only for ``idempotent=True``.

Connects: libpq reports a refused connection as text only (psycopg gives
connection errors no SQLSTATE), so the decision reads the message. A failure
is retried only when the server said "not now" (waking up, rate exceeded,
full) or when nothing answered or the connection was reset, as while the
endpoint restarts. Credentials, TLS verification and configuration errors
are final: another try would fail the same way.

Shared by the sync and async drivers; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
import psycopg_pool

from ._detect import is_occ_error, is_server_unavailable
from ._tls import untrusted_certificate
from ._types import RetryReason
from .errors import AuthenticationError, CommitOutcomeUnknown

_POOL_ERRORS = (
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
    psycopg_pool.TooManyRequests,
)

# -- transactions --------------------------------------------------------------


def retry_reason(
    error: BaseException, *, idempotent: bool, safe_error: BaseException | None
) -> RetryReason | None:
    """Tell why `error` (raised by a whole attempt) may be re-run, if it may.

    `safe_error` is one an inner scope knows is safe to re-run although it
    is no conflict (a connection lost before COMMIT).
    """
    if not isinstance(error, Exception):
        return None
    if is_occ_error(error):
        return "conflict"
    if is_server_unavailable(error):
        # Raised by a statement, never by COMMIT (that one is turned into
        # CommitOutcomeUnknown): the server ended the transaction.
        return "server_unavailable"
    if idempotent and isinstance(error, CommitOutcomeUnknown):
        return "commit_outcome_unknown"
    if error is safe_error or (idempotent and is_connection_loss(error)):
        return "connection_lost"
    return None


def is_connection_loss(error: BaseException) -> bool:
    """Tell whether `error` says the connection broke (not a pool's own error)."""
    return (
        isinstance(error, psycopg.OperationalError)
        and error.sqlstate is None
        and not isinstance(error, _POOL_ERRORS)
    )


def body_error_reason(
    error: BaseException, *, closed: bool, pooled: bool
) -> RetryReason | None:
    """Tell why an error from the body may be re-run for its connection's sake.

    Returns "connection_lost" when the connection closed under the body (no
    COMMIT was sent, so nothing committed) and a pool can give the next
    attempt a fresh one; None otherwise (the caller then asks `retry_reason`).
    """
    if closed and pooled and isinstance(error, psycopg.OperationalError):
        return "connection_lost"
    return None


def failed_statement_error() -> psycopg.errors.InFailedSqlTransaction:
    """Return the error for a transaction whose failed statement was caught."""
    return psycopg.errors.InFailedSqlTransaction(
        "a statement failed inside the transaction and the error was"
        " caught: the transaction was rolled back, not committed"
    )


def lost_before_commit_reason(*, pooled: bool) -> RetryReason | None:
    """Why a connection found lost before COMMIT may be re-run (pool only)."""
    return "connection_lost" if pooled else None


def commit_failure(
    error: psycopg.Error, *, closed: bool, pooled: bool, idempotent: bool
) -> tuple[Exception, RetryReason | None]:
    """Return what a failed COMMIT raises (or retries), and why it may re-run."""
    if is_occ_error(error):
        return error, "conflict"
    if is_server_unavailable(error):
        # The connection is still usable: no pool is needed to re-run.
        what = "the server answered COMMIT with 'server unavailable'"
        rerun = idempotent
    elif isinstance(error, psycopg.OperationalError) and closed:
        what = "the connection broke while COMMIT was in flight"
        rerun = idempotent and pooled
    else:
        return error, None
    unknown = CommitOutcomeUnknown(
        f"{what}: the transaction may or may not have committed, so it"
        " was not run again. Check the data, or pass idempotent=True if"
        " running it twice is safe"
    )
    unknown.__cause__ = error
    return unknown, "commit_outcome_unknown" if rerun else None


def describe(error: BaseException, sqlstate: str | None, code: str | None) -> str:
    """Name `error` by class and codes only: a message may quote data."""
    state = sqlstate or getattr(error, "sqlstate", None)
    parts = [type(error).__name__, f"SQLSTATE {state}" if state else "", code or ""]
    return ", ".join(p for p in parts if p)


# -- connects ------------------------------------------------------------------

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
# Phrases servers use when they refuse credentials; connection errors carry
# no SQLSTATE in psycopg, so the message is all there is to go on.
_AUTH_FAILURES = ("authentication failed", "access denied", "28p01", "28000")


def transient_cause(error: psycopg.OperationalError) -> str | None:
    """Return why `error` is worth another connect, or None if it is final."""
    text = str(error).lower()
    if any(phrase in text for phrase in _FINAL):
        return None
    for phrase, cause in _TRANSIENT:
        if phrase in text:
            return cause
    return None


def connect_failure(
    error: psycopg.OperationalError, conninfo: str, kwargs: Mapping[str, Any]
) -> tuple[BaseException | None, str | None]:
    """Classify a failed connect to one endpoint.

    Returns:
        (an error to raise at once, since no other try can fix it, or None;
        why another try is worth it, or None).
    """
    if "certificate verify failed" in str(error):
        final: BaseException = untrusted_certificate(error, conninfo, kwargs)
        final.__cause__ = error
        return final, None
    if any(s in str(error).lower() for s in _AUTH_FAILURES):
        final = AuthenticationError(
            f"the server refused the IAM token: {error}. Check that the"
            " host is the cluster's endpoint name, that the"
            " credentials are current, and that the role may connect"
            " (dsql:DbConnectAdmin for admin, dsql:DbConnect and a"
            " matching database role otherwise)"
        )
        final.__cause__ = error
        return final, None
    return None, transient_cause(error)


def detail(error: BaseException) -> str:
    """Return the server's or the socket's own words, without libpq's preamble."""
    first = str(error).strip().partition("\n")[0]
    return first.rpartition("failed: ")[2].strip() or type(error).__name__
