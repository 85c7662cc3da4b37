"""The decisions of one connect: which endpoint next, whether to wait, when to stop.

Sans-I/O: a `ConnectPlan` hands out steps (`TryEndpoint`, `Sleep`, `Fail`)
and is told what happened; the driver connects and sleeps (``time.sleep``
or ``asyncio.sleep``). Each round tries every endpoint once, in the order
`EndpointHealth` gives; a round that failed only for transient reasons is
followed by another after a backoff, for up to ``connect_retry`` seconds
(the `Schedule` of `_backoff`). A refusal no other try can fix (credentials,
certificate) fails the connect at once.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from ._backoff import CONNECT_BACKOFF, GiveUp, Schedule
from ._classify import connect_failure, detail
from ._config import DsqlParams, Endpoints
from ._endpoints import EndpointHealth, endpoint_health
from ._tls import apply_tls
from ._version import __version__
from .errors import ConnectRetryExhausted

logger = logging.getLogger("dsql_psycopg")


@dataclass(frozen=True)
class TryEndpoint:
    """Connect to `params` now."""

    params: DsqlParams


@dataclass(frozen=True)
class Sleep:
    """Wait `delay` seconds, then ask for the next step."""

    delay: float


@dataclass(frozen=True)
class Fail:
    """Raise `error` (its ``__cause__`` is set)."""

    error: BaseException


@dataclass
class _Failure:
    params: DsqlParams
    error: psycopg.OperationalError
    cause: str


class ConnectPlan:
    """The tries of one connect over its endpoints, with retries.

    Args:
        endpoints: What `parse_endpoints` made of the arguments.
        conninfo: The connection string, to explain a certificate failure.
        kwargs: The keyword arguments, likewise.
        started: ``time.monotonic()`` when the connect began.
        health: The failed-endpoint record; the process's shared one if None.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        conninfo: str,
        kwargs: Mapping[str, Any],
        started: float,
        health: EndpointHealth | None = None,
    ) -> None:
        self.endpoints = endpoints
        self._conninfo = conninfo
        self._kwargs = kwargs
        self.health = health if health is not None else endpoint_health
        self.schedule = Schedule(
            CONNECT_BACKOFF, started=started, timeout=endpoints.connect_retry
        )
        self._round: list[DsqlParams] | None = None
        self._failures: list[_Failure] = []
        self._transient = False
        self._final: BaseException | None = None

    def next_step(self, now: float) -> TryEndpoint | Sleep | Fail:
        """Return what to do next at `now`."""
        if self._final is not None:
            return Fail(self._final)
        if self._round is None:
            self._round = self.health.order(self.endpoints, now)
            self._failures = []
            self._transient = False
        if self._round:
            return TryEndpoint(self._round.pop(0))
        return self._end_of_round(now)

    def failed(
        self, params: DsqlParams, error: psycopg.OperationalError, now: float
    ) -> None:
        """Record that the connect to `params` failed with `error` at `now`."""
        final, cause = connect_failure(error, self._conninfo, self._kwargs)
        if final is not None:
            self._final = final
            return
        self._transient = self._transient or cause is not None
        cause = cause or detail(error)
        self.health.failed(self.endpoints, params, cause, now)
        self._failures.append(_Failure(params, error, cause))

    def succeeded(self, params: DsqlParams) -> None:
        """Record that the connect to `params` succeeded."""
        self.health.succeeded(self.endpoints, params)

    def skipped(self, delay: float) -> None:
        """Count a `Sleep` that `retry_testing` skipped as spent."""
        self.schedule.skipped(delay)

    def _end_of_round(self, now: float) -> Sleep | Fail:
        self._round = None
        last = self._failures[-1]
        budget = self.endpoints.connect_retry
        if not self._transient or not budget:
            return Fail(last.error)
        cause = last.cause
        if len(self._failures) > 1:
            cause = "; ".join(f"{f.params.host}: {f.cause}" for f in self._failures)
        decision = self.schedule.failed(now)
        if isinstance(decision, GiveUp):
            exhausted = ConnectRetryExhausted(
                f"could not connect: {cause} ({detail(last.error)}); gave up after"
                f" {decision.failures} attempt(s) in {decision.elapsed:.2f} s"
                f" (connect_retry={budget:g} s)",
                attempts=decision.failures,
                elapsed=decision.elapsed,
                cause=cause,
            )
            exhausted.__cause__ = last.error
            return Fail(exhausted)
        logger.info(
            "connect attempt %d failed: %s; retrying in %.3f s",
            decision.failures,
            cause,
            decision.delay,
        )
        return Sleep(decision.delay)


#: The keyword `connect()` hands the chosen endpoint to
#: ``_get_connection_params`` with, through psycopg's connect(); not libpq's.
PARAMS_KEYWORD = "_dsql_params"
#: The keyword a pool passes to have its connects' failures recorded.
RECORD_KEYWORD = "_dsql_pool_record"
# Keywords psycopg's connect() takes for itself (autocommit, row_factory...).
_OWN_KEYWORDS = frozenset(
    name
    for name, p in inspect.signature(psycopg.Connection.connect).parameters.items()
    if p.kind is p.KEYWORD_ONLY
)
APPLICATION_NAME = f"dsql-psycopg/{__version__}"


def dsql_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keywords of a connect call that are not psycopg's own."""
    return {k: v for k, v in kwargs.items() if k not in _OWN_KEYWORDS}


def libpq_params(params: DsqlParams) -> dict[str, Any]:
    """Return libpq's parameters for `params`, without the password.

    TLS is verify-full with the trust `apply_tls` finds; the application
    name says dsql-psycopg unless the caller named one.
    """
    libpq = dict(params.libpq)
    apply_tls(libpq)
    libpq.setdefault("application_name", APPLICATION_NAME)
    return libpq
