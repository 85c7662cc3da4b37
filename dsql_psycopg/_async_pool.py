"""create_async_pool(): the asyncio twin of `create_pool`.

A psycopg_pool.AsyncConnectionPool of `AsyncDsqlConnection`, with the same
lifetime, checkout and failover rules as the blocking pool: the rules are
`_pool_core`'s and `pool.py`'s, shared; only the awaiting differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psycopg_pool
from psycopg.rows import TupleRow

from . import _config as config
from . import _telemetry as telemetry
from ._async_connection import AsyncDsqlConnection
from ._connect_plan import RECORD_KEYWORD, dsql_kwargs
from ._pool_core import PoolRecord, check_max_lifetime
from .errors import ConfigurationError
from .pool import _dsql_options, _stale, _with_options

if TYPE_CHECKING:
    import boto3

    from ._types import TokenProvider

__all__ = ["create_async_pool"]

logger = logging.getLogger("dsql_psycopg.pool")

AsyncConn = AsyncDsqlConnection[TupleRow]
AsyncConnectionCB = Callable[[AsyncConn], Awaitable[None]]


class _AsyncDsqlConnectionPool(psycopg_pool.AsyncConnectionPool[AsyncConn]):
    """An AsyncConnectionPool that never hands out an expired or dead connection.

    `_DsqlConnectionPool`'s twin, on psycopg_pool's public API only: the
    deadline stamped by the `configure` wrapper, and a zero-timeout poll of
    the socket, are checked at checkout (no round trip); a connection past
    its deadline is retired when it is returned.
    """

    _dsql_record: PoolRecord

    async def getconn(self, timeout: float | None = None) -> AsyncConn:
        """Obtain a connection from the pool, younger than its max lifetime.

        Raises:
            ConfigurationError: (or CredentialsError, AuthenticationError,
                UntrustedCertificateError) the pool's last connect failed in
                a way no retry fixes.
            psycopg_pool.PoolTimeout: No connection within `timeout`; its
                cause is the pool's last connect error, if one failed.
        """
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        while True:
            final = self._dsql_record.final()
            if final is not None:
                raise final
            remaining = deadline - time.monotonic()
            wait = self._dsql_record.wait_slice(remaining)
            try:
                if remaining <= 0:
                    raise psycopg_pool.PoolTimeout(
                        f"couldn't get a connection after {budget:.2f} sec"
                    )
                conn = await super().getconn(wait)
            except psycopg_pool.PoolTimeout:
                if wait < remaining:
                    continue  # a startup slice ended: look at the record again
                # psycopg_pool's message names the last wait: name the budget.
                gave_up: psycopg_pool.PoolTimeout | None = psycopg_pool.PoolTimeout(
                    f"couldn't get a connection after {budget:.2f} sec"
                )
            else:
                gave_up = None
            if gave_up is not None:
                # Raised outside the except block: the cause is the pool's
                # last connect error, not psycopg_pool's own timeout.
                raise self._dsql_record.final() or self._dsql_record.timeout(gave_up)
            if not _stale(conn):
                return conn
            await self._retire(conn)

    async def putconn(self, conn: AsyncConn) -> None:
        """Return a connection to the pool; one past its deadline is retired."""
        if not conn.closed and conn._dsql_deadline <= time.monotonic():
            logger.debug("retiring a connection past its deadline")
            await conn.close()
        await super().putconn(conn)

    async def _retire(self, conn: AsyncConn) -> None:
        # Closed, the pool discards it and makes a new one in its place.
        await conn.close()
        await super().putconn(conn)


def _stamp(
    max_lifetime: float, configure: AsyncConnectionCB | None
) -> AsyncConnectionCB:
    """Wrap a user's `configure` to stamp each new connection's deadline."""

    async def stamped(conn: AsyncConn) -> None:
        lifetime = max_lifetime
        failback = conn._failback_due()
        if failback is not None:
            lifetime = min(lifetime, failback)
        conn._dsql_created_at = now = time.monotonic()
        conn._dsql_deadline = now + lifetime
        if configure is not None:
            await configure(conn)

    return stamped


def _skip_stale(check: AsyncConnectionCB) -> AsyncConnectionCB:
    """Wrap a user's `check` so it is not run on a connection we discard."""

    async def checked(conn: AsyncConn) -> None:
        if not _stale(conn):
            await check(conn)

    return checked


