"""DsqlConnection: a psycopg connection that signs its own password."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, overload

import psycopg
from psycopg.rows import Row, RowFactory, TupleRow
from typing_extensions import Self

from . import _auth as auth
from . import _config as config
from . import _endpoints
from ._connect_retry import ConnectRetry, detail, transient_cause
from ._tls import apply_tls, untrusted_certificate
from ._version import __version__
from .errors import AuthenticationError

logger = logging.getLogger("dsql_psycopg")

APPLICATION_NAME = f"dsql-psycopg/{__version__}"

# Phrases servers use when they refuse credentials; connection errors carry
# no SQLSTATE in psycopg, so the message is all there is to go on.
_AUTH_FAILURES = ("authentication failed", "access denied", "28p01", "28000")
# The keyword connect() hands the chosen endpoint to _get_connection_params
# with, through psycopg's connect(); not a libpq keyword.
_PARAMS = "_dsql_params"
# Keywords psycopg's connect() takes for itself (autocommit, row_factory...).
_OWN_KEYWORDS = frozenset(
    name
    for name, p in inspect.signature(psycopg.Connection.connect).parameters.items()
    if p.kind is p.KEYWORD_ONLY
)


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
        started = time.monotonic()
        endpoints = config.parse_endpoints(
            conninfo, **{k: v for k, v in kwargs.items() if k not in _OWN_KEYWORDS}
        )
        retry: ConnectRetry | None = None
        while True:
            failures: list[tuple[config.DsqlParams, psycopg.OperationalError, str]] = []
            transient = False
            for params in _endpoints.order(endpoints):
                try:
                    chosen: dict[str, Any] = {_PARAMS: params}
                    conn = super().connect(conninfo, **kwargs, **chosen)
                except psycopg.OperationalError as ex:
                    cause = _failure_cause(ex, conninfo, kwargs)
                    transient = transient or cause is not None
                    cause = cause or detail(ex)
                    _endpoints.failed(endpoints, params, cause)
                    failures.append((params, ex, cause))
                    continue
                _endpoints.succeeded(endpoints, params)
                conn._dsql_endpoints, conn._dsql_params = endpoints, params
                return conn
            _, error, cause = failures[-1]
            if not transient or not endpoints.connect_retry:
                raise error
            if len(failures) > 1:
                cause = "; ".join(f"{p.host}: {c}" for p, _, c in failures)
            if retry is None:
                retry = ConnectRetry(started)
            retry.wait_or_raise(error, cause, endpoints.connect_retry)

    def _failback_due(self) -> float | None:
        """Return how long this connection may keep traffic off its preferred
        endpoint: None when it is on it (or none is preferred)."""
        endpoints, params = self._dsql_endpoints, self._dsql_params
        if endpoints is None or params is None:
            return None
        if _endpoints.is_preferred(endpoints, params):
            return None
        return endpoints.cooldown

    # psycopg calls this hook for every connection it opens, after it has taken
    # its own keywords (autocommit, row_factory...) out, and pools go through
    # connect() too: one place covers every path.
    @classmethod
    def _get_connection_params(cls, conninfo: str, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        params = kwargs.pop(_PARAMS, None)
        if params is None:
            params = config.parse(conninfo, **kwargs)
        libpq = dict(params.libpq)
        apply_tls(libpq)
        libpq.setdefault("application_name", APPLICATION_NAME)
        libpq["password"] = auth.make_token(params)
        logger.debug(
            "connecting to %s as %s (region %s), parameters ready in %.2f ms",
            params.host,
            params.user,
            params.region,
            (time.perf_counter() - started) * 1000,
        )
        return libpq


def _failure_cause(
    error: psycopg.OperationalError, conninfo: str, kwargs: dict[str, Any]
) -> str | None:
    """Raise what no other try can fix; else return why it is worth another."""
    if "certificate verify failed" in str(error):
        raise untrusted_certificate(error, conninfo, kwargs) from error
    if any(s in str(error).lower() for s in _AUTH_FAILURES):
        raise AuthenticationError(
            f"the server refused the IAM token: {error}. Check that the"
            " host is the cluster's endpoint name, that the"
            " credentials are current, and that the role may connect"
            " (dsql:DbConnectAdmin for admin, dsql:DbConnect and a"
            " matching database role otherwise)"
        ) from error
    return transient_cause(error)


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

    Examples::

        connect("postgresql://admin@<id>.dsql.us-east-1.on.aws/postgres")
        connect(cluster_id="<id>", region="us-east-1", autocommit=True)
        connect(host="<id1>.dsql.us-east-1.on.aws,<id2>.dsql.us-west-2.on.aws")

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
