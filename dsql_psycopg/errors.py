"""Exceptions raised by dsql_psycopg.

Every error the library raises on its own account derives from `DsqlError`.
Errors coming from the server (psycopg's own hierarchy) propagate unchanged,
except where noted: a connection refused because of its credentials becomes an
`AuthenticationError`, a certificate outside the connection's trust an
`UntrustedCertificateError`, and one refused for a transient reason until the
connect budget ran out a `ConnectRetryExhausted`; all three are also
`psycopg.OperationalError`.

No message built here ever contains a token or a secret.
"""

from __future__ import annotations

import psycopg


class DsqlError(Exception):
    """Base class of every error raised by dsql_psycopg."""


class ConfigurationError(DsqlError, ValueError):
    """The connection parameters or options are invalid.

    Raised before anything is sent, with a message that names the problem and
    the fix. It is also a `ValueError`.

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    try:
        dsql_psycopg.connect(url, sslmode="require")
    except dsql_psycopg.ConfigurationError as ex:
        assert "verify-full" in str(ex)
    ```
    """


class CredentialsError(DsqlError):
    """No usable AWS credentials, or a token could not be made."""


class AuthenticationError(CredentialsError, psycopg.OperationalError):
    """The server refused the connection's IAM token."""


class ConnectRetryExhausted(DsqlError, psycopg.OperationalError):
    """A connect kept being refused for a transient reason until its budget ran out.

    Transient: the cluster waking up, the connection rate limit, too many
    connections, the endpoint refusing or resetting connections. `cause` names
    the last one, `attempts` and `elapsed` (seconds) say what was spent; the
    last connect error is the exception's ``__cause__``.

    Attributes:
        attempts: Connects tried, the first one included.
        elapsed: Seconds from the first try to giving up.
        cause: The last transient refusal, in words.
    """

    def __init__(
        self, message: str, *, attempts: int, elapsed: float, cause: str
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed = elapsed
        self.cause = cause


class UntrustedCertificateError(DsqlError, psycopg.OperationalError):
    """The server's certificate does not chain to a root the connection trusts."""


class OCCRetryExhausted(DsqlError):
    """A transaction kept failing with optimistic-concurrency conflicts.

    The last conflict is the exception's ``__cause__``, and `is_occ_error` is
    true for it, so that an outer layer that retries on conflicts (a job
    queue, a client) recognises it too.

    Attributes:
        attempts: Runs of the transaction, the first one included.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class CommitOutcomeUnknown(DsqlError):
    """COMMIT's outcome is unknown: the connection broke, or the server was lost.

    The connection broke while COMMIT was in flight, or DSQL answered COMMIT
    with ``ERROR: server unavailable`` (XX000). The transaction may or may not
    have committed, so it was not run again. The connection or server error is
    the exception's ``__cause__``.
    """
