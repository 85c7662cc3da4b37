"""AsyncDsqlConnection against DSQL Local: test_connection.py's twin, awaited.

Real TLS, real tokens, real psycopg; the event loop is anyio's (asyncio).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
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

pytestmark = pytest.mark.anyio

connect = dsql.AsyncDsqlConnection.connect


def libpq_settings(conn: psycopg.AsyncConnection[Any]) -> dict[str, str | None]:
    return {
        opt.keyword.decode(): opt.val.decode() if opt.val is not None else None
        for opt in conn.pgconn.info
    }


async def current_user(conn: psycopg.AsyncConnection[Any]) -> str:
    row = await (await conn.execute("select current_user")).fetchone()
    assert row is not None
    return str(row[0])


async def test_connect_url(dsql_local: DsqlLocal) -> None:
    async with await connect(dsql_local.url) as conn:
        assert await current_user(conn) == "admin"
        assert isinstance(conn, dsql.AsyncDsqlConnection)
        assert isinstance(conn, psycopg.AsyncConnection)
        assert conn.endpoint == dsql_local.host
        assert conn.region == dsql_local.region


async def test_connect_key_value(dsql_local: DsqlLocal) -> None:
    conninfo = make_conninfo(**dsql_local.connect_kwargs())
    async with await connect(conninfo) as conn:
        assert await current_user(conn) == "admin"


async def test_connect_kwargs(dsql_local: DsqlLocal) -> None:
    async with await connect(**dsql_local.connect_kwargs()) as conn:
        assert await current_user(conn) == "admin"


async def test_connect_cluster_id_and_region(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    del kwargs["host"]
    async with await connect(
        cluster_id=dsql_local.cluster_id, region=dsql_local.region, **kwargs
    ) as conn:
        assert await current_user(conn) == "admin"


async def test_defaults(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    del kwargs["user"], kwargs["dbname"]
    async with await connect(**kwargs) as conn:
        assert await current_user(conn) == "admin"
        assert conn.info.dbname == "postgres"


async def test_custom_role_token_is_dbconnect(dsql_local: DsqlLocal) -> None:
    tokens: list[str] = []
    client = boto3.client("dsql", region_name=dsql_local.region)
    threads: list[threading.Thread] = []

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        threads.append(threading.current_thread())
        token = client.generate_db_connect_auth_token(host, region, expires_in)
        tokens.append(token)
        return token

    dsql_local.create_role("app")
    async with await connect(
        **dsql_local.connect_kwargs(user="app"), token_provider=provider
    ) as conn:
        assert await current_user(conn) == "app"
    assert len(tokens) == 1
    assert "Action=DbConnect&" in tokens[0]
    # A token provider may block (it is the user's code): not on the loop.
    assert threads[0] is not threading.main_thread()


async def test_verify_full_and_direct_negotiation_by_default(
    dsql_local: DsqlLocal,
) -> None:
    async with await connect(dsql_local.url) as conn:
        settings = libpq_settings(conn)
        assert conn.pgconn.ssl_in_use
        assert settings["sslmode"] == "verify-full"
        if DIRECT_NEGOTIATION:
            assert settings["sslnegotiation"] == "direct"


async def test_psycopg_keywords_still_work(dsql_local: DsqlLocal) -> None:
    async with await connect(
        dsql_local.url, autocommit=True, row_factory=dict_row, prepare_threshold=None
    ) as conn:
        assert conn.autocommit
        assert conn.prepare_threshold is None
        cursor = await conn.execute("select 1 as one")
        assert await cursor.fetchone() == {"one": 1}


async def test_application_name(dsql_local: DsqlLocal) -> None:
    async with await connect(dsql_local.url) as conn:
        assert conn.info.parameter_status("application_name") == (
            f"dsql-psycopg/{dsql.__version__}"
        )


async def test_token_never_visible(
    dsql_local: DsqlLocal, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[str] = []
    client = boto3.client("dsql", region_name=dsql_local.region)

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        tokens.append(client.generate_db_connect_admin_auth_token(host, region))
        return tokens[-1]

    caplog.set_level(logging.DEBUG)
    async with await connect(dsql_local.url, token_provider=provider) as conn:
        seen = [repr(conn), str(conn.info.dsn), repr(conn.info.get_parameters())]
    signature = tokens[0].rsplit("X-Amz-Signature=", 1)[1]
    for text in [*seen, caplog.text]:
        assert signature not in text
    caplog.clear()
    async with await connect(dsql_local.url):
        pass
    assert "connecting to" in caplog.text
    assert "X-Amz-Signature" not in caplog.text


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca"])
async def test_weak_sslmode_refused(dsql_local: DsqlLocal, mode: str) -> None:
    with pytest.raises(dsql.ConfigurationError, match="verify-full"):
        await connect(dsql_local.url, sslmode=mode)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"region": "eu-west-1"}, "contradicts"),
        ({"token_duration": 604801}, "token_duration"),
        ({"connect_retry": -1}, "connect_retry"),
        ({"endpoint_cooldown": "soon"}, "endpoint_cooldown"),
    ],
)
async def test_bad_options_refused(
    dsql_local: DsqlLocal, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(dsql.ConfigurationError, match=needle):
        await connect(dsql_local.url, **kwargs)


async def test_profile_option_is_read(dsql_local: DsqlLocal) -> None:
    # A profile that does not exist: refused with our error, not botocore's.
    with pytest.raises(dsql.CredentialsError, match="no-such-profile"):
        await connect(dsql_local.url, profile="no-such-profile")


async def test_session_option_signs(dsql_local: DsqlLocal) -> None:
    session = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=dsql_local.region,
    )
    async with await connect(dsql_local.url, session=session, token_duration=60) as c:
        assert await current_user(c) == "admin"


async def test_wrong_secret_rejected_readably(
    dsql_local: DsqlLocal, caplog: pytest.LogCaptureFixture
) -> None:
    session = boto3.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="not-the-secret-the-server-knows",
        region_name=dsql_local.region,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(dsql.AuthenticationError) as info:
        await connect(dsql_local.url, session=session)
    assert isinstance(info.value, psycopg.OperationalError)
    assert "refused the IAM token" in str(info.value)
    full = "".join(traceback.format_exception(info.value)) + caplog.text
    assert "X-Amz-Signature=" not in full


async def test_connects_run_side_by_side(dsql_local: DsqlLocal) -> None:
    # Eight connects at once on one loop: each its own token and session.
    conns = await asyncio.gather(*(connect(dsql_local.url) for _ in range(8)))
    try:
        pids = {c.info.backend_pid for c in conns}
        assert len(pids) == 8
    finally:
        for conn in conns:
            await conn.close()


def test_no_credentials_in_fresh_process(dsql_local: DsqlLocal) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO"))}
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    }
    script = textwrap.dedent(
        f"""
        import asyncio
        import dsql_psycopg as dsql

        async def main():
            try:
                await dsql.AsyncDsqlConnection.connect({dsql_local.url!r})
            except dsql.CredentialsError as ex:
                print("CredentialsError:", ex)

        asyncio.run(main())
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
    assert "Traceback" not in out.stderr
