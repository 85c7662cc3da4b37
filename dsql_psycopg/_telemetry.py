"""Optional OpenTelemetry traces and metrics, through the global providers.

When ``opentelemetry-api`` is importable (``pip install "dsql-psycopg[otel]"``)
the library reports through the global tracer and meter providers under the
instrumentation scope ``dsql_psycopg``; without an SDK configured those are
OpenTelemetry's no-op providers. When the API is not installed, or telemetry
is switched off (``DSQL_PSYCOPG_OTEL=off`` in the environment, or
`set_telemetry(False)`), nothing of OpenTelemetry is imported and every hook
below returns a shared object whose methods do nothing.

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

import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._detect import occ_details
from ._version import __version__
from .errors import CommitOutcomeUnknown, OCCRetryExhausted

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, Status

    from ._config import DsqlParams
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
        self.loaded: _Otel | None = None
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


def _otel(*, with_sdk: bool = True) -> _Otel | None:
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
                    _state.loaded = _Otel()
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
_connecting: contextvars.ContextVar[ConnectTrace | None] = contextvars.ContextVar(
    "dsql_psycopg_connect_trace", default=None
)


def connect_started() -> ConnectTrace:
    """Start the trace of one connect; call ``connected`` or ``failed`` on it."""
    otel = _otel()
    if otel is None:
        return NOTHING
    trace = _Connect(otel)
    # Cleared by connected() and failed(); signing outside a connect (the
    # command line's token) reports its time but to no span.
    _connecting.set(trace)
    return trace


def token_signed(seconds: float) -> None:
    """Report the time spent making one token (signing, or the provider)."""
    otel = _otel()
    if otel is None:
        return
    otel.signing_time.record(seconds)
    trace = _connecting.get()
    if trace is not None:
        trace.signed(seconds)


def transaction_started(max_attempts: int, idempotent: bool) -> TransactionTrace:
    """Start the trace of one retried transaction (or retried call)."""
    otel = _otel()
    if otel is None:
        return NOTHING
    return _Transaction(otel, max_attempts, idempotent)


def watch_pool(pool: Any) -> None:
    """Report `pool`'s ``get_stats()`` numbers as observable metrics."""
    # Watched even before an SDK is set up: the pool is read when a reader
    # collects, so one set up later sees it.
    otel = _otel(with_sdk=False)
    if otel is not None:
        otel.pools.add(pool)


# -- the OpenTelemetry side ------------------------------------------------------------


