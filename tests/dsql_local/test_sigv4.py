"""The token verifier against tokens botocore signs."""

from __future__ import annotations

import datetime
import functools
import re

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsql_local._sigv4 import TokenError, TokenVerifier

HOST = "abcdefghijklmnopqrstuv0123.dsql.us-east-1.on.aws"
KEY, SECRET = "AKIAVERIFIERTEST0000", "verifier-test-secret"


def _client(token: str | None = None, key: str = KEY, secret: str = SECRET) -> object:
    session = boto3.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token
    )
    return session.client("dsql", region_name="us-east-1")


def _admin_token(expires: int = 900, **kwargs: str) -> str:
    client = _client(**kwargs)
    return client.generate_db_connect_admin_auth_token(  # type: ignore[attr-defined,no-any-return]
        HOST, "us-east-1", ExpiresIn=expires
    )


def _role_token() -> str:
    return _client().generate_db_connect_auth_token(HOST, "us-east-1")  # type: ignore[attr-defined,no-any-return]


def _verifier(offset: float = 0.0, skew: float = 60.0) -> TokenVerifier:
    def now() -> datetime.datetime:
        real = datetime.datetime.now(datetime.timezone.utc)
        return real + datetime.timedelta(seconds=offset)

    return TokenVerifier("us-east-1", {KEY: SECRET}, clock_skew=skew, now=now)


def _refused(
    token: str, verifier: TokenVerifier | None = None, **kw: str
) -> TokenError:
    with pytest.raises(TokenError) as info:
        (verifier or _verifier()).verify(
            token, user=kw.get("user", "admin"), server_name=kw.get("host", HOST)
        )
    assert token not in info.value.reason
    return info.value


def test_botocore_tokens_verify() -> None:
    verifier = _verifier()
    verifier.verify(_admin_token(), user="admin", server_name=HOST)
    verifier.verify(_role_token(), user="app", server_name=HOST)
    # SNI names are case-insensitive.
    verifier.verify(_admin_token(), user="admin", server_name=HOST.upper())


def test_upper_case_host_tokens_verify() -> None:
    # botocore signs the host lower-cased but leaves the token's as given.
    client = _client()
    token = client.generate_db_connect_admin_auth_token(  # type: ignore[attr-defined]
        HOST.upper(), "us-east-1"
    )
    assert token.startswith(HOST.upper() + "/")
    _verifier().verify(token, user="admin", server_name=HOST.upper())
    _verifier().verify(token, user="admin", server_name=HOST)
    # Still bound to its host name, whatever the case.
    _refused(token.replace(HOST.upper(), "X" + HOST.upper()[1:], 1))


def test_security_token_is_accepted() -> None:
    token = _admin_token(token="IQoJb3JpZ2luX2VjEXAMPLE/+=")
    assert "X-Amz-Security-Token=" in token
    _verifier().verify(token, user="admin", server_name=HOST)


def test_secrets_may_be_a_callable() -> None:
    keys = {KEY: "old"}
    verifier = TokenVerifier("us-east-1", lambda: keys)
    _refused(_admin_token(), verifier)
    keys[KEY] = SECRET
    verifier.verify(_admin_token(), user="admin", server_name=HOST)


def test_expiry_and_skew() -> None:
    token = _admin_token(expires=60)
    _verifier(offset=100, skew=60).verify(token, user="admin", server_name=HOST)
    error = _refused(token, _verifier(offset=130, skew=60))
    assert (error.sqlstate, error.reason) == ("28P01", "the token has expired")
    error = _refused(token, _verifier(offset=-120, skew=60))
    assert "future" in error.reason


def test_wrong_secret() -> None:
    error = _refused(_admin_token(secret="wrong"))
    assert error.sqlstate == "28P01"
    assert "signature does not match" in error.reason


def test_tampered_token() -> None:
    token = _admin_token()
    error = _refused(token.replace("X-Amz-Expires=900", "X-Amz-Expires=901"))
    assert "signature does not match" in error.reason


