"""Optional OpenTelemetry traces and metrics, through the global providers.

When ``opentelemetry-api`` is importable (``pip install "dsql-psycopg[otel]"``)
the library reports through the global tracer and meter providers under the
instrumentation scope ``dsql_psycopg``; without an SDK configured those are
OpenTelemetry's no-op providers. When the API is not installed, or telemetry
is switched off (``DSQL_PSYCOPG_OTEL=off`` in the environment, or
`set_telemetry(False)`), nothing of OpenTelemetry is imported and every hook
below returns a shared object whose methods do nothing. When on, the hooks
hand over to `_otel`, imported on first use, which holds the instruments and
the spans.

The drivers (sync and async alike) make these calls; none of them sleeps,
touches a socket or raises:

- connects: ``trace = connect_started()``; then, for each endpoint tried,
  ``trace.endpoint_failed(host, port, region, error_type)``; before each wait
  for another round, ``trace.retrying(cause, delay)``; at the end
  ``trace.connected(host, port, region, failover=...)`` or
  ``trace.failed(error)``. Token signing reports itself with
  `token_signed` from inside the connect (a context variable links the two).
- transactions: ``trace = transaction_started(max_attempts, idempotent)``;
  per attempt ``trace.attempt_started(n)``, then ``token = trace.activate()``
  while its body runs and ``trace.deactivate(token)`` after (so that query
  spans nest under the attempt), ``trace.attempt_ended(outcome, error)``;
  before the next one ``trace.retrying(reason, delay)``; at the end
  ``trace.finished(outcome, error)``.
- pools: ``watch_pool(pool)`` once; the pool's numbers are read from
  ``pool.get_stats()`` when a metric reader collects.

Attributes follow OpenTelemetry's database semantic conventions where they
name a thing (``db.system.name``, ``server.address``, ``server.port``,
``error.type``, ``db.response.status_code``, ``db.client.connection.*``) and
use a ``dsql.`` namespace for the rest. No token, password, query text or
query parameter is ever put in an attribute.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CommitOutcomeUnknown

if TYPE_CHECKING:
    from ._config import DsqlParams
    from ._otel import Instruments
    from .typing import RetryReason

logger = logging.getLogger("dsql_psycopg")

SCOPE = "dsql_psycopg"
ENV_SWITCH = "DSQL_PSYCOPG_OTEL"
_OFF_VALUES = frozenset({"0", "off", "false", "no", "disabled"})
# DSQL speaks PostgreSQL's protocol; OpenTelemetry names no system for DSQL,
# and opentelemetry-instrumentation-psycopg reports "postgresql" too.
DB_SYSTEM = "postgresql"

# Outcomes of an attempt (dsql.attempt.outcome) and of a transaction
# (dsql.transaction.outcome).
COMMITTED = "committed"
CONFLICT = "conflict"
SERVER_UNAVAILABLE = "server_unavailable"
CONNECTION_LOST = "connection_lost"
COMMIT_OUTCOME_UNKNOWN = "commit_outcome_unknown"
ROLLED_BACK = "rolled_back"
ERROR = "error"
EXHAUSTED = "exhausted"
ABANDONED = "abandoned"

# libpq's words for a failed connect (lower case) -> error.type: low
# cardinality, and no host name, user or token in it.
_CONNECT_ERRORS = (
    ("waking up cluster", "waking_up"),
    ("rate exceeded", "rate_exceeded"),
    ("too many open connections", "too_many_connections"),
    ("too many clients", "too_many_connections"),
    ("certificate", "certificate"),
    ("does not match host name", "certificate"),
    ("authentication failed", "authentication"),
    ("access denied", "authentication"),
    ("connection refused", "connection_refused"),
    ("connection reset", "connection_reset"),
    ("server closed the connection unexpectedly", "connection_reset"),
    ("eof detected", "connection_reset"),
    ("unexpected eof", "connection_reset"),
    ("closed unexpectedly", "connection_reset"),
    ("timeout expired", "timeout"),
)


def connect_error_type(error: BaseException) -> str:
    """Return the ``error.type`` of a failed connect to one endpoint."""
    text = str(error).lower()
    for phrase, kind in _CONNECT_ERRORS:
        if phrase in text:
            return kind
    return error_type(error)


def error_type(error: BaseException | None) -> str:
    """Return the ``error.type`` of `error`: its SQLSTATE, else its class."""
    if error is None:
        return ""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate
    return type(error).__qualname__


# -- the switch ------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.forced: bool | None = None  # set_telemetry(); None: the environment
        self.env: bool | None = None  # the environment's word, read once
        self.loaded: Instruments | None = None
        self.missing = False  # the API could not be imported


_state = _State()


def set_telemetry(enabled: bool) -> None:
    """Turn OpenTelemetry reporting on or off for the whole process.

    Off, no span or metric is made and OpenTelemetry is not imported (if it
    was not already). On (the default when ``opentelemetry-api`` is
    installed), spans and metrics go to the global tracer and meter
    providers. This overrides the ``DSQL_PSYCOPG_OTEL`` environment variable
    (``off``, ``0``, ``false`` or ``no`` turn it off).

    Args:
        enabled: True to report, False to stay silent.
    """
    _state.forced = bool(enabled)


def telemetry_enabled() -> bool:
    """Tell whether spans and metrics go to the global providers: the API is
    installed and reporting is on (whether an SDK is set up or not)."""
    return _otel(with_sdk=False) is not None


def _switched_on() -> bool:
    if _state.forced is not None:
        return _state.forced
    if _state.env is None:  # read once: the variable is for process start-up
        value = os.environ.get(ENV_SWITCH, "").strip().lower()
        _state.env = value not in _OFF_VALUES
    return _state.env


def _otel(*, with_sdk: bool = True) -> Instruments | None:
    """The loaded instrumentation, or None when off or unavailable.

    With `with_sdk`, also None while neither global provider is set (no SDK
    configured, or OpenTelemetry's no-op ones): the API's no-op objects
    would take every call anyway, for nothing.
    """
    loaded = _state.loaded
    if loaded is None:
        if _state.missing or not _switched_on():
            return None
        with _state.lock:
            if _state.loaded is None and not _state.missing:
                try:
                    from ._otel import Instruments  # noqa: PLC0415

                    _state.loaded = Instruments()
                except ImportError:
                    _state.missing = True
                    logger.debug("opentelemetry-api is not installed: no telemetry")
            loaded = _state.loaded
        if loaded is None:
            return None
    if not _switched_on() or (with_sdk and loaded.idle()):
        return None
    return loaded


# -- what the drivers call ---------------------------------------------------------


class ConnectTrace(Protocol):
    """The span and metrics of one connect (all its endpoints and rounds)."""

    def endpoint_failed(self, params: DsqlParams, error: BaseException) -> None:
        """One endpoint refused or failed (`error` is what libpq raised)."""

    def retrying(self, delay: float) -> None:
        """Every endpoint failed for a transient reason: another round follows."""

    def signed(self, seconds: float) -> None:
        """A token took `seconds` to make (reported by `token_signed`)."""

    def connected(self, params: DsqlParams, *, failover: bool) -> None:
        """The connect succeeded on `params`' endpoint."""

    def failed(self, error: BaseException) -> None:
        """The connect failed for good with `error`."""


class TransactionTrace(Protocol):
    """The span of one retried transaction and the spans of its attempts."""

    def attempt_started(self, number: int) -> None:
        """Attempt `number` (from 1) was handed out."""

    def activate(self) -> object:
        """Make the attempt's span current; return the token to deactivate."""

    def deactivate(self, token: object) -> None:
        """Undo `activate` (in the same thread or task)."""

    def attempt_ended(
        self,
        error: BaseException | None,
        reason: RetryReason | None,
        *,
        rolled_back: bool = False,
    ) -> None:
        """The attempt ended: with `error` (None: committed, or rolled back
        by the body's `psycopg.Rollback`), re-runnable for `reason`."""

    def retrying(self, reason: str, delay: float) -> None:
        """The next attempt runs after `delay` seconds, for `reason`."""

    def finished(self, error: BaseException | None = None) -> None:
        """No attempt follows; `error` is what the caller gets, if anything.

        Only the first call counts: drivers may call it again on their way
        out (a loop left early, a single attempt's exit)."""


class _Nothing:
    """What every hook returns when telemetry is off: it does nothing."""

    def endpoint_failed(self, params: DsqlParams, error: BaseException) -> None:
        pass

    def retrying(self, *args: Any) -> None:
        pass

    def signed(self, seconds: float) -> None:
        pass

    def connected(self, params: DsqlParams, *, failover: bool) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass

    def attempt_started(self, number: int) -> None:
        pass

    def activate(self) -> object:
        return None

    def deactivate(self, token: object) -> None:
        pass

    def attempt_ended(
        self,
        error: BaseException | None,
        reason: RetryReason | None,
        *,
        rolled_back: bool = False,
    ) -> None:
        pass

    def finished(self, error: BaseException | None = None) -> None:
        pass


NOTHING = _Nothing()

# The connect under way in this thread or task: token signing reports to it.
connecting: contextvars.ContextVar[ConnectTrace | None] = contextvars.ContextVar(
    "dsql_psycopg_connect_trace", default=None
)


def connect_started() -> ConnectTrace:
    """Start the trace of one connect; call ``connected`` or ``failed`` on it."""
    otel = _otel()
    if otel is None:
        return NOTHING
    trace = otel.connect()
    # Cleared by connected() and failed(); signing outside a connect (the
    # command line's token) reports its time but to no span.
    connecting.set(trace)
    return trace


def token_signed(seconds: float) -> None:
    """Report the time spent making one token (signing, or the provider)."""
    otel = _otel()
    if otel is None:
        return
    otel.signing_time.record(seconds)
    trace = connecting.get()
    if trace is not None:
        trace.signed(seconds)


def transaction_started(max_attempts: int, idempotent: bool) -> TransactionTrace:
    """Start the trace of one retried transaction (or retried call)."""
    otel = _otel()
    if otel is None:
        return NOTHING
    return otel.transaction(max_attempts, idempotent)


def watch_pool(pool: Any) -> None:
    """Report `pool`'s ``get_stats()`` numbers as observable metrics."""
    # Watched even before an SDK is set up: the pool is read when a reader
    # collects, so one set up later sees it.
    otel = _otel(with_sdk=False)
    if otel is not None:
        otel.pools.add(pool)


def attempt_outcome(
    error: BaseException | None,
    reason: RetryReason | None,
    *,
    rolled_back: bool = False,
) -> str:
    """Return the ``dsql.attempt.outcome`` of an attempt that ended so."""
    if reason is not None:
        return reason
    if error is None:
        return ROLLED_BACK if rolled_back else COMMITTED
    if isinstance(error, CommitOutcomeUnknown):
        return COMMIT_OUTCOME_UNKNOWN
    return ERROR
