"""Tokens: our SigV4 presigning is byte for byte botocore's."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import boto3
import pytest

from dsql_psycopg import _auth as auth
from dsql_psycopg import _config as config
from dsql_psycopg.errors import CredentialsError

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"


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
def test_token_is_botocores(
    host: str, region: str, user: str, expires_in: int, session_token: str | None
) -> None:
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLEKEY000000",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=session_token,
        region_name=region,
    )
    client = session.client("dsql")
    action = "DbConnectAdmin" if user == "admin" else "DbConnect"
    if user == "admin":
        theirs = client.generate_db_connect_admin_auth_token(host, region, expires_in)
    else:
        theirs = client.generate_db_connect_auth_token(host, region, expires_in)
    # Signed at the same second as botocore's, ours must be the same string.
    stamp = parse_qs(theirs.partition("?")[2])["X-Amz-Date"][0]
    credentials = session.get_credentials()
    assert credentials is not None
    ours = auth.presign(
        host,
        region=region,
        action=action,
        expires_in=expires_in,
        credentials=credentials.get_frozen_credentials(),
        now=time.strptime(stamp, "%Y%m%dT%H%M%SZ"),
    )
    assert ours == theirs

    # and make_token signs with the session's credentials, now
    params = config.parse(
        host=host, user=user, region=region, token_duration=expires_in, session=session
    )
    token = auth.make_token(params)
    query = parse_qs(token.partition("?")[2])
    assert token.startswith(f"{host}/?Action={action}&")
    assert query["X-Amz-Credential"][0].startswith("AKIAEXAMPLEKEY000000/")
    assert query["X-Amz-Expires"] == [str(expires_in)]
    assert query.get("X-Amz-Security-Token") == (
        None if session_token is None else [session_token]
    )


def test_no_credentials_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
