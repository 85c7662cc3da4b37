"""DsqlConnection: a psycopg connection that signs its own password."""

from __future__ import annotations

import logging
import time
from typing import Any, overload

import psycopg
from psycopg.rows import Row, RowFactory, TupleRow
from typing_extensions import Self

from . import _auth as auth
from . import _config as config
from . import _telemetry as telemetry
from ._connect_plan import (
    APPLICATION_NAME,
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

__all__ = ["APPLICATION_NAME", "DsqlConnection", "connect"]

logger = logging.getLogger("dsql_psycopg")


class DsqlConnection(psycopg.Connection[Row]):
    """A `psycopg.Connection` to Aurora DSQL.

    Every connection, whether made by `connect()`, by ``DsqlConnection.connect()``
    or by a pool, gets a freshly signed IAM token as its password and
    ``sslmode=verify-full``. Every psycopg keyword argument still works; the
    DSQL options (``region``, ``cluster_id``, ``profile``, ``token_duration``,
    ``connect_retry``, ``endpoint_cooldown``, ``session``, ``token_provider``)
    are accepted alongside.

    Several endpoints (a multi-Region cluster's, in libpq's spelling:
    ``host=a,b``) are tried in turn, each with a token for its own host name
    and Region; one that fails is tried last for ``endpoint_cooldown``
    seconds (30 by default). `endpoint` and `region` say which one a
    connection uses.

    A connect refused for a transient reason (the cluster waking up, the
    connection rate limit, too many connections, the endpoint refusing or
    resetting connections while it restarts) is tried again, with a new
    token, after a random wait, for up to ``connect_retry`` seconds (5 by
    default; 0 or ``"off"`` never retries); then `ConnectRetryExhausted`.
    """

    _dsql_endpoints: config.Endpoints | None = None
    _dsql_params: config.DsqlParams | None = None
    # When a pool made this connection and when it retires it (monotonic
    # times, stamped by create_pool's pool).
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
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect to a DSQL cluster and return a new connection."""
        record: PoolRecord | None = kwargs.pop(RECORD_KEYWORD, None)
        try:
            conn = cls._connect_endpoints(conninfo, kwargs)
        except Exception as ex:
            if record is not None:
                record.failed(ex)
            raise
        if record is not None:
            record.succeeded()
        return conn

    @classmethod
    def _connect_endpoints(cls, conninfo: str, kwargs: dict[str, Any]) -> Self:
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
                        time.sleep(step.delay)
                    continue
                chosen: dict[str, Any] = {PARAMS_KEYWORD: step.params}
                try:
                    conn = super().connect(conninfo, **kwargs, **chosen)
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

    # psycopg calls this hook for every connection it opens, after it has taken
    # its own keywords (autocommit, row_factory...) out, and pools go through
    # connect() too: one place covers every path.
    @classmethod
    def _get_connection_params(cls, conninfo: str, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        params = kwargs.pop(PARAMS_KEYWORD, None)
        if params is None:
            params = config.parse(conninfo, **kwargs)
        libpq = libpq_params(params)
        signing = time.perf_counter()
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


@overload
def connect(
    conninfo: str = "", *, row_factory: None = None, **kwargs: Any
) -> DsqlConnection[TupleRow]: ...


@overload
def connect(
    conninfo: str = "", *, row_factory: RowFactory[Row], **kwargs: Any
) -> DsqlConnection[Row]: ...


def connect(
    conninfo: str = "", *, row_factory: RowFactory[Any] | None = None, **kwargs: Any
) -> DsqlConnection[Any]:
    """Connect to Aurora DSQL; see `DsqlConnection`.

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("admin",)

    # keywords instead of a URL: the cluster id and its Region
    conn = dsql_psycopg.connect(
        cluster_id="<cluster-id>", region="us-east-1", autocommit=True
    )
    conn.close()
    ```

    Several endpoints (a multi-Region cluster's, ``host=a,b``) are tried in
    turn, each with a token signed for its own host and Region.

    Args:
        conninfo: A ``postgresql://`` URL or a ``key=value`` string.
        row_factory: As in `psycopg.connect`.
        **kwargs: Override `conninfo`: psycopg's and libpq's keywords, and the
            DSQL options ``region``, ``cluster_id``, ``profile``,
            ``token_duration`` (seconds), ``connect_retry`` (seconds to keep
            retrying a connect refused for a transient reason; 0 or ``off``:
            never), ``endpoint_cooldown`` (seconds a failed endpoint is tried
            last, with several endpoints), ``session`` (a `boto3.Session`)
            and ``token_provider`` (a `TokenProvider`).

    Raises:
        ConfigurationError: The parameters are invalid (nothing was sent).
        CredentialsError: No AWS credentials could sign the token.
        AuthenticationError: The server refused the token.
        ConnectRetryExhausted: Transient refusals outlasted ``connect_retry``.
    """
    if row_factory is not None:
        kwargs["row_factory"] = row_factory
    return DsqlConnection.connect(conninfo, **kwargs)
