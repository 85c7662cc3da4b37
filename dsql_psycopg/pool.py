"""create_pool(): a psycopg_pool.ConnectionPool of DsqlConnection fit for DSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg_pool
from psycopg.rows import TupleRow

from . import _config as config
from . import _telemetry as telemetry
from ._connect_plan import RECORD_KEYWORD, dsql_kwargs
from ._liveness import connection_lost
from ._pool_core import (
    DEFAULT_MAX_LIFETIME,
    MAX_LIFETIME_CEILING,
    PoolRecord,
    check_max_lifetime,
)
from .connection import DsqlConnection
from .errors import ConfigurationError

if TYPE_CHECKING:
    import boto3

    from ._async_connection import AsyncDsqlConnection
    from ._types import TokenProvider

__all__ = ["DEFAULT_MAX_LIFETIME", "MAX_LIFETIME_CEILING", "create_pool"]

logger = logging.getLogger("dsql_psycopg.pool")

ConnectionCB = Callable[[DsqlConnection[TupleRow]], None]


class _DsqlConnectionPool(psycopg_pool.ConnectionPool[DsqlConnection[TupleRow]]):
    """A ConnectionPool that never hands out an expired or dead connection.

    Only psycopg_pool's public API is used: `create_pool` wraps `configure`
    to stamp each new connection with its deadline (its max lifetime, or the
    endpoint cool-down for a connection made off the preferred endpoint),
    and `getconn` / `putconn` retire a connection past it. psycopg_pool
    retires a connection past its lifetime only when it is returned, so one
    can sit idle past it and be handed out; the checks here cost no round
    trip: the deadline, and a zero-timeout poll of the socket (an idle
    connection has nothing to read unless the server hung up). A connection
    failing them is closed and given back, which discards and replaces it,
    and the next one is tried at once: failing a `check` callback instead
    would make psycopg_pool back off for a second or more per stale
    connection, which a pool idle for an hour has many of.
    """

    _dsql_record: PoolRecord

    def getconn(self, timeout: float | None = None) -> DsqlConnection[TupleRow]:
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
                conn = super().getconn(wait)
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
            self._retire(conn)

    def putconn(self, conn: DsqlConnection[TupleRow]) -> None:
        """Return a connection to the pool; one past its deadline is retired."""
        if not conn.closed and _deadline(conn) <= time.monotonic():
            # A connection made while the preferred endpoint was failing
            # lives only for the cool-down: its replacement tries the
            # preferred one again, so traffic returns after a recovery
            # without cutting a connection in use.
            logger.debug("retiring a connection past its deadline")
            conn.close()
        super().putconn(conn)

    def _retire(self, conn: DsqlConnection[TupleRow]) -> None:
        # Closed, the pool discards it and makes a new one in its place.
        conn.close()
        super().putconn(conn)


def _deadline(
    conn: DsqlConnection[TupleRow] | AsyncDsqlConnection[TupleRow],
) -> float:
    return conn._dsql_deadline


def _stale(conn: DsqlConnection[TupleRow] | AsyncDsqlConnection[TupleRow]) -> bool:
    """Tell whether a pooled connection (either kind) is past use, at checkout."""
    if _deadline(conn) <= time.monotonic():
        logger.debug("discarding a connection past its max lifetime at checkout")
        return True
    if connection_lost(conn) is not None:
        logger.debug("discarding a connection the server closed while idle")
        return True
    return False


def _stamp(max_lifetime: float, configure: ConnectionCB | None) -> ConnectionCB:
    """Wrap a user's `configure` to stamp each new connection's deadline."""

    def stamped(conn: DsqlConnection[TupleRow]) -> None:
        lifetime = max_lifetime
        failback = conn._failback_due()
        if failback is not None:
            lifetime = min(lifetime, failback)
        conn._dsql_created_at = now = time.monotonic()
        conn._dsql_deadline = now + lifetime
        if configure is not None:
            configure(conn)

    return stamped


def _skip_stale(check: ConnectionCB) -> ConnectionCB:
    """Wrap a user's `check` so it is not run on a connection we discard."""

    def checked(conn: DsqlConnection[TupleRow]) -> None:
        if not _stale(conn):
            check(conn)

    return checked


