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
from ._connect_retry import ConnectRetry, transient_cause
from ._tls import apply_tls, untrusted_certificate
from ._version import __version__
from .errors import AuthenticationError

logger = logging.getLogger("dsql_psycopg")

APPLICATION_NAME = f"dsql-psycopg/{__version__}"

# Phrases servers use when they refuse credentials; connection errors carry
# no SQLSTATE in psycopg, so the message is all there is to go on.
_AUTH_FAILURES = ("authentication failed", "access denied", "28p01", "28000")


class DsqlConnection(psycopg.Connection[Row]):
    """A `psycopg.Connection` to Aurora DSQL.

    Every connection, whether made by `connect()`, by ``DsqlConnection.connect()``
    or by a pool, gets a freshly signed IAM token as its password and
    ``sslmode=verify-full``. Every psycopg keyword argument still works; the
    DSQL options (``region``, ``cluster_id``, ``profile``, ``token_duration``,
    ``connect_retry``, ``session``, ``token_provider``) are accepted alongside.

    A connect refused for a transient reason (the cluster waking up, the
    connection rate limit, too many connections, the endpoint refusing or
    resetting connections while it restarts) is tried again, with a new
    token, after a random wait, for up to ``connect_retry`` seconds (5 by
    default; 0 or ``"off"`` never retries); then `ConnectRetryExhausted`.
    """

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect to a DSQL cluster and return a new connection."""
        started = time.monotonic()
        retry: ConnectRetry | None = None
        while True:
            try:
                return super().connect(conninfo, **kwargs)
            except psycopg.OperationalError as ex:
                if "certificate verify failed" in str(ex):
                    raise untrusted_certificate(ex, conninfo, kwargs) from ex
                if any(s in str(ex).lower() for s in _AUTH_FAILURES):
                    raise AuthenticationError(
                        f"the server refused the IAM token: {ex}. Check that the"
                        " host is the cluster's endpoint name, that the"
                        " credentials are current, and that the role may connect"
                        " (dsql:DbConnectAdmin for admin, dsql:DbConnect and a"
                        " matching database role otherwise)"
                    ) from ex
                cause = transient_cause(ex)
                if cause is None:
                    raise
                budget = config.connect_retry_option(conninfo, kwargs)
                if not budget:
                    raise
                if retry is None:
                    retry = ConnectRetry(started)
                retry.wait_or_raise(ex, cause, budget)

    # psycopg calls this hook for every connection it opens, after it has taken
    # its own keywords (autocommit, row_factory...) out, and pools go through
    # connect() too: one place covers every path.
    @classmethod
    def _get_connection_params(cls, conninfo: str, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
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

    Args:
        conninfo: A ``postgresql://`` URL or a ``key=value`` string.
        row_factory: As in `psycopg.connect`.
        **kwargs: Override `conninfo`: psycopg's and libpq's keywords, and the
            DSQL options ``region``, ``cluster_id``, ``profile``,
            ``token_duration`` (seconds), ``connect_retry`` (seconds to keep
            retrying a connect refused for a transient reason; 0 or ``off``:
            never), ``session`` (a `boto3.Session`) and ``token_provider`` (a
            `TokenProvider`).

    Raises:
        ConfigurationError: The parameters are invalid (nothing was sent).
        CredentialsError: No AWS credentials could sign the token.
        AuthenticationError: The server refused the token.
        ConnectRetryExhausted: Transient refusals outlasted ``connect_retry``.
    """
    if row_factory is not None:
        kwargs["row_factory"] = row_factory
    return DsqlConnection.connect(conninfo, **kwargs)