class _Otel:
    """The tracer, the meter and the instruments; built once, on first use."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace  # noqa: PLC0415

        self.context = context
        self.trace = trace
        self.metrics = metrics
        self._active = False
        # The providers in place while no SDK is configured.
        self._idle_tracers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        proxy_meters = getattr(metrics._internal, "_ProxyMeterProvider", None)
        self._idle_meters: tuple[type, ...] = (metrics.NoOpMeterProvider,) + (
            (proxy_meters,) if isinstance(proxy_meters, type) else ()
        )
        self.tracer = trace.get_tracer(SCOPE, __version__)
        meter = metrics.get_meter(SCOPE, __version__)
        self.conflicts = meter.create_counter(
            "dsql.transaction.conflicts",
            unit="{conflict}",
            description="Optimistic-concurrency conflicts (SQLSTATE 40001), by code",
        )
        self.retries = meter.create_counter(
            "dsql.transaction.retries",
            unit="{retry}",
            description="Transaction attempts run again, by reason",
        )
        self.exhausted = meter.create_counter(
            "dsql.transaction.exhausted",
            unit="{transaction}",
            description="Transactions that ran out of attempts (OCCRetryExhausted)",
        )
        self.unknown = meter.create_counter(
            "dsql.transaction.commit_outcome_unknown",
            unit="{commit}",
            description="COMMITs whose outcome is unknown (CommitOutcomeUnknown)",
        )
        self.attempts = meter.create_histogram(
            "dsql.transaction.attempts",
            unit="{attempt}",
            description="Attempts per transaction, by outcome",
            explicit_bucket_boundaries_advisory=[1, 2, 3, 4, 5, 7, 10, 15, 20, 30],
        )
        self.connect_duration = meter.create_histogram(
            "dsql.connect.duration",
            unit="s",
            description="Time to connect, every endpoint and retry included",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.connect_retries = meter.create_counter(
            "dsql.connect.retries",
            unit="{retry}",
            description="Connect rounds tried again after a transient refusal",
        )
        self.failovers = meter.create_counter(
            "dsql.connect.failovers",
            unit="{connect}",
            description="Connects that ended on another endpoint than the first",
        )
        self.signing_time = meter.create_histogram(
            "dsql.token.signing_time",
            unit="s",
            description="Time to make one IAM token",
            explicit_bucket_boundaries_advisory=_SIGNING_SECONDS,
        )
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()
        pool_gauges = (
            ("db.client.connection.count", "{connection}", self._observe_count),
            ("db.client.connection.max", "{connection}", self._observe_max),
            (
                "db.client.connection.pending_requests",
                "{request}",
                self._observe_pending,
            ),
        )
        for name, unit, callback in pool_gauges:
            meter.create_observable_up_down_counter(
                name, callbacks=[callback], unit=unit
            )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            callbacks=[self._observe_timeouts],
            unit="{timeout}",
            description="Checkouts that failed: timed out or refused (queue full)",
        )
        meter.create_observable_counter(
            "dsql.pool.wait_time",
            callbacks=[self._observe_wait],
            unit="s",
            description="Total time checkouts waited for a connection",
        )
        meter.create_observable_counter(
            "dsql.pool.requests",
            callbacks=[self._observe_requests],
            unit="{request}",
            description="Checkouts asked of the pool",
        )

    def idle(self) -> bool:
        """Tell whether neither global provider is a real one (no SDK)."""
        if self._active:
            return False
        idle = isinstance(
            self.trace.get_tracer_provider(), self._idle_tracers
        ) and isinstance(self.metrics.get_meter_provider(), self._idle_meters)
        # OpenTelemetry sets a global provider once and for all.
        self._active = not idle
        return idle

    # Pool numbers, read when a reader collects.

    def _stats(self) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
        for pool in list(self.pools):
            if getattr(pool, "closed", False):
                continue
            try:
                stats = pool.get_stats()
            except Exception:  # a pool being closed must not break collection
                logger.debug("could not read a pool's statistics", exc_info=True)
                continue
            yield {"db.client.connection.pool.name": str(pool.name)}, stats

    def _observe_count(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        for attrs, stats in self._stats():
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            yield Observation(idle, {**attrs, "db.client.connection.state": "idle"})
            yield Observation(
                max(0, size - idle), {**attrs, "db.client.connection.state": "used"}
            )

    def _observe(self, key: str, scale: float = 1.0) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        for attrs, stats in self._stats():
            yield Observation(stats.get(key, 0) * scale, attrs)

    def _observe_max(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("pool_max")

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("requests_waiting")

    def _observe_timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("requests_errors")

    def _observe_wait(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("requests_wait_ms", 0.001)

    def _observe_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("requests_num")


_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
_SIGNING_SECONDS = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1]


def _endpoint_attributes(params: DsqlParams) -> dict[str, Any]:
    attrs: dict[str, Any] = {"server.address": params.host}
    port = params.libpq.get("port")
    if port:
        with contextlib.suppress(ValueError, TypeError):
            attrs["server.port"] = int(port)
    if params.region:
        attrs["dsql.region"] = params.region
    return attrs


def _error_status(kind: str) -> Status:
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

    return Status(StatusCode.ERROR, kind)


class _Connect:
    """One connect's span, opened at once and ended by connected/failed."""

    def __init__(self, otel: _Otel) -> None:
        self._otel = otel
        self._started = time.perf_counter()
        self._span: Span = otel.tracer.start_span(
            "dsql.connect",
            kind=otel.trace.SpanKind.CLIENT,
            attributes={"db.system.name": DB_SYSTEM},
        )
        self._retries = 0
        self._failures = 0
        self._last_failure = ""
        self._signing = 0.0

    def endpoint_failed(self, params: DsqlParams, error: BaseException) -> None:
        self._failures += 1
        self._last_failure = kind = connect_error_type(error)
        if self._span.is_recording():
            self._span.add_event(
                "dsql.connect.endpoint_failed",
                {**_endpoint_attributes(params), "error.type": kind},
            )

    def retrying(self, delay: float) -> None:
        self._retries += 1
        kind = self._last_failure or "other"
        self._otel.connect_retries.add(1, {"error.type": kind})
        if self._span.is_recording():
            self._span.add_event(
                "dsql.connect.retry", {"error.type": kind, "dsql.retry.delay": delay}
            )

    def signed(self, seconds: float) -> None:
        self._signing += seconds

    def connected(self, params: DsqlParams, *, failover: bool) -> None:
        attrs = _endpoint_attributes(params)
        self._end(attrs, failover)
        if failover:
            self._otel.failovers.add(1, attrs)
        self._span.end()

    def failed(self, error: BaseException) -> None:
        kind = error_type(error)
        self._end({"error.type": kind}, failover=False)
        # The class or SQLSTATE only: a connect error may quote the server.
        self._span.set_status(_error_status(kind))
        self._span.end()

    def _end(self, attrs: dict[str, Any], failover: bool) -> None:
        _connecting.set(None)
        self._otel.connect_duration.record(time.perf_counter() - self._started, attrs)
        if self._span.is_recording():
            self._span.set_attributes(
                {
                    **attrs,
                    "dsql.connect.failover": failover,
                    "dsql.connect.retries": self._retries,
                    "dsql.connect.failed_tries": self._failures,
                    "dsql.token.signing_time": self._signing,
                }
            )


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


