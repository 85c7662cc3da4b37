"""AsyncDsqlConnection: the asyncio twin of `DsqlConnection`.

A thin driver: which endpoint to try, whether to wait and when to give up
are `ConnectPlan`'s decisions, shared with the blocking `DsqlConnection`;
this module only awaits the connects and the waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg.rows import Row
from typing_extensions import Self

from . import _auth as auth
from . import _config as config
from . import _telemetry as telemetry
from ._connect_plan import (
    PARAMS_KEYWORD,
    RECORD_KEYWORD,
    ConnectPlan,
    Fail,
    Sleep,
    dsql_kwargs,
    libpq_params,
)
from ._endpoints import failback_due, is_preferred
from ._pool_core import PoolRecord
from ._retry_testing import is_retry_testing

__all__ = ["AsyncDsqlConnection"]

logger = logging.getLogger("dsql_psycopg")


class AsyncDsqlConnection(psycopg.AsyncConnection[Row]):
    """A `psycopg.AsyncConnection` to Aurora DSQL: `DsqlConnection`'s twin.

    ``await AsyncDsqlConnection.connect(...)`` takes every form and option
    `dsql_psycopg.connect` takes (a URL, ``key=value`` pairs, keywords, a
    cluster id, several hosts, and the DSQL options) and behaves the same:
    a freshly signed IAM token per connection, ``sslmode=verify-full``, each
    endpoint of a multi-Region cluster tried in turn with a token of its own,
    transient refusals retried for ``connect_retry`` seconds.

    Signing a token is CPU work when the credentials are at hand; when
    botocore may have to fetch or refresh them (STS, SSO, instance metadata:
    network I/O) or a `TokenProvider` makes the token, it runs in a worker
    thread, so the event loop never blocks on it.
    """

    _dsql_endpoints: config.Endpoints | None = None
    _dsql_params: config.DsqlParams | None = None
    # Stamped by create_async_pool's pool when it makes the connection.
    _dsql_created_at: float = 0.0
    _dsql_deadline: float = float("inf")

    @property
    def endpoint(self) -> str:
        """The host name of the DSQL endpoint this connection is connected to."""
        params = self._dsql_params
        return params.host if params is not None else self.info.host

    @property
    def region(self) -> str | None:
        """The AWS Region of `endpoint`, when known."""
        params = self._dsql_params
        return params.region if params is not None else None

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect to a DSQL cluster and return a new connection."""
        record: PoolRecord | None = kwargs.pop(RECORD_KEYWORD, None)
        try:
            conn = await cls._connect_endpoints(conninfo, kwargs)
        except Exception as ex:
            if record is not None:
                record.failed(ex)
            raise
        if record is not None:
            record.succeeded()
        return conn

    @classmethod
    async def _connect_endpoints(cls, conninfo: str, kwargs: dict[str, Any]) -> Self:
        started = time.monotonic()
        trace = telemetry.connect_started()
        try:
            endpoints = config.parse_endpoints(conninfo, **dsql_kwargs(kwargs))
            plan = ConnectPlan(
                endpoints, conninfo=conninfo, kwargs=kwargs, started=started
            )
            while True:
                step = plan.next_step(time.monotonic())
                if isinstance(step, Fail):
                    raise step.error
                if isinstance(step, Sleep):
                    trace.retrying(step.delay)
                    if is_retry_testing():
                        plan.skipped(step.delay)
                    else:
                        await asyncio.sleep(step.delay)
                    continue
                chosen: dict[str, Any] = {PARAMS_KEYWORD: step.params}
                try:
                    conn = await super().connect(conninfo, **kwargs, **chosen)
                except psycopg.OperationalError as ex:
                    trace.endpoint_failed(step.params, ex)
                    plan.failed(step.params, ex, time.monotonic())
                    continue
                plan.succeeded(step.params)
                trace.connected(
                    step.params, failover=not is_preferred(endpoints, step.params)
                )
                conn._dsql_endpoints, conn._dsql_params = endpoints, step.params
                return conn
        except BaseException as error:
            trace.failed(error)
            raise

    def _failback_due(self) -> float | None:
        """Return how long this connection may keep traffic off its preferred
        endpoint: None when it is on it (or none is preferred)."""
        return failback_due(self._dsql_endpoints, self._dsql_params)

    # psycopg awaits this hook for every connection it opens, pools included.
    @classmethod
    async def _get_connection_params(
        cls, conninfo: str, **kwargs: Any
    ) -> dict[str, Any]:
        started = time.perf_counter()
        params = kwargs.pop(PARAMS_KEYWORD, None)
        if params is None:
            params = config.parse(conninfo, **kwargs)
        libpq = libpq_params(params)
        signing = time.perf_counter()
        if auth.token_may_block(params):
            libpq["password"] = await asyncio.to_thread(auth.make_token, params)
        else:
            libpq["password"] = auth.make_token(params)
        telemetry.token_signed(time.perf_counter() - signing)
        logger.debug(
            "connecting to %s as %s (region %s), parameters ready in %.2f ms",
            params.host,
            params.user,
            params.region,
            (time.perf_counter() - started) * 1000,
        )
        return libpq
