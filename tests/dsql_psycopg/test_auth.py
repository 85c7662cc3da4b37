"""Tokens: botocore signs them (`_auth.py`), DSQL Local's verifier checks them.

The cases that once checked our own SigV4 byte for byte against botocore's
now check DSQL Local's verifier (`dsql_local/_sigv4.py`) against tokens
botocore signs through `make_token`: upper-case host names, FIPS endpoints,
a week's expiry, and session tokens with characters SigV4 must escape.
"""

from __future__ import annotations

import gc
import weakref
from urllib.parse import parse_qs

import boto3
import pytest

from dsql_local._sigv4 import TokenError, TokenVerifier
from dsql_psycopg import _auth as auth
from dsql_psycopg import _config as config
from dsql_psycopg.errors import CredentialsError

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
KEY, SECRET = "AKIAEXAMPLEKEY000000", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _session(region: str, session_token: str | None = None) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        aws_session_token=session_token,
        region_name=region,
    )


@pytest.mark.parametrize(
    ("host", "region", "user", "expires_in", "session_token"),
    [
        (HOST, "us-east-1", "admin", 900, None),
        (HOST, "us-east-1", "app", 900, None),
        (
            HOST.replace(".dsql.us-east-1.", ".DSQL.US-EAST-1."),
            "us-east-1",
            "admin",
            60,
            None,
        ),
        (HOST.replace(".dsql.", ".dsql-fips."), "us-east-1", "app", 604800, None),
        ("localhost", "eu-west-1", "admin", 1, "IQoJb3/+Zm9v=bar==&x y"),
    ],
)
def test_botocores_tokens_pass_dsql_locals_verifier(
    host: str, region: str, user: str, expires_in: int, session_token: str | None
) -> None:
    session = _session(region, session_token)
    params = config.parse(
        host=host, user=user, region=region, token_duration=expires_in, session=session
    )
    token = auth.make_token(params)
    action = "DbConnectAdmin" if user == "admin" else "DbConnect"
    query = parse_qs(token.partition("?")[2])
    assert token.startswith(f"{host}/?Action={action}&")
    assert query["X-Amz-Credential"][0].startswith(f"{KEY}/")
    assert query["X-Amz-Expires"] == [str(expires_in)]
    assert query.get("X-Amz-Security-Token") == (
        None if session_token is None else [session_token]
    )
    verifier = TokenVerifier(region, {KEY: SECRET})
    verifier.verify(token, user=user, server_name=host)
    # One character of the signature off, or another secret: refused.
    signature = query["X-Amz-Signature"][0]
    forged = token.replace(
        signature, signature[:-1] + ("0" if signature[-1] != "0" else "1")
    )
    with pytest.raises(TokenError, match="signature does not match"):
        verifier.verify(forged, user=user, server_name=host)
    with pytest.raises(TokenError, match="signature does not match"):
        TokenVerifier(region, {KEY: "other"}).verify(token, user=user, server_name=host)


def test_one_client_per_session_and_region_which_it_does_not_keep_alive() -> None:
    session = _session("us-east-1")
    params = config.parse(host=HOST, session=session)
    auth.make_token(params)
    signer = auth._clients.find(params)
    assert signer is not None
    auth.make_token(params)
    assert auth._clients.find(params) is signer  # reused, not rebuilt
    assert not auth.token_may_block(params)  # static keys: pure CPU now
    ref = weakref.ref(session)
    del session, params, signer
    gc.collect()
    assert ref() is None


def test_token_may_block_before_the_client_exists_and_for_providers() -> None:
    session = _session("eu-west-3")
    params = config.parse(host=HOST.replace("us-east-1", "eu-west-3"), session=session)
    assert auth.token_may_block(params)
    provided = config.parse(host=HOST, token_provider=lambda **_: "t")
    assert auth.token_may_block(provided)


def test_no_credentials_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # a region no other test signs for: nothing cached yet
    params = config.parse(host=HOST.replace("us-east-1", "ap-south-2"))
    with pytest.raises(CredentialsError, match="no AWS credentials"):
        auth.make_token(params)
    # credentials appearing later are found on the next connect
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIALATERKEY00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "later")
    assert "AKIALATERKEY00000000%2F" in auth.make_token(params)
    auth.clear_signing_clients()
    assert auth._clients.find(params) is None
