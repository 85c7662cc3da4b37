"""create_pool(): a psycopg_pool.ConnectionPool of DsqlConnection fit for DSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg_pool
from psycopg.rows import TupleRow

from ._liveness import connection_lost
from .connection import DsqlConnection
from .errors import ConfigurationError

if TYPE_CHECKING:
    import boto3

    from .typing import TokenProvider

__all__ = ["DEFAULT_MAX_LIFETIME", "create_pool"]

logger = logging.getLogger("dsql_psycopg.pool")

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

ConnectionCB = Callable[[DsqlConnection[TupleRow]], None]


class _DsqlConnectionPool(psycopg_pool.ConnectionPool[DsqlConnection[TupleRow]]):
    """A ConnectionPool that never hands out an expired or dead connection.

    psycopg_pool retires a connection past its lifetime only when it is
    returned, so one can sit idle past it and be handed out. The checks here
    cost no round trip: the pool's own expiry time, and a zero-timeout poll of
    the socket (an idle connection has nothing to read unless the server hung
    up). A connection failing them is given back, which discards and replaces
    it, and the next one is tried at once: failing a `check` callback instead
    would make psycopg_pool back off for a second or more per stale
    connection, which a pool idle for an hour has many of.
    """

    def _connect(self, timeout: float | None = None) -> DsqlConnection[TupleRow]:
        conn = super()._connect(timeout)
        # A connection made while the preferred endpoint was failing lives
        # only for the cool-down: its replacement tries the preferred one
        # again, so traffic returns after a recovery without cutting a
        # connection in use (the pool retires it when it comes back).
        failback = conn._failback_due()
        if failback is not None:
            conn._expire_at = min(conn._expire_at, time.monotonic() + failback)
        return conn

    def getconn(self, timeout: float | None = None) -> DsqlConnection[TupleRow]:
        """Obtain a connection from the pool, younger than its max lifetime."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise psycopg_pool.PoolTimeout(
                    f"couldn't get a connection after {budget:.2f} sec"
                )
            conn = super().getconn(remaining)
            if not _stale(conn):
                return conn
            self.putconn(conn)


def _stale(conn: DsqlConnection[TupleRow]) -> bool:
    if conn._expire_at <= time.monotonic():
        logger.debug("discarding a connection past its max lifetime at checkout")
        return True
    if connection_lost(conn) is not None:
        logger.debug("discarding a connection the server closed while idle")
        return True
    return False


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
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
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

    Args:
        conninfo: A ``postgresql://`` URL or a ``key=value`` string.
        kwargs: Connection keywords, or a callable returning them before each
            connection.
        open: Open the pool now.
        max_lifetime: Seconds a connection is kept (at most 55 minutes).
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
    """
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
    connection_class = pool_kwargs.pop("connection_class", DsqlConnection)
    if not (
        isinstance(connection_class, type)
        and issubclass(connection_class, DsqlConnection)
    ):
        raise ConfigurationError(
            "connection_class must be DsqlConnection or a subclass of it, got"
            f" {connection_class!r}"
        )
    options = {
        key: value
        for key, value in (
            ("region", region),
            ("cluster_id", cluster_id),
            ("profile", profile),
            ("token_duration", token_duration),
            ("connect_retry", connect_retry),
            ("endpoint_cooldown", endpoint_cooldown),
            ("session", session),
            ("token_provider", token_provider),
        )
        if value is not None
    }
    return _DsqlConnectionPool(
        conninfo,
        connection_class=connection_class,
        kwargs=_with_options(kwargs, options),
        open=open,
        max_lifetime=max_lifetime,
        check=None if check is None else _skip_stale(check),
        **pool_kwargs,
    )


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
