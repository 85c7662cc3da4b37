"""TLS negotiation and IAM token authentication, end to end."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from pathlib import Path

import boto3
import botocore
import psycopg
import pytest

from dsql_local import DsqlLocal
from dsql_local import _protocol as pq
from tests.dsql_local.helpers import Connect, make_token, open_connection


@pytest.mark.parametrize("negotiation", ["direct", "postgres"])
def test_admin_token_is_accepted(connect: Connect, negotiation: str) -> None:
    conn = connect(negotiation=negotiation)
    row = conn.execute("select current_user, current_setting('ssl', true)").fetchone()
    assert row is not None
    assert row[0] == "admin"
    assert conn.pgconn.ssl_in_use


@pytest.mark.parametrize("negotiation", ["direct", "postgres"])
def test_role_token_is_accepted(
    dsql_local: DsqlLocal, connect: Connect, negotiation: str
) -> None:
    dsql_local.create_role("app_reader")
    dsql_local.create_role("app_reader")  # idempotent
    conn = connect("app_reader", negotiation=negotiation)
    assert conn.execute("select current_user").fetchone() == ("app_reader",)


def test_url_works_with_a_token(dsql_local: DsqlLocal) -> None:
    token = make_token(dsql_local)
    with psycopg.connect(dsql_local.url, password=token, sslmode="verify-full") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert dsql_local.url.startswith(f"postgresql://admin@{dsql_local.host}:")
    assert len(dsql_local.cluster_id) == 26
    assert dsql_local.host == f"{dsql_local.cluster_id}.dsql.us-east-1.on.aws"


def _startup_answer(
    local: DsqlLocal, user: str = "admin", *, tls: bool = True
) -> dict[str, str]:
    """The fields of the ErrorResponse a startup as `user` is answered with."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", local.port)))
        if tls:
            sock.sendall(pq.INT32.pack(8) + pq.INT32.pack(pq.SSL_REQUEST))
            assert sock.recv(1) == b"S"
            ctx = ssl.create_default_context(cafile=local.ca_file)
            sock = stack.enter_context(
                ctx.wrap_socket(sock, server_hostname=local.host)
            )
        sock.sendall(pq.startup_message({"user": user, "database": "postgres"}))
        kind, body = _read(sock)
        if kind == b"R":
            sock.sendall(pq.message(b"p", make_token(local, user).encode() + b"\0"))
            kind, body = _read(sock)
        assert kind == b"E", (kind, body)
        return pq.parse_fields(body)


def _read(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while len(data) < 5 or len(data) < 1 + pq.INT32.unpack_from(data, 1)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[:1], data[5:]


def test_plaintext_is_refused(dsql_local: DsqlLocal) -> None:
    # As asyncpg sees DSQL answer it (awslabs/aurora-dsql-python-connector,
    # test_integration_asyncpg.py, test_basic_connection_ssl_false): 08P01
    # (ProtocolViolationError), "SSL is mandatory".
    answer = _startup_answer(dsql_local, tls=False)
    assert (answer["S"], answer["C"]) == ("FATAL", "08P01")
    assert "SSL is mandatory" in answer["M"]
    assert "sslmode=verify-full" in answer["D"]
    with pytest.raises(psycopg.OperationalError, match="SSL is mandatory"):
        open_connection(dsql_local, sslmode="disable", negotiation="postgres")


def test_certificate_is_verified_against_the_ca_file(dsql_local: DsqlLocal) -> None:
    # Without our CA the chain cannot be verified: the CA file is what makes it work.
    other_roots = Path(botocore.__file__).parent / "cacert.pem"
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        open_connection(dsql_local, sslrootcert=str(other_roots))


def test_certificate_is_valid_for_localhost(dsql_local: DsqlLocal) -> None:
    token = make_token(dsql_local, host="localhost")
    with open_connection(dsql_local, host="localhost", token=token) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_missing_sni_is_refused(dsql_local: DsqlLocal) -> None:
    # An IP address as host: libpq sends no SNI, and DSQL needs it.
    with pytest.raises(psycopg.OperationalError, match="sni was not received"):
        open_connection(dsql_local, host="127.0.0.1", sslmode="verify-ca")


def _refusal(local: DsqlLocal, token: str, user: str = "admin") -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        open_connection(local, user, token=token)
    message = str(info.value)
    assert "IAM authentication failed" in message
    assert token not in message
    assert token.rsplit("=", 1)[-1] not in message  # not even the signature
    return message


def test_wrong_secret_is_refused(dsql_local: DsqlLocal) -> None:
    session = boto3.Session(
        aws_access_key_id=boto3.Session().get_credentials().access_key,
        aws_secret_access_key="not-the-right-secret",
    )
    message = _refusal(dsql_local, make_token(dsql_local, session=session))
    assert "signature does not match" in message


def test_unknown_access_key_is_refused(dsql_local: DsqlLocal) -> None:
    session = boto3.Session(
        aws_access_key_id="AKIAUNKNOWNKEY000000", aws_secret_access_key="whatever"
    )
    message = _refusal(dsql_local, make_token(dsql_local, session=session))
    assert "access key this endpoint does not know" in message


def test_expired_token_is_refused() -> None:
    with DsqlLocal(strict=False, clock_skew=0) as local:
        token = make_token(local, expires=1)
        time.sleep(2.1)
        message = _refusal(local, token)
        assert "expired" in message
        # A fresh one still works.
        open_connection(local).close()


def test_token_for_another_host_is_refused(dsql_local: DsqlLocal) -> None:
    other = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
    message = _refusal(dsql_local, make_token(dsql_local, host=other))
    assert "another host name" in message


def test_admin_token_for_a_role_is_refused(dsql_local: DsqlLocal) -> None:
    dsql_local.create_role("app_writer")
    message = _refusal(dsql_local, make_token(dsql_local, "admin"), user="app_writer")
    assert "needs a DbConnect token" in message


def test_role_token_for_admin_is_refused(dsql_local: DsqlLocal) -> None:
    message = _refusal(dsql_local, make_token(dsql_local, "app_writer"))
    assert "needs a DbConnectAdmin token" in message


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "host-only/",
        "{host}/?Action=DbConnectAdmin",
        "{host}/?Action=DbConnectAdmin&X-Amz-Algorithm=AWS4-HMAC-SHA1"
        "&X-Amz-Credential=a%2F20260101%2Fus-east-1%2Fdsql%2Faws4_request"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=5eca1ed5eca1ed",
    ],
)
def test_malformed_token_is_refused(dsql_local: DsqlLocal, token: str) -> None:
    message = _refusal(dsql_local, token.format(host=dsql_local.host))
    assert "malformed token" in message