class _Transaction:
    """A transaction span, parent of one span per attempt.

    The transaction span starts with the first attempt. An attempt's span
    stays open after its body until the decision that follows it, so that
    the backoff chosen before the next attempt is recorded on it.
    """

    def __init__(self, otel: _Otel, max_attempts: int, idempotent: bool) -> None:
        self._otel = otel
        self._max_attempts = max_attempts
        self._idempotent = idempotent
        self._span: Span | None = None
        self._context: Any = None
        self._attempt: Span | None = None
        self._attempts = 0
        self._outcome = ""
        self._finished = False

    def attempt_started(self, number: int) -> None:
        otel = self._otel
        if self._span is None:
            self._span = otel.tracer.start_span(
                "dsql.transaction",
                attributes={
                    "db.system.name": DB_SYSTEM,
                    "dsql.retry.max_attempts": self._max_attempts,
                    "dsql.transaction.idempotent": self._idempotent,
                },
            )
            self._context = otel.trace.set_span_in_context(self._span)
        self._end_attempt()
        self._attempts = number
        self._outcome = ""
        self._attempt = otel.tracer.start_span(
            "dsql.transaction.attempt",
            context=self._context,
            attributes={"dsql.attempt.number": number},
        )

    def activate(self) -> object:
        if self._attempt is None:
            return None
        otel = self._otel
        return otel.context.attach(otel.trace.set_span_in_context(self._attempt))

    def deactivate(self, token: object) -> None:
        if token is not None:
            self._otel.context.detach(token)

    def attempt_ended(
        self,
        error: BaseException | None,
        reason: RetryReason | None,
        *,
        rolled_back: bool = False,
    ) -> None:
        self._outcome = outcome = attempt_outcome(
            error, reason, rolled_back=rolled_back
        )
        code = occ_details(error)[1] if error is not None else None
        if outcome == CONFLICT:
            self._otel.conflicts.add(
                1, {"db.response.status_code": "40001", "dsql.occ.code": code or ""}
            )
        span = self._attempt
        if span is None or not span.is_recording():
            return
        attrs: dict[str, Any] = {"dsql.attempt.outcome": outcome}
        if error is not None:
            attrs["error.type"] = kind = error_type(error)
            sqlstate = getattr(error, "sqlstate", None)
            if isinstance(sqlstate, str) and sqlstate:
                attrs["db.response.status_code"] = sqlstate
            if code:
                attrs["dsql.occ.code"] = code
            span.set_status(_error_status(kind))
        span.set_attributes(attrs)

    def retrying(self, reason: str, delay: float) -> None:
        self._otel.retries.add(1, {"dsql.retry.reason": reason})
        span = self._attempt
        if span is not None and span.is_recording():
            span.set_attribute("dsql.retry.backoff", delay)
        self._end_attempt()

    def finished(self, error: BaseException | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        otel = self._otel
        self._end_attempt()
        if isinstance(error, OCCRetryExhausted):
            outcome = EXHAUSTED
            otel.exhausted.add(1)
        elif isinstance(error, CommitOutcomeUnknown):
            outcome = COMMIT_OUTCOME_UNKNOWN
            otel.unknown.add(1)
        elif error is not None:
            outcome = ERROR
        elif self._outcome in (COMMITTED, ROLLED_BACK):
            outcome = self._outcome
        else:  # the caller left the loop with an attempt due to run again
            outcome = ABANDONED
        attrs = {"dsql.transaction.outcome": outcome}
        if self._attempts:
            otel.attempts.record(self._attempts, attrs)
        span, self._span = self._span, None
        if span is None:
            return
        if span.is_recording():
            span.set_attributes({**attrs, "dsql.transaction.attempts": self._attempts})
            if error is not None:
                kind = error_type(error)
                span.set_attribute("error.type", kind)
                span.set_status(_error_status(kind))
        span.end()

    def _end_attempt(self) -> None:
        span, self._attempt = self._attempt, None
        if span is not None:
            span.end()
