"""The connector against DSQL Local: real TLS, real tokens, real psycopg."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg._tls import DIRECT_NEGOTIATION


def libpq_settings(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    return {
        opt.keyword.decode(): opt.val.decode() if opt.val is not None else None
        for opt in conn.pgconn.info
    }


def current_user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("select current_user").fetchone()
    assert row is not None
    return str(row[0])


def test_connect_url(dsql_local: DsqlLocal) -> None:
    with dsql.connect(dsql_local.url) as conn:
        assert current_user(conn) == "admin"
        assert isinstance(conn, dsql.DsqlConnection)


def test_connect_key_value(dsql_local: DsqlLocal) -> None:
    conninfo = make_conninfo(**dsql_local.connect_kwargs())
    with dsql.connect(conninfo) as conn:
        assert current_user(conn) == "admin"


def test_connect_kwargs(dsql_local: DsqlLocal) -> None:
    with dsql.connect(**dsql_local.connect_kwargs()) as conn:
        assert current_user(conn) == "admin"


def test_connect_cluster_id_and_region(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    del kwargs["host"]
    with dsql.connect(
        cluster_id=dsql_local.cluster_id, region=dsql_local.region, **kwargs
    ) as conn:
        assert current_user(conn) == "admin"


def test_class_connect_and_defaults(dsql_local: DsqlLocal) -> None:
    # user and dbname left out: admin and postgres are the defaults
    kwargs = dsql_local.connect_kwargs()
    del kwargs["user"], kwargs["dbname"]
    with dsql.DsqlConnection.connect(**kwargs) as conn:
        assert current_user(conn) == "admin"
        assert conn.info.dbname == "postgres"


def test_custom_role_uses_dbconnect_token(dsql_local: DsqlLocal) -> None:
    dsql_local.create_role("app")
    with dsql.connect(**dsql_local.connect_kwargs(user="app")) as conn:
        assert current_user(conn) == "app"


def test_custom_role_token_is_dbconnect(dsql_local: DsqlLocal) -> None:
    tokens: list[str] = []
    client = boto3.client("dsql", region_name=dsql_local.region)

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        token = client.generate_db_connect_auth_token(host, region, expires_in)
        tokens.append(token)
        return token

    dsql_local.create_role("app")
    with dsql.connect(**dsql_local.connect_kwargs(user="app"), token_provider=provider):
        pass
    assert len(tokens) == 1
    assert "Action=DbConnect&" in tokens[0]


def test_verify_full_and_direct_negotiation_by_default(dsql_local: DsqlLocal) -> None:
    with dsql.connect(dsql_local.url) as conn:
        settings = libpq_settings(conn)
        assert conn.pgconn.ssl_in_use
        assert settings["sslmode"] == "verify-full"
        if DIRECT_NEGOTIATION:
            assert settings["sslnegotiation"] == "direct"


def test_classic_negotiation_on_request(dsql_local: DsqlLocal) -> None:
    with dsql.connect(dsql_local.url, sslnegotiation="postgres") as conn:
        assert conn.pgconn.ssl_in_use
        assert libpq_settings(conn)["sslnegotiation"] == "postgres"


def test_psycopg_keywords_still_work(dsql_local: DsqlLocal) -> None:
    with dsql.connect(
        dsql_local.url, autocommit=True, row_factory=dict_row, prepare_threshold=None
    ) as conn:
        assert conn.autocommit
        assert conn.prepare_threshold is None
        assert conn.execute("select 1 as one").fetchone() == {"one": 1}


def test_application_name(dsql_local: DsqlLocal) -> None:
    with dsql.connect(dsql_local.url) as conn:
        assert conn.info.parameter_status("application_name") == (
            f"dsql-psycopg/{dsql.__version__}"
        )
    with dsql.connect(dsql_local.url, application_name="billing") as conn:
        assert conn.info.parameter_status("application_name") == "billing"


def test_token_never_visible(
    dsql_local: DsqlLocal, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[str] = []
    client = boto3.client("dsql", region_name=dsql_local.region)

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        tokens.append(client.generate_db_connect_admin_auth_token(host, region))
        return tokens[-1]

    caplog.set_level(logging.DEBUG)
    with dsql.connect(dsql_local.url, token_provider=provider) as conn:
        seen = [repr(conn), str(conn.info.dsn), repr(conn.info.get_parameters())]
    signature = tokens[0].rsplit("X-Amz-Signature=", 1)[1]
    for text in [*seen, caplog.text]:
        assert signature not in text

    # Our own signing path: botocore's debug records of the canonical request
    # and signature (together, the token) are kept out of the logs.
    caplog.clear()
    with dsql.connect(dsql_local.url):
        pass
    assert "connecting to" in caplog.text
    assert "X-Amz-Signature" not in caplog.text
    assert not [r for r in caplog.records if r.name == "botocore.auth"]


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_weak_sslmode_refused(dsql_local: DsqlLocal, mode: str) -> None:
    with pytest.raises(dsql.ConfigurationError, match="verify-full"):
        dsql.connect(dsql_local.url, sslmode=mode)
    with pytest.raises(dsql.ConfigurationError, match=f"sslmode='{mode}'"):
        dsql.connect(f"{dsql_local.url}&sslmode={mode}")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"region": "eu-west-1"}, "contradicts"),
        ({"token_duration": 604801}, "token_duration"),
        ({"token_duration": 0}, "token_duration"),
    ],
)
def test_bad_options_refused(
    dsql_local: DsqlLocal, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(dsql.ConfigurationError, match=needle):
        dsql.connect(dsql_local.url, **kwargs)


def test_malformed_cluster_id_refused(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    kwargs["host"] = kwargs["host"].replace(dsql_local.cluster_id, "notacluster")
    with pytest.raises(dsql.ConfigurationError, match="malformed cluster id"):
        dsql.connect(**kwargs)


def test_two_hosts_refused(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    kwargs["host"] = f"{kwargs['host']},{kwargs['host']}"
    with pytest.raises(dsql.ConfigurationError, match="one host"):
        dsql.connect(**kwargs)


def test_wrong_secret_rejected_readably(
    dsql_local: DsqlLocal, caplog: pytest.LogCaptureFixture
) -> None:
    session = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="not-the-secret-the-server-knows",
        region_name=dsql_local.region,
    )
    tokens: list[str] = []
    client = session.client("dsql")

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        tokens.append(client.generate_db_connect_admin_auth_token(host, region))
        return tokens[-1]

    caplog.set_level(logging.DEBUG)
    with pytest.raises(dsql.AuthenticationError) as info:
        dsql.connect(dsql_local.url, token_provider=provider)
    # also catchable the way psycopg users already catch connection failures
    assert isinstance(info.value, psycopg.OperationalError)
    message = str(info.value)
    assert "refused the IAM token" in message
    full = "".join(traceback.format_exception(info.value)) + caplog.text
    signature = tokens[0].rsplit("X-Amz-Signature=", 1)[1]
    assert signature not in full
    assert tokens[0] not in full

    # the same through the session= option
    with pytest.raises(dsql.AuthenticationError):
        dsql.connect(dsql_local.url, session=session)


def test_no_credentials_in_fresh_process(dsql_local: DsqlLocal) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO"))}
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    }
    script = textwrap.dedent(
        f"""
        import dsql_psycopg as dsql
        try:
            dsql.connect({dsql_local.url!r})
        except dsql.CredentialsError as ex:
            print("CredentialsError:", ex)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.startswith("CredentialsError: no AWS credentials"), out
    assert "AWS_PROFILE" in out.stdout
    assert "Traceback" not in out.stderr