def test_token_for_another_region_is_refused(dsql_local: DsqlLocal) -> None:
    client = boto3.client("dsql", region_name="eu-west-1")
    token = client.generate_db_connect_admin_auth_token(dsql_local.host, "eu-west-1")
    message = _refusal(dsql_local, token)
    assert "another region" in message
    assert "eu-west-1" not in message  # nothing of the token is echoed


def test_unknown_role_is_refused(dsql_local: DsqlLocal) -> None:
    # A protocol violation, as AWS's connector tests expect of DSQL
    # (test_integration_asyncpg.py, test_invalid_user_fails); PostgreSQL's
    # own words stay as the detail.
    answer = _startup_answer(dsql_local, "nobody_made_me")
    assert (answer["S"], answer["C"]) == ("FATAL", "08P01")
    assert answer["M"] == "unable to accept connection, access denied"
    assert answer["D"] == 'role "nobody_made_me" does not exist'
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        open_connection(dsql_local, "nobody_made_me")


def test_token_for_more_than_a_week_is_refused(dsql_local: DsqlLocal) -> None:
    # botocore signs any ExpiresIn; DSQL refuses more than a week with these
    # words (test_integration_psycopg_common.py, test_custom_token_duration).
    message = _refusal(dsql_local, make_token(dsql_local, expires=604_801))
    assert "X-Amz-Expires must be less than a week (in seconds)" in message
    with open_connection(dsql_local, token=make_token(dsql_local, expires=604_800)):
        pass


def test_token_for_an_upper_case_host_is_accepted(dsql_local: DsqlLocal) -> None:
    # botocore lower-cases the host name it signs, not the one in the token.
    host = dsql_local.host.upper()
    token = make_token(dsql_local, host=host)
    assert token.startswith(host + "/")
    with open_connection(dsql_local, host=host, token=token) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_session_token_is_accepted() -> None:
    credentials = {"ASIATEMPORARYKEY0000": "temporary-secret"}
    with DsqlLocal(strict=False, credentials=credentials) as local:
        session = boto3.Session(
            aws_access_key_id="ASIATEMPORARYKEY0000",
            aws_secret_access_key="temporary-secret",
            aws_session_token="FwoGZXIvYXdzEXAMPLE/session+token==",
        )
        token = make_token(local, session=session)
        assert "X-Amz-Security-Token=" in token
        with open_connection(local, token=token) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        # The environment's key is not accepted when credentials are given.
        _refusal(local, make_token(local))


def test_tokens_never_reach_the_logs(
    dsql_local: DsqlLocal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dsql_local")
    good = make_token(dsql_local)
    open_connection(dsql_local, token=good).close()
    bad = make_token(dsql_local, "app_writer")
    _refusal(dsql_local, bad)
    assert "refused user" in caplog.text
    for token in (good, bad):
        assert token not in caplog.text
        assert token.rsplit("=", 1)[-1] not in caplog.text
