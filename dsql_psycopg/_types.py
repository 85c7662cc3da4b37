"""The types behind `dsql_psycopg.typing` (hooks, events, options).

Kept apart so that `_retry_policy` and the drivers import them without
importing `typing`, which re-exports `RetryPolicy`: no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

RetryReason = Literal[
    "conflict", "connection_lost", "server_unavailable", "commit_outcome_unknown"
]
"""Why an attempt runs again: a conflict (the server rolled back), a connection
lost before COMMIT was sent, a statement answered with ``server unavailable``,
or (``idempotent=True`` only) a COMMIT whose outcome is unknown."""


@dataclass(frozen=True)
class RetryEvent:
    """What `RetryPolicy.on_retry` receives before each retry.

    Carries no SQL and no parameters: `error` is the exception itself, for the
    hook to inspect if it wants more.
    """

    attempt: int
    """Number of the attempt that failed, from 1."""
    delay: float
    """Seconds the next attempt waits for (0 sleeps under `retry_testing`)."""
    reason: RetryReason
    """Why it runs again."""
    sqlstate: str | None
    """``40001`` for a conflict; ``None`` for a lost connection."""
    code: str | None
    """``OC000`` (data conflict) or ``OC001`` (schema conflict) when known."""
    error: BaseException
    """The error the attempt failed with."""
    elapsed: float
    """Seconds since the first attempt started (waits skipped by
    `retry_testing` included)."""
    endpoint: str | None = None
    """Host name of the endpoint the failed attempt ran on (None when it
    had no connection of its own)."""
    endpoint_changed: bool = False
    """Whether the failed attempt ran on another endpoint than the attempt
    before it: a re-run moved to another Region's endpoint."""


RetryHook = Callable[[RetryEvent], None]
"""A callable that `RetryPolicy.on_retry` calls with each `RetryEvent`."""


class RetryOptions(TypedDict, total=False):
    """Keyword arguments that override fields of a `RetryPolicy`.

    `transaction()`, `@retry_on_occ` and Django's `retry_atomic` take them
    as keywords; every key is optional, and one not given keeps the policy's
    value (the defaults are `RetryPolicy`'s).

    ```python
    import dsql_psycopg
    from dsql_psycopg.typing import RetryOptions

    patient: RetryOptions = {"max_attempts": 20, "timeout": 30.0}
    policy = dsql_psycopg.RetryPolicy().with_options(patient)
    assert policy.max_attempts == 20
    ```
    """

    max_attempts: int
    """Runs of the body in all, the first one included (1: no retry)."""
    base_delay: float
    """Seconds of the first backoff cap; it doubles after each attempt."""
    max_delay: float
    """Seconds the backoff cap grows to, at most."""
    jitter: float
    """Share of each wait that is random, from 0 (none) to 1 (full jitter)."""
    timeout: float | None
    """Seconds from the first attempt after which no new one starts (None: no
    limit)."""
    on_retry: RetryHook | None
    """Called with a `RetryEvent` before each retry (None: no hook)."""


class TokenProvider(Protocol):
    """A callable that returns an IAM token for one connection.

    Pass one as ``token_provider=`` to sign tokens your own way; it is called
    for every new connection, with keywords only.

    ```python
    import boto3

    import dsql_psycopg

    signer = boto3.client("dsql", region_name="us-east-1")


    def sign(*, host, region, user, expires_in):
        if user == "admin":
            return signer.generate_db_connect_admin_auth_token(host, region, expires_in)
        return signer.generate_db_connect_auth_token(host, region, expires_in)


    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.connect(url, token_provider=sign) as conn:
        conn.execute("SELECT 1")
    ```
    """

    def __call__(self, *, host: str, region: str, user: str, expires_in: int) -> str:
        """Return a token for one connection.

        Args:
            host: The endpoint host name the token is for.
            region: The AWS region to sign for.
            user: The database role (``admin`` needs an admin token).
            expires_in: Seconds the token must stay valid.

        Returns:
            The token, used as the connection's password.
        """
        ...
