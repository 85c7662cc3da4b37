"""IAM tokens: signed locally by botocore, with sessions and clients reused.

Building a boto3 session and client costs ~100 ms (it loads the service
model); signing with a reused client costs well under a millisecond. So the
client is built once per (profile, region), or per (session, region) for a
session the user passes in, and shared by all threads (botocore clients are
thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Protocol, cast

import boto3
import botocore.exceptions

from ._config import DsqlParams
from .errors import ConfigurationError, CredentialsError


class _DsqlClient(Protocol):
    """The part of botocore's DSQL client we use (it signs locally)."""

    def generate_db_connect_auth_token(
        self, Hostname: str, Region: str, ExpiresIn: int = ...
    ) -> str: ...

    def generate_db_connect_admin_auth_token(
        self, Hostname: str, Region: str, ExpiresIn: int = ...
    ) -> str: ...


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


class _ClientCache:
    """Thread-safe cache of DSQL clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_profile: dict[tuple[str | None, str | None], _DsqlClient] = {}
        self._by_session: weakref.WeakKeyDictionary[
            boto3.Session, dict[str | None, _DsqlClient]
        ] = weakref.WeakKeyDictionary()

    def get(self, params: DsqlParams) -> _DsqlClient:
        key = (params.profile, params.region)
        session = params.session
        with self._lock:
            if session is None:
                client = self._by_profile.get(key)
            else:
                client = self._by_session.get(session, {}).get(params.region)
        if client is not None:
            return client
        # Built outside the lock: it is slow, and two threads racing here only
        # waste one client.
        client = _new_client(params)
        with self._lock:
            if session is None:
                return self._by_profile.setdefault(key, client)
            return self._by_session.setdefault(session, {}).setdefault(
                params.region, client
            )

    def forget(self, params: DsqlParams) -> None:
        """Drop the client for `!params`, so credentials are looked up afresh."""
        with self._lock:
            if params.session is None:
                self._by_profile.pop((params.profile, params.region), None)
            else:
                self._by_session.get(params.session, {}).pop(params.region, None)


_clients = _ClientCache()


class _SigningSilencer(logging.Filter):
    """Drop botocore's signing debug records while we make a token.

    At DEBUG, botocore logs the canonical request and the signature, which
    together are the token.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "signing", False)


_silencer = _SigningSilencer()
logging.getLogger("botocore.auth").addFilter(_silencer)


def _new_client(params: DsqlParams) -> _DsqlClient:
    try:
        session = params.session or boto3.Session(profile_name=params.profile)
        region = params.region or session.region_name
        if region is None:
            raise ConfigurationError(
                f"no AWS region for host {params.host!r}: pass region='us-east-1'"
                " (for example), set AWS_REGION, or use the full DSQL endpoint name"
            )
        logger.debug(
            "creating DSQL client (profile=%s, region=%s)", params.profile, region
        )
        return cast(_DsqlClient, session.client("dsql", region_name=region))
    except botocore.exceptions.ProfileNotFound as ex:
        raise CredentialsError(
            f"AWS profile {params.profile!r} not found: {ex}; check ~/.aws/config"
            " or the profile= option"
        ) from None
    except botocore.exceptions.BotoCoreError as ex:
        raise CredentialsError(f"cannot set up AWS signing: {ex}") from ex


def make_token(params: DsqlParams) -> str:
    """Return a fresh IAM token for one connection described by `!params`."""
    _silencer.local.signing = True
    try:
        return _make_token(params)
    finally:
        _silencer.local.signing = False


def _make_token(params: DsqlParams) -> str:
    if params.token_provider is not None:
        return _provided_token(params)
    client = _clients.get(params)
    region = params.region or cast(Any, client).meta.region_name
    try:
        if params.user == ADMIN_USER:
            return client.generate_db_connect_admin_auth_token(
                params.host, region, params.token_duration
            )
        return client.generate_db_connect_auth_token(
            params.host, region, params.token_duration
        )
    except botocore.exceptions.NoCredentialsError:
        # Credentials may appear later (a profile written, env set): look again
        # next time instead of caching a client that can never sign.
        _clients.forget(params)
        raise CredentialsError(
            f"no AWS credentials found to sign the DSQL token: {_NO_CREDENTIALS_HINT}"
        ) from None
    except botocore.exceptions.BotoCoreError as ex:
        _clients.forget(params)
        raise CredentialsError(
            f"cannot sign the DSQL token ({type(ex).__name__}: {ex});"
            f" {_NO_CREDENTIALS_HINT}"
        ) from ex


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
