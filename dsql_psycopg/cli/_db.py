"""Database steps of ``check``: authenticate through DsqlConnection, then query."""

from __future__ import annotations

import psycopg

from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.errors import AuthenticationError, DsqlError

from ._steps import Outcome, State, StepFailed

_GRANT = (
    "as admin: CREATE ROLE {user} WITH LOGIN; AWS IAM GRANT {user} TO"
    " '<IAM role or user ARN>'"
)


def authentication(state: State) -> Outcome:
    """Connect with a fresh token, as the library does for every connection."""
    params = state.need_params()
    try:
        state.conn = DsqlConnection.connect(
            **{"connect_timeout": round(state.timeout), **params.libpq},
            region=state.region,
            token_duration=params.token_duration,
            session=state.session,
            autocommit=True,
        )
    except (psycopg.Error, DsqlError) as ex:
        message = _server_message(ex)
        raise StepFailed(message, _auth_hint(message, params.user)) from None
    info = state.conn.info
    return Outcome(
        f"logged in as {info.user} (server {info.server_version},"
        f" backend pid {info.backend_pid})",
        {"user": info.user, "server_version": info.server_version},
    )


def query(state: State) -> Outcome:
    """Run ``select current_user, version()``."""
    assert state.conn is not None, "the authentication step runs first"
    try:
        row = state.conn.execute("select current_user, version()").fetchone()
    except psycopg.Error as ex:
        raise StepFailed(
            _server_message(ex),
            "the session is up but cannot run a query: check the server's"
            " message; the role may lack privileges",
        ) from None
    assert row is not None
    user, version = row
    return Outcome(
        f"current_user={user}, {version}", {"current_user": user, "version": version}
    )


def _server_message(ex: BaseException) -> str:
    # AuthenticationError puts advice around the server's words; the words are
    # what say which fix applies.
    inner = ex.__cause__ or ex.__context__
    if isinstance(ex, AuthenticationError) and inner is not None:
        ex = inner
    return " ".join(str(ex).split()) or type(ex).__name__


# (words in the server's message, the likely fix), first match wins.
_AUTH_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("does not exist",),
        "the role {user!r} does not exist on the cluster; " + _GRANT,
    ),
    (
        ("expired",),
        "the token or the credentials behind it expired: check this machine's"
        " clock and refresh temporary credentials (e.g. 'aws sso login')",
    ),
    (
        ("host name", "sni"),
        "the token is bound to the host name: connect with host= set to the"
        " cluster's endpoint name, and hostaddr= for a specific address",
    ),
    (
        ("region",),
        "sign for the cluster's region: fix --region or the host name",
    ),
    (
        ("action", "dbconnect"),
        "role {user!r} needs the matching token and permission: admin needs"
        " DbConnectAdmin (IAM dsql:DbConnectAdmin), other roles DbConnect"
        " (IAM dsql:DbConnect) and a grant: " + _GRANT,
    ),
    (
        ("not authorized", "permission"),
        "the IAM identity lacks permission: allow dsql:DbConnectAdmin (admin)"
        " or dsql:DbConnect (other roles) on the cluster; " + _GRANT,
    ),
    (
        ("authentication", "signature", "access key"),
        "the server rejected the token: the credentials are not valid for the"
        " cluster's account (check AWS_SECRET_ACCESS_KEY, the profile, and"
        " AWS_SESSION_TOKEN for temporary keys), or role {user!r} has no IAM"
        " grant: " + _GRANT,
    ),
    (
        ("too many", "rate exceeded"),
        "the cluster is at its connection limit (10,000 open, 100 new per"
        " second): close idle connections, share them through a pool, and retry",
    ),
    (
        ("timeout", "timed out"),
        "the server did not answer in time: retry, or raise connect_timeout=",
    ),
)


def _auth_hint(message: str, user: str) -> str:
    text = message.lower()
    for words, hint in _AUTH_HINTS:
        if any(word in text for word in words):
            return hint.format(user=user)
    return "see the server's message for the cause"