def test_wrong_action_and_host() -> None:
    assert "needs a DbConnect token" in _refused(_admin_token(), user="app").reason
    assert "DbConnectAdmin" in _refused(_role_token(), user="admin").reason
    other = _refused(_admin_token(), host="other.dsql.us-east-1.on.aws")
    assert "another host name" in other.reason


def test_wrong_region() -> None:
    verifier = TokenVerifier("eu-west-1", {KEY: SECRET})
    error = _refused(_admin_token(), verifier)
    assert "another region" in error.reason
    # Nothing of the token is echoed, not even its region.
    assert "us-east-1" not in error.reason


def test_refusals_echo_nothing_of_the_token() -> None:
    token = _admin_token().replace("Action=DbConnectAdmin", "Action=Probe%3Cb%3E")
    error = _refused(token)
    assert "Probe" not in error.reason
    assert "<b>" not in error.reason
    assert "DbConnectAdmin" in error.reason  # what it takes, not what it got


def test_date_at_the_end_of_time_is_refused() -> None:
    # Year 9999 plus a week of validity does not fit a datetime.
    token = re.sub(r"X-Amz-Date=\d{8}", "X-Amz-Date=99991231", _admin_token())
    token = re.sub(r"(X-Amz-Credential=[^%]+%2F)\d{8}", r"\g<1>99991231", token)
    token = token.replace("X-Amz-Expires=900", "X-Amz-Expires=604800")
    error = _refused(token)
    assert (error.sqlstate, error.reason) == (
        "28P01",
        "the token is signed in the future",
    )


def test_non_ascii_signature_is_refused() -> None:
    token = re.sub(
        r"X-Amz-Signature=\w+", "X-Amz-Signature=" + "%C3%A9" * 32, _admin_token()
    )
    error = _refused(token)
    assert error.sqlstate == "28000"
    assert "signature" in error.reason


# One token for every example: signing one takes longer than verifying it.
_fuzzed_token = functools.cache(_admin_token)
_token_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from("=&%/?+9"), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=2_000),
    length=st.integers(min_value=0, max_value=40),
    insert=_token_text,
)
def test_verifier_never_raises_on_input(cut: int, length: int, insert: str) -> None:
    token = _fuzzed_token()
    cut %= len(token) + 1
    mangled = token[:cut] + insert + token[cut + length :]
    refusal: TokenError | None = None
    try:
        _verifier().verify(mangled, user="admin", server_name=HOST)
    except TokenError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.sqlstate in ("28000", "28P01")
        # Echoing any of it would show here, as the inserts are mostly not ASCII.
        assert refusal.reason.isascii()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t.split("/", 1)[1], "expected <host>"),
        (lambda t: t.replace("/?", "/"), "expected <host>"),
        (lambda t: t + "&Action=DbConnect", "repeated"),
        (lambda t: t.replace("X-Amz-Date", "X-Amz-Datum"), "X-Amz-Date is missing"),
        (lambda t: t.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), "algorithm"),
        (lambda t: t.replace("SignedHeaders=host", "SignedHeaders=host%3Bx"), "signed"),
        (lambda t: t.replace("%2Fdsql%2F", "%2Frds-db%2F"), "service 'dsql'"),
        (lambda t: t.replace("%2Faws4_request", ""), "credential scope"),
        (lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=0"), "positive"),
        (
            lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=604801"),
            # DSQL's words (awslabs/aurora-dsql-python-connector,
            # test_integration_psycopg_common.py, test_custom_token_duration)
            "X-Amz-Expires must be less than a week (in seconds)",
        ),
        (lambda t: t.replace("X-Amz-Expires=900", "X-Amz-Expires=ten"), "invalid"),
        (lambda t: t.replace("%2F2", "%2F1", 1), "date does not match"),
    ],
)
def test_malformed_tokens(mangle: object, reason: str) -> None:
    token = mangle(_admin_token())  # type: ignore[operator]
    error = _refused(token)
    assert reason in error.reason


def test_repr_shows_no_secret() -> None:
    assert SECRET not in repr(_verifier())