def create_pool(
    conninfo: str = "",
    *,
    kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    open: bool = True,
    max_lifetime: float = 3000.0,
    check: ConnectionCB | None = None,
    region: str | None = None,
    cluster_id: str | None = None,
    profile: str | None = None,
    token_duration: int | None = None,
    connect_retry: float | str | bool | None = None,
    endpoint_cooldown: float | None = None,
    session: boto3.Session | None = None,
    token_provider: TokenProvider | None = None,
    **pool_kwargs: Any,
) -> psycopg_pool.ConnectionPool[DsqlConnection[TupleRow]]:
    """Create a `psycopg_pool.ConnectionPool` of `DsqlConnection`.

    Every `ConnectionPool` argument works (``min_size``, ``max_size``,
    ``configure``, ``reset``, ``check``, ``timeout``...). Differences:

    - each new connection signs a fresh IAM token, so the pool outlives any
      token; the DSQL options (``region``, ``cluster_id``, ``profile``,
      ``token_duration``, ``connect_retry``, ``endpoint_cooldown``,
      ``session``, ``token_provider``) go to `DsqlConnection.connect` with
      `kwargs`, so each connect the pool makes retries transient refusals as
      `connect()` does;
    - with several endpoints (``host=a,b``), a connection made on another
      endpoint than the first (while the first was failing) is retired after
      ``endpoint_cooldown`` seconds, when it is next returned, so the pool
      moves back to the first endpoint once it recovers;
    - `max_lifetime` defaults to 50 minutes (DSQL closes connections at 60)
      and is enforced at checkout too, without a round trip; a connection
      the server closed while idle is discarded at checkout as well;
    - the pool opens at once (``open=True``); ``with create_pool(...) as
      pool:`` also works and closes it on exit; ``open=False`` defers to
      ``pool.open()``.

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.create_pool(url, min_size=1, max_size=10) as pool:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
    ```

    Args:
        conninfo: A ``postgresql://`` URL or a ``key=value`` string.
        kwargs: Connection keywords, or a callable returning them before each
            connection.
        open: Open the pool now.
        max_lifetime: Seconds a connection is kept: 3000 (50 minutes) by
            default, at most 3300 (55 minutes).
        check: Called with a connection before it is handed out.
        region: The AWS region, if the host does not name one.
        cluster_id: The cluster id, with `region`, instead of a host.
        profile: The AWS profile that signs the tokens.
        token_duration: Seconds each token stays valid.
        connect_retry: Seconds to keep retrying a connect refused for a
            transient reason (0 or ``off``: never).
        endpoint_cooldown: Seconds a failed endpoint is tried last.
        session: A `boto3.Session` that signs the tokens.
        token_provider: A `TokenProvider` that makes the tokens instead.
        **pool_kwargs: Passed to `psycopg_pool.ConnectionPool`.

    Raises:
        ConfigurationError: The parameters are invalid.

    Returns:
        A `ConnectionPool` of `DsqlConnection`, open unless `open` is False.
    """
    max_lifetime = check_max_lifetime(max_lifetime)
    connection_class = pool_kwargs.pop("connection_class", DsqlConnection)
    if not (
        isinstance(connection_class, type)
        and issubclass(connection_class, DsqlConnection)
    ):
        raise ConfigurationError(
            "connection_class must be DsqlConnection or a subclass of it, got"
            f" {connection_class!r}"
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
    pool = _DsqlConnectionPool(
        conninfo,
        connection_class=connection_class,
        kwargs=_with_options(kwargs, {**options, RECORD_KEYWORD: record}),
        open=False,
        max_lifetime=max_lifetime,
        check=None if check is None else _skip_stale(check),
        configure=_stamp(max_lifetime, pool_kwargs.pop("configure", None)),
        **pool_kwargs,
    )
    pool._dsql_record = record
    telemetry.watch_pool(pool)
    if open:
        pool.open()
    return pool


def _with_options(
    kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None,
    options: dict[str, Any],
) -> dict[str, Any] | Callable[[], dict[str, Any]] | None:
    if not options:
        return kwargs
    if callable(kwargs):
        make = kwargs
        return lambda: {**make(), **options}
    return {**(kwargs or {}), **options}


def _dsql_options(**given: Any) -> dict[str, Any]:
    """The DSQL options a pool passes to each connect: those that were given."""
    return {key: value for key, value in given.items() if value is not None}