def create_async_pool(
    conninfo: str = "",
    *,
    kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    max_lifetime: float = 3000.0,
    check: AsyncConnectionCB | None = None,
    region: str | None = None,
    cluster_id: str | None = None,
    profile: str | None = None,
    token_duration: int | None = None,
    connect_retry: float | str | bool | None = None,
    endpoint_cooldown: float | None = None,
    session: boto3.Session | None = None,
    token_provider: TokenProvider | None = None,
    **pool_kwargs: Any,
) -> psycopg_pool.AsyncConnectionPool[AsyncConn]:
    """Create a `psycopg_pool.AsyncConnectionPool` of `AsyncDsqlConnection`.

    The asyncio twin of `create_pool`, with the same arguments and rules (a
    fresh token per connection, `max_lifetime` enforced at checkout, dead
    connections discarded at checkout, failback after ``endpoint_cooldown``),
    except that an asyncio pool is opened in the event loop, not by this
    function: by ``async with``, as here, or by ``await pool.open()`` (and
    ``await pool.close()``).

    ```python
    import asyncio

    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"


    async def main() -> None:
        async with dsql_psycopg.create_async_pool(url, max_size=10) as pool:
            async for attempt in dsql_psycopg.transaction(pool):
                async with attempt as conn:
                    await conn.execute("SELECT 1")


    asyncio.run(main())
    ```

    ``check``, ``configure`` and ``reset`` are coroutine functions, as
    psycopg_pool wants them.

    Args:
        conninfo: A ``postgresql://`` URL or a ``key=value`` string.
        kwargs: Connection keywords, or a callable returning them before each
            connection.
        max_lifetime: Seconds a connection is kept (at most 55 minutes).
        check: Awaited with a connection before it is handed out.
        region: The AWS region, if the host does not name one.
        cluster_id: The cluster id, with `region`, instead of a host.
        profile: The AWS profile that signs the tokens.
        token_duration: Seconds each token stays valid.
        connect_retry: Seconds to keep retrying a connect refused for a
            transient reason (0 or ``off``: never).
        endpoint_cooldown: Seconds a failed endpoint is tried last.
        session: A `boto3.Session` that signs the tokens.
        token_provider: A `TokenProvider` that makes the tokens instead.
        **pool_kwargs: Passed to `psycopg_pool.AsyncConnectionPool`.

    Raises:
        ConfigurationError: The parameters are invalid.
    """
    max_lifetime = check_max_lifetime(max_lifetime)
    connection_class = pool_kwargs.pop("connection_class", AsyncDsqlConnection)
    if not (
        isinstance(connection_class, type)
        and issubclass(connection_class, AsyncDsqlConnection)
    ):
        raise ConfigurationError(
            "connection_class must be AsyncDsqlConnection or a subclass of it,"
            f" got {connection_class!r}"
        )
    options = _dsql_options(
        region=region,
        cluster_id=cluster_id,
        profile=profile,
        token_duration=token_duration,
        connect_retry=connect_retry,
        endpoint_cooldown=endpoint_cooldown,
        session=session,
        token_provider=token_provider,
    )
    if isinstance(conninfo, str) and not callable(kwargs):
        # Fail now, not after the pool's timeout: a bad parameter fails
        # every connect the same way.
        config.parse_endpoints(conninfo, **dsql_kwargs({**(kwargs or {}), **options}))
    record = PoolRecord()
    pool_kwargs.setdefault("open", False)
    pool = _AsyncDsqlConnectionPool(
        conninfo,
        connection_class=connection_class,
        kwargs=_with_options(kwargs, {**options, RECORD_KEYWORD: record}),
        max_lifetime=max_lifetime,
        check=None if check is None else _skip_stale(check),
        configure=_stamp(max_lifetime, pool_kwargs.pop("configure", None)),
        **pool_kwargs,
    )
    pool._dsql_record = record
    telemetry.watch_pool(pool)
    return pool
