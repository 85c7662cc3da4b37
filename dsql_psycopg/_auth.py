"""IAM tokens, signed by botocore on a ``dsql`` client built once and reused.

A token is a SigV4 presigned ``GET https://<host>/?Action=DbConnect[Admin]``
for the ``dsql`` service, without the scheme: botocore's
``generate_db_connect_auth_token`` / ``generate_db_connect_admin_auth_token``
make it. The client is built once per (profile, Region), or per (session,
Region) for a session the user passes in, keyed weakly on that session so
that the cache never keeps it alive; clients are thread-safe, and their
credentials refresh themselves.

`token_may_block` tells an async driver whether signing is pure CPU now
(client built, credentials fresh) or may do network I/O (building the
credential chain, refreshing temporary credentials through STS, SSO or the
instance metadata service), to run it in a thread then.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, NamedTuple

import boto3
import botocore.credentials
import botocore.exceptions

from ._config import DsqlParams
from .errors import ConfigurationError, CredentialsError

logger = logging.getLogger("dsql_psycopg")

ADMIN_USER = "admin"


def credentials_hint(profile_option: str) -> str:
    """Say how to supply AWS credentials; `!profile_option` names a profile."""
    return (
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for"
        f" temporary keys), or name a profile with AWS_PROFILE or {profile_option}"
        " (run 'aws sso login' first for an SSO profile)"
    )


_NO_CREDENTIALS_HINT = (
    credentials_hint("profile=...") + ", or pass session=boto3.Session(...)"
)


class _Signer(NamedTuple):
    """A ``dsql`` client and the credentials object it signs with."""

    client: Any
    credentials: botocore.credentials.Credentials


class _Clients:
    """Thread-safe cache of ``dsql`` clients, one per (profile or session, Region)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_profile: dict[tuple[str | None, str | None], _Signer] = {}
        self._by_session: weakref.WeakKeyDictionary[
            boto3.Session, dict[str | None, _Signer]
        ] = weakref.WeakKeyDictionary()

    def find(self, params: DsqlParams) -> _Signer | None:
        """Return the client for `params` if one was built."""
        session = params.session
        with self._lock:
            if session is None:
                return self._by_profile.get((params.profile, params.region))
            return self._by_session.get(session, {}).get(params.region)

    def get(self, params: DsqlParams) -> _Signer:
        """Return the client for `params`, building it the first time."""
        signer = self.find(params)
        if signer is not None:
            return signer
        # Built outside the lock: the credential chain can be slow, and two
        # threads racing here only waste one lookup.
        signer = _new_signer(params)
        with self._lock:
            if params.session is None:
                key = (params.profile, params.region)
                return self._by_profile.setdefault(key, signer)
            return self._by_session.setdefault(params.session, {}).setdefault(
                params.region, signer
            )

    def clear(self) -> None:
        """Forget every client (the next connect builds its own again)."""
        with self._lock:
            self._by_profile.clear()
            self._by_session.clear()


_clients = _Clients()


def clear_signing_clients() -> None:
    """Forget the cached ``dsql`` clients and the sessions built for profiles.

    The next connect builds them again, reading the AWS configuration anew.
    """
    _clients.clear()


def _new_signer(params: DsqlParams) -> _Signer:
    try:
        session = params.session or boto3.Session(profile_name=params.profile)
        region = params.region or session.region_name
        if region is None:
            raise ConfigurationError(
                f"no AWS region for host {params.host!r}: pass region='us-east-1'"
                " (for example), set AWS_REGION, or use the full DSQL endpoint name"
            )
        credentials = session.get_credentials()
        if credentials is None:
            # Not cached: credentials may appear later (a profile written, env set).
            raise CredentialsError(
                "no AWS credentials found to sign the DSQL token:"
                f" {_NO_CREDENTIALS_HINT}"
            )
        client = session.client("dsql", region_name=region)
    except botocore.exceptions.ProfileNotFound as ex:
        raise CredentialsError(
            f"AWS profile {params.profile!r} not found: {ex}; check ~/.aws/config"
            " or the profile= option"
        ) from None
    except botocore.exceptions.BotoCoreError as ex:
        raise CredentialsError(f"cannot set up AWS signing: {ex}") from ex
    logger.debug(
        "using AWS credentials from %s (profile=%s, region=%s)",
        credentials.method,
        params.profile,
        region,
    )
    return _Signer(client, credentials)


class _SigningSilencer(logging.Filter):
    """Drop botocore's signing debug records while a token is made.

    A token provider may sign with botocore, which at DEBUG logs the
    canonical request and the signature: together, the token.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "signing", False)


_silencer = _SigningSilencer()
logging.getLogger("botocore.auth").addFilter(_silencer)


def make_token(params: DsqlParams) -> str:
    """Return a fresh IAM token for one connection described by `!params`.

    May block on network I/O when credentials must be found or refreshed;
    see `token_may_block`.
    """
    if params.token_provider is not None:
        _silencer.local.signing = True
        try:
            return _provided_token(params)
        finally:
            _silencer.local.signing = False
    client = _clients.get(params).client
    region = params.region or client.meta.region_name
    sign = (
        client.generate_db_connect_admin_auth_token
        if params.user == ADMIN_USER
        else client.generate_db_connect_auth_token
    )
    _silencer.local.signing = True
    try:
        token: str = sign(params.host, region, params.token_duration)
    except botocore.exceptions.NoCredentialsError as ex:
        raise CredentialsError(
            f"no AWS credentials found to sign the DSQL token: {_NO_CREDENTIALS_HINT}"
        ) from ex
    except botocore.exceptions.BotoCoreError as ex:
        raise CredentialsError(
            f"cannot refresh the AWS credentials to sign the DSQL token"
            f" ({type(ex).__name__}: {ex}); {_NO_CREDENTIALS_HINT}"
        ) from ex
    finally:
        _silencer.local.signing = False
    return token


def token_may_block(params: DsqlParams) -> bool:
    """Tell whether `make_token` may do network I/O for `params` now.

    False when the client is built and its credentials need no refresh
    (static keys, or temporary ones outside botocore's refresh window);
    True for a `token_provider` (its work is unknown) and otherwise.
    """
    if params.token_provider is not None:
        return True
    signer = _clients.find(params)
    if signer is None:
        return True
    # Only refreshable (temporary) credentials have it; static keys never
    # need network I/O.
    refresh_needed = getattr(signer.credentials, "refresh_needed", None)
    return bool(refresh_needed()) if callable(refresh_needed) else False


def _provided_token(params: DsqlParams) -> str:
    assert params.token_provider is not None
    # The environment variables boto3 itself would read for the region.
    region = (
        params.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    if region is None:
        raise ConfigurationError(
            f"no AWS region for host {params.host!r}: pass region= (or set"
            " AWS_REGION) along with token_provider="
        )
    try:
        token: Any = params.token_provider(
            host=params.host,
            region=region,
            user=params.user,
            expires_in=params.token_duration,
        )
    except Exception as ex:
        raise CredentialsError(
            f"token_provider failed with {type(ex).__name__}"
        ) from ex
    if not isinstance(token, str) or not token:
        raise CredentialsError(
            f"token_provider must return a non-empty str, got {type(token).__name__}"
        )
    return token
