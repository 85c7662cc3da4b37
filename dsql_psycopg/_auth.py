"""IAM tokens: SigV4 presigned locally, with boto3's credentials.

A token is a SigV4 presigned ``GET https://<host>/?Action=DbConnect[Admin]``
for the ``dsql`` service, without the scheme. botocore's generic presigning
path (request objects, URL parsing, event hooks) costs several times the
signature itself on every connect, so the token is signed here: a few HMACs
over a canonical request that is the same for every DSQL token. A test checks
that the result is byte for byte what botocore makes.

Credentials come from boto3's chain: a session is built once per (profile,
region), or kept per (session, region) for a session the user passes in, and
its credentials object (which refreshes temporary credentials itself) is
shared by all threads.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import threading
import time
import weakref
from typing import Any, NamedTuple
from urllib.parse import quote

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
# SHA-256 of the empty body of the presigned GET.
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class _Signer(NamedTuple):
    """Where one (profile or session, region) gets its credentials."""

    credentials: botocore.credentials.Credentials
    region: str


class _SignerCache:
    """Thread-safe cache of signers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_profile: dict[tuple[str | None, str | None], _Signer] = {}
        self._by_session: weakref.WeakKeyDictionary[
            boto3.Session, dict[str | None, _Signer]
        ] = weakref.WeakKeyDictionary()

    def get(self, params: DsqlParams) -> _Signer:
        session = params.session
        with self._lock:
            if session is None:
                signer = self._by_profile.get((params.profile, params.region))
            else:
                signer = self._by_session.get(session, {}).get(params.region)
        if signer is not None:
            return signer
        # Built outside the lock: the credential chain can be slow, and two
        # threads racing here only waste one lookup.
        signer = _new_signer(params)
        with self._lock:
            if session is None:
                key = (params.profile, params.region)
                return self._by_profile.setdefault(key, signer)
            return self._by_session.setdefault(session, {}).setdefault(
                params.region, signer
            )


_signers = _SignerCache()


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
    except botocore.exceptions.ProfileNotFound as ex:
        raise CredentialsError(
            f"AWS profile {params.profile!r} not found: {ex}; check ~/.aws/config"
            " or the profile= option"
        ) from None
    except botocore.exceptions.BotoCoreError as ex:
        raise CredentialsError(f"cannot set up AWS signing: {ex}") from ex
    if credentials is None:
        # Not cached: credentials may appear later (a profile written, env set).
        raise CredentialsError(
            f"no AWS credentials found to sign the DSQL token: {_NO_CREDENTIALS_HINT}"
        )
    logger.debug(
        "using AWS credentials from %s (profile=%s, region=%s)",
        credentials.method,
        params.profile,
        region,
    )
    return _Signer(credentials, region)


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
    """Return a fresh IAM token for one connection described by `!params`."""
    if params.token_provider is not None:
        _silencer.local.signing = True
        try:
            return _provided_token(params)
        finally:
            _silencer.local.signing = False
    signer = _signers.get(params)
    try:
        frozen = signer.credentials.get_frozen_credentials()
    except botocore.exceptions.BotoCoreError as ex:
        raise CredentialsError(
            f"cannot refresh the AWS credentials to sign the DSQL token"
            f" ({type(ex).__name__}: {ex}); {_NO_CREDENTIALS_HINT}"
        ) from ex
    action = "DbConnectAdmin" if params.user == ADMIN_USER else "DbConnect"
    return presign(
        params.host,
        region=params.region or signer.region,
        action=action,
        expires_in=params.token_duration,
        credentials=frozen,
        now=time.gmtime(),
    )


def _quote(value: str) -> str:
    # SigV4's URI encoding: everything but unreserved characters.
    return quote(value, safe="-_.~")


def presign(
    host: str,
    *,
    region: str,
    action: str,
    expires_in: int,
    credentials: botocore.credentials.ReadOnlyCredentials,
    now: time.struct_time,
) -> str:
    """Return the SigV4 presigned token for `!action` on `!host` at `!now`."""
    date = time.strftime("%Y%m%d", now)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", now)
    scope = f"{date}/{region}/dsql/aws4_request"
    # In botocore's order: the action, then the authentication parameters.
    query = (
        f"Action={_quote(action)}"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={_quote(f'{credentials.access_key}/{scope}')}"
        f"&X-Amz-Date={stamp}&X-Amz-Expires={expires_in}&X-Amz-SignedHeaders=host"
    )
    if credentials.token is not None:
        query += f"&X-Amz-Security-Token={_quote(credentials.token)}"
    # The canonical query is sorted by key; only the token's place moves.
    canonical_query = "&".join(sorted(query.split("&")))
    canonical_request = (
        f"GET\n/\n{canonical_query}\nhost:{host.lower()}\n\nhost\n{_EMPTY_SHA256}"
    )
    string_to_sign = (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
        + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    key = _signing_key(credentials.secret_key, date, region)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{host}/?{query}&X-Amz-Signature={signature}"


@functools.lru_cache(maxsize=16)
def _signing_key(secret_key: str, date: str, region: str) -> bytes:
    # The same for a day: derived once, not on every connect.
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "dsql", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


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
