"""Verify Aurora DSQL IAM tokens: SigV4 presigned URLs without a scheme.

A token looks like ``<host>/?Action=DbConnect&X-Amz-Algorithm=...&X-Amz-Signature=...``.
Only the ``host`` header is signed, so a token is bound to one host name.
No message built here contains the token or any part of it, and no input
makes `TokenVerifier.verify` raise anything but `TokenError`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

_ALGORITHM = "AWS4-HMAC-SHA256"
_SERVICE = "dsql"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_EXPIRES = 604_800
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


class TokenError(Exception):
    """The token was refused; ``sqlstate`` and a message safe to show a client."""

    def __init__(self, sqlstate: str, reason: str) -> None:
        super().__init__(reason)
        self.sqlstate = sqlstate
        self.reason = reason


def _malformed(what: str) -> TokenError:
    return TokenError("28000", f"malformed token: {what}")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


class TokenVerifier:
    """Check tokens against a region and a set of access keys.

    ``secrets`` maps an access key id to its secret access key; it is called
    anew for each token when it is a callable, so keys can change at run time.
    """

    def __init__(
        self,
        region: str,
        secrets: Mapping[str, str] | Callable[[], Mapping[str, str]],
        *,
        clock_skew: float = 300.0,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.region = region
        self._secrets = secrets
        self._skew = datetime.timedelta(seconds=clock_skew)
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))

    def __repr__(self) -> str:
        return f"TokenVerifier(region={self.region!r})"

    def verify(self, token: str, *, user: str, server_name: str) -> None:
        """Raise TokenError unless `token` lets `user` connect to `server_name`."""
        try:
            self._verify(token, user, server_name)
        except (ValueError, TypeError, OverflowError) as exc:
            # A check above missed a malformed token: refuse it all the same.
            # (UnicodeError is a ValueError.)
            raise _malformed(f"it cannot be read ({type(exc).__name__})") from None

    def _verify(self, token: str, user: str, server_name: str) -> None:
        host, params = _parse(token)
        if host.lower() != server_name.lower():
            raise TokenError(
                "28000",
                "the token was signed for another host name than the one connected to",
            )
        expected_action = "DbConnectAdmin" if user == "admin" else "DbConnect"
        if params["Action"] != expected_action:
            raise TokenError(
                "28000",
                f'the token is for another action: user "{user}" needs a '
                f"{expected_action} token",
            )
        access_key, scope_date = self._check_scope(params)
        self._check_time(params, scope_date)
        secrets = self._secrets() if callable(self._secrets) else self._secrets
        secret = secrets.get(access_key)
        if secret is None:
            raise TokenError(
                "28P01",
                "the token was signed with an access key this endpoint does not know",
            )
        # botocore signs the host name lower-cased (a host header is
        # case-insensitive) while the token keeps it as given; a signer that
        # keeps the case signs it as given.
        given = params["X-Amz-Signature"].encode()
        if not any(
            hmac.compare_digest(
                _signature(secret, name, params, scope_date, self.region), given
            )
            for name in dict.fromkeys((host.lower(), host))
        ):
            raise TokenError(
                "28P01",
                "the token signature does not match (wrong secret access key?)",
            )

    def _check_scope(self, params: Mapping[str, str]) -> tuple[str, str]:
        """Check the credential scope; return the access key id and the date."""
        scope = params["X-Amz-Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _malformed(
                "the credential scope is not <key>/<date>/<region>/dsql/aws4_request"
            )
        access_key, scope_date, region, service = scope[:4]
        if service != _SERVICE:
            raise TokenError("28000", "the token was not signed for service 'dsql'")
        if region != self.region:
            raise TokenError(
                "28000",
                f"the token was signed for another region than this endpoint's"
                f" ({self.region})",
            )
        return access_key, scope_date

    def _check_time(self, params: Mapping[str, str], scope_date: str) -> None:
        amz_date = params["X-Amz-Date"]
        try:
            signed_at = datetime.datetime.strptime(amz_date, _DATE_FORMAT).replace(
                tzinfo=datetime.timezone.utc
            )
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise _malformed("X-Amz-Date or X-Amz-Expires is invalid") from None
        if not amz_date.startswith(scope_date):
            raise _malformed("the credential scope date does not match X-Amz-Date")
        if expires > _MAX_EXPIRES:
            # DSQL's words, as AWS's connector tests expect them.
            raise _malformed(
                f"X-Amz-Expires must be less than a week (in seconds),"
                f" {_MAX_EXPIRES} at most"
            )
        if expires < 1:
            raise _malformed("X-Amz-Expires must be a positive number of seconds")
        # A difference of two datetimes always fits; a sum may not (year 9999).
        age = self._now() - signed_at
        if age > datetime.timedelta(seconds=expires) + self._skew:
            raise TokenError("28P01", "the token has expired")
        if -age > self._skew:
            raise TokenError("28P01", "the token is signed in the future")


_REQUIRED = (
    "Action",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


def _parse(token: str) -> tuple[str, dict[str, str]]:
    """Split a token into its host and its query parameters."""
    host, sep, rest = token.partition("/")
    if not sep or not rest.startswith("?") or not host:
        raise _malformed("expected <host>/?<signed query>")
    try:
        pairs = parse_qsl(
            rest[1:], keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (ValueError, UnicodeDecodeError):
        raise _malformed("the query string cannot be parsed") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise _malformed("a parameter is repeated")
        params[key] = value
    for required in _REQUIRED:
        if required not in params:
            raise _malformed(f"parameter {required} is missing")
    if params["X-Amz-Algorithm"] != _ALGORITHM:
        raise _malformed(f"the algorithm is not {_ALGORITHM}")
    if params["X-Amz-SignedHeaders"] != "host":
        raise _malformed("the signed headers must be exactly 'host'")
    if not _SIGNATURE_RE.fullmatch(params["X-Amz-Signature"]):
        raise _malformed("the signature is not 64 lowercase hexadecimal digits")
    return host, params


def _signature(
    secret: str, host: str, params: Mapping[str, str], date: str, region: str
) -> bytes:
    """The hex digest a token with these parameters must carry, as ASCII."""
    query = "&".join(
        f"{_quote(k)}={_quote(v)}"
        for k, v in sorted(params.items())
        if k != "X-Amz-Signature"
    )
    canonical = "\n".join(
        ["GET", "/", query, f"host:{host}", "", "host", _EMPTY_SHA256]
    )
    scope = f"{date}/{region}/{_SERVICE}/aws4_request"
    to_sign = "\n".join(
        [
            _ALGORITHM,
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, _SERVICE, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest().encode()
