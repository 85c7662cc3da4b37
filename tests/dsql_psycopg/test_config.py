"""Unit tests of the configuration parser (no server needed)."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from dsql_psycopg import ConfigurationError
from dsql_psycopg._auth import make_token
from dsql_psycopg._config import DSQL_OPTIONS, parse, parse_endpoints
from dsql_psycopg._tls import apply_tls

CLUSTER = "abcdefghijklmnopqrstuvwx12"
HOST = f"{CLUSTER}.dsql.us-east-1.on.aws"


def test_url_form() -> None:
    params = parse(f"postgresql://app@{HOST}:5433/postgres?token_duration=60")
    assert (params.host, params.user, params.region) == (HOST, "app", "us-east-1")
    assert params.token_duration == 60
    assert params.libpq["port"] == "5433"
    assert "token_duration" not in params.libpq


def test_postgres_scheme_and_dsql_keys_removed_from_query() -> None:
    params = parse(
        f"postgres://{HOST}/postgres?region=us-east-1&profile=dev"
        "&hostaddr=127.0.0.1&application_name=x"
    )
    assert params.profile == "dev"
    assert params.libpq["hostaddr"] == "127.0.0.1"
    assert params.libpq["application_name"] == "x"
    assert not DSQL_OPTIONS & set(params.libpq)


def test_conninfo_form_with_quotes() -> None:
    params = parse(
        f"host={HOST} user=app region=us-east-1 application_name='it\\'s mine'"
    )
    assert params.user == "app"
    assert params.libpq["application_name"] == "it's mine"
    assert "region" not in params.libpq


def test_defaults() -> None:
    params = parse(host=HOST)
    assert params.user == "admin"
    assert params.libpq["dbname"] == "postgres"
    assert "port" not in params.libpq  # libpq's default: 5432, or PGPORT
    assert params.token_duration == 900


def test_kwargs_override_conninfo() -> None:
    params = parse(f"host={HOST} user=app", user="admin", dbname="postgres")
    assert params.user == "admin"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cluster_id": CLUSTER, "region": "eu-west-1"},
        {"host": CLUSTER, "region": "eu-west-1"},
    ],
)
def test_cluster_id_forms(kwargs: dict[str, str]) -> None:
    params = parse(**kwargs)
    assert params.host == f"{CLUSTER}.dsql.eu-west-1.on.aws"
    assert params.region == "eu-west-1"


def test_region_from_host_variants() -> None:
    assert parse(host=f"{CLUSTER}.dsql-fips.us-gov-west-1.on.aws").region == (
        "us-gov-west-1"
    )


def test_other_hosts_are_not_rewritten() -> None:
    for host in ("localhost", "127.0.0.1", "proxy.example.com", "abc"):
        params = parse(host=host, region="us-east-1")
        assert params.host == host
        assert params.libpq["host"] == host


def test_hostaddr_passes_through() -> None:
    assert parse(host=HOST, hostaddr="127.0.0.1").libpq["hostaddr"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        ((f"host={HOST}",), {"region": "eu-west-1"}, "contradicts"),
        ((), {"host": "short.dsql.us-east-1.on.aws"}, "malformed cluster id"),
        ((), {"host": "ABCDEFGHIJKLMNOPQRSTUVWXYZ.dsql.us-east-1.on.aws"}, "malformed"),
        ((), {"cluster_id": "nope", "region": "us-east-1"}, "malformed cluster_id"),
        ((), {"cluster_id": CLUSTER}, "needs a region"),
        ((f"host={HOST},{HOST}",), {}, "this takes one endpoint"),
        ((f"postgresql://{HOST},{HOST}/postgres",), {}, "this takes one endpoint"),
        (
            (),
            {"host": HOST, "hostaddr": "127.0.0.1,127.0.0.2"},
            "one hostaddr per host",
        ),
        ((), {"host": HOST, "token_duration": 0}, "between 1 and 604800"),
        ((), {"host": HOST, "token_duration": 604801}, "between 1 and 604800"),
        ((f"host={HOST} token_duration=abc",), {}, "whole number"),
        ((), {"host": HOST, "password": "x"}, "do not set a password"),
        ((), {}, "no host given"),
        ((), {"host": "/tmp"}, "unix socket"),
        ((), {"host": HOST, "nonsense_option": "1"}, "nonsense_option"),
        (("host",), {}, "key=value"),
        ((), {"host": "localhost", "region": "mars"}, "AWS region"),
        ((), {"host": HOST, "session": object()}, "boto3.Session"),
        ((), {"host": HOST, "token_provider": "abc"}, "callable"),
        (("postgresql://%80",), {}, "UTF-8"),
    ],
)
def test_bad_input_is_refused(
    args: tuple[str, ...], kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        parse(*args, **kwargs)


def test_configuration_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="token_duration"):
        parse(host=HOST, token_duration=-1)


# Values libpq can carry: printable text without NUL.
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
)
users = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
clusters = st.from_regex(r"[a-z0-9]{26}", fullmatch=True)
regions = st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"])


@given(clusters, regions, users, values, st.integers(1, 604800))
@settings(max_examples=200, deadline=None)
def test_url_round_trip(
    cluster: str, region: str, user: str, app: str, duration: int
) -> None:
    host = f"{cluster}.dsql.{region}.on.aws"
    url = (
        f"postgresql://{quote(user)}@{host}/postgres"
        f"?application_name={quote(app, safe='')}&token_duration={duration}"
    )
    params = parse(url)
    assert (params.host, params.user, params.region) == (host, user, region)
    assert params.libpq["application_name"] == app
    assert params.token_duration == duration


@given(clusters, regions, users, values)
@settings(max_examples=200, deadline=None)
def test_conninfo_round_trip(cluster: str, region: str, user: str, app: str) -> None:
    host = f"{cluster}.dsql.{region}.on.aws"
    conninfo = make_conninfo(host=host, user=user, application_name=app)
    conninfo += f" region={region}"
    params = parse(conninfo)
    assert (params.host, params.user, params.region) == (host, user, region)
    assert params.libpq["application_name"] == app


option_names = st.sampled_from(
    [*DSQL_OPTIONS, "host", "hostaddr", "port", "user", "dbname", "sslmode", "bogus"]
)
option_values = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats())


@given(st.text(max_size=80), st.dictionaries(option_names, option_values, max_size=5))
@settings(max_examples=500, deadline=None)
def test_parser_raises_only_configuration_error(
    conninfo: str, kwargs: dict[str, object]
) -> None:
    with contextlib.suppress(ConfigurationError):
        parse(conninfo, **kwargs)


@given(st.text(max_size=80).map(lambda s: "postgresql://" + s))
@settings(max_examples=300, deadline=None)
def test_url_parser_raises_only_configuration_error(url: str) -> None:
    with contextlib.suppress(ConfigurationError):
        parse(url)


def test_libpq_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", HOST)
    monkeypatch.setenv("PGUSER", "app")
    monkeypatch.setenv("PGDATABASE", "postgres")
    params = parse()
    assert (params.host, params.user, params.region) == (HOST, "app", "us-east-1")
    # what is given wins over the environment
    assert parse(user="admin").user == "admin"
    monkeypatch.setenv("PGHOST", "two,hosts")
    with pytest.raises(ConfigurationError, match="one host"):
        parse()


def test_libpq_environment_lists_split_per_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``python -m dsql_local --peer-region`` exports: a list per variable."""
    other = HOST.replace("us-east-1", "us-east-2")
    monkeypatch.setenv("PGHOST", f"{HOST},{other}")
    monkeypatch.setenv("PGPORT", "5001,5002")
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.1,127.0.0.2")
    endpoints = parse_endpoints().each
    assert [(p.host, p.libpq["port"], p.libpq["hostaddr"]) for p in endpoints] == [
        (HOST, "5001", "127.0.0.1"),
        (other, "5002", "127.0.0.2"),
    ]
    # What is given wins.
    (given,) = parse_endpoints(host=HOST, port=6000, hostaddr="10.0.0.1").each
    assert (given.libpq["port"], given.libpq["hostaddr"]) == (6000, "10.0.0.1")


def test_ca_file_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", "/some/ca.pem")
    libpq: dict[str, object] = {}
    apply_tls(libpq)
    assert libpq["sslrootcert"] == "/some/ca.pem"
    libpq = {"sslrootcert": "/mine.pem"}
    apply_tls(libpq)
    assert libpq["sslrootcert"] == "/mine.pem"


def test_token_provider_region(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        seen.append(region)
        return "token"

    params = parse(host="localhost", token_provider=provider)
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        make_token(params)
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert make_token(params) == "token"
    assert make_token(parse(host=HOST, token_provider=provider)) == "token"
    assert seen == ["eu-central-1", "us-east-1"]
