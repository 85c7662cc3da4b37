"""The pytest plugin, in a pytest run of its own."""

from __future__ import annotations

import pytest

_TESTS = """
import os

import boto3
import psycopg

SEEN = []


def connect(local, schema):
    client = boto3.client("dsql", region_name=local.region)
    token = client.generate_db_connect_admin_auth_token(local.host, local.region)
    return psycopg.connect(
        **local.connect_kwargs(), password=token, sslmode="verify-full",
        options=f"-c search_path={schema}", autocommit=True,
    )


def test_first(dsql_local, dsql_schema):
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert dsql_local.own_process is {own_process}
    with connect(dsql_local, dsql_schema) as conn:
        assert conn.execute("select count(*) from pg_tables where schemaname = %s",
                            [dsql_schema]).fetchone() == (0,)
        conn.execute("create table t (id int primary key)")
        conn.execute("insert into t values (1)")
    SEEN.append(dsql_schema)


def test_second(dsql_local, dsql_schema):
    assert dsql_schema != SEEN[0]
    with connect(dsql_local, dsql_schema) as conn:
        gone = conn.execute("select count(*) from pg_namespace where nspname = %s",
                            [SEEN[0]]).fetchone()
        assert gone == (0,)
        conn.execute("create table t (id int primary key)")


def test_strict_by_default(dsql_local, dsql_schema):
    with connect(dsql_local, dsql_schema) as conn:
        conn.execute("create table tr (id int primary key)")
        try:
            conn.execute("truncate tr")
        except psycopg.errors.FeatureNotSupported:
            return
    assert {strict_off}, "strict mode should have refused TRUNCATE"
"""

_CONFTEST = """
import json, os

def pytest_unconfigure(config):
    with open("env-after.json", "w") as f:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("AWS_")}, f)
"""


@pytest.mark.parametrize(
    ("strict", "own_process"), [(True, False), (False, False), (True, True)]
)
def test_fixtures_in_a_fresh_session(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    strict: bool,
    own_process: bool,
) -> None:
    # A user's machine without AWS credentials: the fixture brings fake ones
    # for the session and takes them away afterwards.
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    pytester.makepyfile(
        test_user=_TESTS.replace("{strict_off}", str(not strict)).replace(
            "{own_process}", str(own_process)
        )
    )
    pytester.makeconftest(_CONFTEST)
    args = ["-p", "no:cacheprovider", "-p", "no:randomly"]
    if not strict:
        args.append("--dsql-local-no-strict")
    if own_process:
        args.append("--dsql-local-own-process")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=3)
    after = (pytester.path / "env-after.json").read_text()
    assert "AWS_ACCESS_KEY_ID" not in after
    assert "AWS_EC2_METADATA_DISABLED" not in after


_LEAKY_TEST = """
import boto3
import psycopg
import pytest


@pytest.fixture
def conn(dsql_local):
    client = boto3.client("dsql", region_name=dsql_local.region)
    host, region = dsql_local.host, dsql_local.region
    token = client.generate_db_connect_admin_auth_token(host, region)
    with psycopg.connect(
        **dsql_local.connect_kwargs(), password=token, sslmode="verify-full"
    ) as conn:
        yield conn


def test_leaves_a_transaction_open(conn, dsql_schema):
    # `conn` is set up first, so it is torn down after the schema is dropped,
    # while its transaction still holds a lock on the table.
    conn.execute(f"create table {dsql_schema}.t (id int primary key)")
    conn.execute(f"insert into {dsql_schema}.t values (1)")
"""


def test_schema_in_use_at_teardown_is_left_in_place(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_leaky=_LEAKY_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--dsql-local-no-strict"
    )
    result.assert_outcomes(passed=1)


_MULTI_REGION_TESTS = """
import boto3
import psycopg
import pytest

import dsql_psycopg


def connect(endpoint):
    client = boto3.client("dsql", region_name=endpoint.region)
    token = client.generate_db_connect_admin_auth_token(endpoint.host, endpoint.region)
    return psycopg.connect(
        **endpoint.connect_kwargs(), password=token, sslmode="verify-full",
        autocommit=True,
    )


def test_fails_a_region_and_arms_faults(dsql_local_multi_region):
    local = dsql_local_multi_region
    assert local.regions == ("us-east-1", "eu-central-1")
    east, central = (local.endpoint(region) for region in local.regions)
    with connect(east) as conn:
        conn.execute("create table t (id int primary key)")
    with connect(central) as conn:
        conn.execute("insert into t values (1)")
    local.fail_region("us-east-1")
    # The client records the failure: us-east-1 cools down for 30 s.
    with dsql_psycopg.connect(**local.multi_region_kwargs()) as conn:
        assert conn.region == "eu-central-1"
    local.refuse_connections("waking_up", count=5, region="eu-central-1")
    local.inject_conflicts(5, region="eu-central-1")
    local.latency = 0.01


def test_starts_with_both_regions_serving(dsql_local_multi_region):
    local = dsql_local_multi_region
    assert local.latency == 0.0
    for region in local.regions:
        with connect(local.endpoint(region)) as conn:
            conn.autocommit = False
            assert conn.execute("select id from t").fetchall() == [(1,)]
            conn.commit()  # no conflict left armed
    # ... and forgot it: the first endpoint is tried first again.
    with dsql_psycopg.connect(**local.multi_region_kwargs()) as conn:
        assert conn.region == "us-east-1"
"""


def test_multi_region_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_multi=_MULTI_REGION_TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--dsql-local-peer-region",
        "eu-central-1",
    )
    result.assert_outcomes(passed=2)
