"""The OpenTelemetry side of `_telemetry`: instruments, spans, pool gauges.

Imported by `_telemetry` on first use only, when reporting is on: importing
this module imports ``opentelemetry`` (an ImportError here means the API is
not installed). `Instruments` is built once per process; `ConnectSpan` and
`TransactionSpan` are the objects the drivers' hooks return when on.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from ._detect import occ_details
from ._telemetry import (
    ABANDONED,
    COMMIT_OUTCOME_UNKNOWN,
    COMMITTED,
    CONFLICT,
    DB_SYSTEM,
    ERROR,
    EXHAUSTED,
    ROLLED_BACK,
    SCOPE,
    attempt_outcome,
    connect_error_type,
    connecting,
    error_type,
)
from ._version import __version__
from .errors import CommitOutcomeUnknown, OCCRetryExhausted

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context

    from ._config import DsqlParams
    from .typing import RetryReason

logger = logging.getLogger("dsql_psycopg")


class Instruments:
    """The tracer, the meter and the instruments; built once, on first use."""

    def __init__(self) -> None:
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

    def connect(self) -> ConnectSpan:
        """Open the span of one connect."""
        return ConnectSpan(self)

    def transaction(self, max_attempts: int, idempotent: bool) -> TransactionSpan:
        """Return the trace of one retried transaction; its span opens with
        the first attempt."""
        return TransactionSpan(self, max_attempts, idempotent)

    def idle(self) -> bool:
        """Tell whether neither global provider is a real one (no SDK)."""
        if self._active:
            return False
        idle = isinstance(
            trace.get_tracer_provider(), self._idle_tracers
        ) and isinstance(metrics.get_meter_provider(), self._idle_meters)
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
        for attrs, stats in self._stats():
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            yield Observation(idle, {**attrs, "db.client.connection.state": "idle"})
            yield Observation(
                max(0, size - idle), {**attrs, "db.client.connection.state": "used"}
            )

    def _observe(self, key: str, scale: float = 1.0) -> Iterable[Observation]:
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
    return Status(StatusCode.ERROR, kind)


class ConnectSpan:
    """One connect's span, opened at once and ended by connected/failed."""

    def __init__(self, otel: Instruments) -> None:
        self._otel = otel
        self._started = time.perf_counter()
        self._span: Span = otel.tracer.start_span(
            "dsql.connect",
            kind=trace.SpanKind.CLIENT,
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
        connecting.set(None)
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


class TransactionSpan:
    """A transaction span, parent of one span per attempt.

    The transaction span starts with the first attempt. An attempt's span
    stays open after its body until the decision that follows it, so that
    the backoff chosen before the next attempt is recorded on it.
    """

    def __init__(self, otel: Instruments, max_attempts: int, idempotent: bool) -> None:
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
            self._context = trace.set_span_in_context(self._span)
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
        return context.attach(trace.set_span_in_context(self._attempt))

    def deactivate(self, token: object) -> None:
        if token is not None:
            context.detach(cast("Token[Context]", token))

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
