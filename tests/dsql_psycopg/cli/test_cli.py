"""The dsql-psycopg command line against DSQL Local: token and check."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import botocore
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import dsql_psycopg
from dsql_local import DsqlLocal
from dsql_psycopg import _auth as auth
from dsql_psycopg.__main__ import main
from dsql_psycopg._tls import AMAZON_ROOTS

STEPS = [
    "configuration",
    "dns",
    "tcp",
    "tls",
    "credentials",
    "token",
    "authentication",
    "query",
]


def cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dsql_psycopg`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "dsql_psycopg", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy() if env is None else env,
        timeout=60,
        check=False,
    )


def check_json(*args: str) -> dict[str, Any]:
    """Run ``check --json`` in this process (as the console script would)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["check", "--json", *args])
    report: dict[str, Any] = json.loads(out.getvalue())
    assert status == (0 if report["ok"] else 1)
    return report


def target(local: DsqlLocal, **overrides: Any) -> str:
    """A key=value target for `local`, with some settings replaced."""
    return make_conninfo(**{**local.connect_kwargs(), **overrides})


def failure(report: dict[str, Any]) -> dict[str, Any]:
    """The failed step; every step before it must have passed."""
    assert not report["ok"]
    steps = report["steps"]
    assert [s["step"] for s in steps] == STEPS[: len(steps)]
    assert all(s["ok"] for s in steps[:-1])
    assert report["failed_step"] == steps[-1]["step"]
    last: dict[str, Any] = steps[-1]
    assert not last["ok"]
    assert last["hint"]
    return last


def query_params(token: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(token.partition("?")[2]).items()}


def plain_user(local: DsqlLocal, user: str, token: str) -> str:
    with psycopg.connect(
        **local.connect_kwargs(user=user), password=token, sslmode="verify-full"
    ) as conn:
        row = conn.execute("select current_user").fetchone()
    assert row is not None
    return str(row[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- token --------------------------------------------------------------------


def test_token_accepted_by_plain_psycopg(dsql_local: DsqlLocal) -> None:
    result = cli("token", dsql_local.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.startswith(f"{dsql_local.host}/?")
    assert query_params(token)["Action"] == "DbConnectAdmin"
    assert plain_user(dsql_local, "admin", token) == "admin"


def test_token_for_a_role_is_dbconnect(dsql_local: DsqlLocal) -> None:
    dsql_local.create_role("app")
    result = cli("token", dsql_local.url, "--user", "app")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert query_params(token)["Action"] == "DbConnect"
    assert plain_user(dsql_local, "app", token) == "app"
    # The admin token does not let app in: the action really differs.
    admin_token = cli("token", dsql_local.url).stdout.strip()
    with pytest.raises(psycopg.OperationalError, match="DbConnect"):
        plain_user(dsql_local, "app", admin_token)


def test_token_targets_and_duration(dsql_local: DsqlLocal) -> None:
    host_only = cli(
        "token", dsql_local.host, "--user", "app", "--duration", "60"
    ).stdout.strip()
    params = query_params(host_only)
    assert host_only.startswith(f"{dsql_local.host}/?")
    assert params["X-Amz-Expires"] == "60"
    assert params["Action"] == "DbConnect"
    by_id = cli("token", dsql_local.cluster_id, "--region", dsql_local.region)
    assert by_id.stdout.startswith(f"{dsql_local.host}/?")
    assert (
        "/us-east-1/dsql/aws4_request"
        in query_params(by_id.stdout.strip())["X-Amz-Credential"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "host=localhost"], "no AWS region"),
        (["token", "example.dsql.us-east-1.on.aws"], "malformed cluster id"),
        (
            ["token", "localhost", "--region", "us-east-1", "--duration", "0"],
            "token_duration",
        ),
        (["token", "host=a password=b region=us-east-1"], "do not set a password"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("dsql-psycopg: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_only_psql_takes_arguments_after_double_dash() -> None:
    result = cli("token", "localhost", "--region", "us-east-1", "--", "-c", "x")
    assert result.returncode == 2
    assert "unexpected arguments after --: -c x" in result.stderr
    assert result.stdout == ""


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("dsql-psycopg")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("token", "check", "psql"):
        assert command in result.stdout
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip()


# -- check: healthy -----------------------------------------------------------


def test_check_passes_on_healthy_dsql_local(dsql_local: DsqlLocal) -> None:
    report = check_json(dsql_local.url)
    assert report["ok"], report
    assert report["failed_step"] is None
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    assert all(s["ok"] and s["ms"] >= 0 and s["hint"] is None for s in steps.values())
    config = steps["configuration"]["info"]
    assert config["host"] == dsql_local.host
    assert config["region"] == dsql_local.region
    assert config["sslmode"] == "verify-full"
    assert config["sslrootcert"] == dsql_local.ca_file
    assert (config["trust"], config["trusted_roots"]) == ("sslrootcert", 1)
    assert steps["tls"]["info"]["ca_file"] == dsql_local.ca_file
    assert steps["credentials"]["info"]["provider"] == "env"
    assert steps["token"]["info"]["action"] == "DbConnectAdmin"
    assert steps["token"]["info"]["host"] == dsql_local.host
    assert steps["query"]["info"]["current_user"] == "admin"


def test_check_text_output_one_line_per_step(dsql_local: DsqlLocal) -> None:
    dsql_local.create_role("app")
    result = cli("check", dsql_local.url, "--user", "app")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["ok", s] for s in STEPS]
    assert all(" ms " in line for line in lines[:-1])
    assert "DbConnect token" in lines[STEPS.index("token")]
    assert "current_user=app" in lines[STEPS.index("query")]
    assert lines[-1] == "all 8 steps passed"


def test_check_sslnegotiation_postgres(dsql_local: DsqlLocal) -> None:
    report = check_json(target(dsql_local, sslnegotiation="postgres"))
    assert report["ok"], report
    assert report["steps"][3]["info"]["negotiation"] == "postgres"


def test_check_with_a_connect_timeout_in_the_target(dsql_local: DsqlLocal) -> None:
    report = check_json(target(dsql_local, connect_timeout=7))
    assert report["ok"], report
    assert report["steps"][0]["info"]["connect_timeout"] == "7"


def test_check_goes_through_each_endpoint_of_a_multi_region_cluster(
    dsql_local_multi_region: DsqlLocal,
) -> None:
    local = dsql_local_multi_region
    home, peer = (local.endpoint(region) for region in local.regions)
    report = check_json(local.multi_region_url)
    assert report["ok"], report
    assert [e["host"] for e in report["endpoints"]] == [home.host, peer.host]
    for endpoint, expected in zip(report["endpoints"], (home, peer), strict=True):
        steps = {s["step"]: s for s in endpoint["steps"]}
        assert list(steps) == STEPS
        assert steps["configuration"]["info"]["region"] == expected.region
        assert steps["configuration"]["info"]["port"] == str(expected.port)
        assert steps["token"]["info"]["host"] == expected.host

    local.fail_region(home.region)
    report = check_json(local.multi_region_url)
    assert not report["ok"]
    failed, served = report["endpoints"]
    assert (failed["ok"], failed["failed_step"]) == (False, "tcp")
    assert served["ok"], served
    text = cli("check", local.multi_region_url)
    assert text.returncode == 1
    assert f"endpoint 1 of 2: {home.host}" in text.stdout
    assert f"endpoint 2 of 2: {peer.host}" in text.stdout
    assert text.stdout.splitlines()[-1] == f"1 of 2 endpoints failed: {home.host}"


def test_token_takes_one_endpoint(dsql_local_multi_region: DsqlLocal) -> None:
    result = cli("token", dsql_local_multi_region.multi_region_url)
    assert result.returncode != 0
    assert "this takes one endpoint" in result.stderr


# -- no TARGET: libpq's PG* variables ------------------------------------------


def exports(local: DsqlLocal) -> dict[str, str]:
    """The variables ``python -m dsql_local`` tells its user to export."""
    from dsql_local.__main__ import _exports  # noqa: PLC0415

    env = {}
    for line in _exports(local):
        name, _, value = line.removeprefix("export ").partition("=")
        (env[name],) = shlex.split(value)
    return env


def test_check_without_target_runs_from_dsql_local_exports(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in exports(dsql_local).items():
        monkeypatch.setenv(name, value)
    report = check_json()
    assert report["ok"], report
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    assert steps["configuration"]["info"]["host"] == dsql_local.host
    assert steps["configuration"]["info"]["port"] == str(dsql_local.port)
    assert steps["configuration"]["info"]["sslrootcert"] == dsql_local.ca_file
    assert steps["dns"]["detail"].startswith("not looked up: hostaddr=127.0.0.1 given")


def test_check_honours_pghostaddr_with_a_target(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check "$PGHOST"`` after the exports: the DNS step uses PGHOSTADDR."""
    for name, value in exports(dsql_local).items():
        monkeypatch.setenv(name, value)
    report = check_json(dsql_local.host)
    assert report["ok"], report
    assert report["steps"][1]["info"]["hostaddr"] == "127.0.0.1"


def test_check_without_target_goes_through_each_exported_endpoint(
    dsql_local_multi_region: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = dsql_local_multi_region
    for name, value in exports(local).items():
        monkeypatch.setenv(name, value)
    report = check_json()
    assert report["ok"], report
    ports = [e["steps"][0]["info"]["port"] for e in report["endpoints"]]
    assert ports == [str(local.endpoint(r).port) for r in local.regions]


def test_token_without_target_is_for_pghost(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in exports(dsql_local).items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["token"]) == 0
    token = out.getvalue().strip()
    assert token.startswith(f"{dsql_local.host}/?")
    # libpq takes the rest from the same variables.
    with psycopg.connect(password=token) as conn:
        assert conn.execute("select current_user").fetchone() == ("admin",)


def test_no_target_and_no_pghost_says_what_to_do() -> None:
    result = cli("token")
    assert result.returncode == 1
    assert result.stderr == (
        "dsql-psycopg: error: no TARGET given and PGHOST is not set: pass a"
        " TARGET, or export the PG* variables (PGHOST, PGPORT, PGUSER...;"
        " python -m dsql_local prints them for DSQL Local)\n"
    )


# -- check: failures at the right step, with the right hint --------------------


def test_check_wrong_ca_file(dsql_local: DsqlLocal) -> None:
    # botocore's bundle holds public roots, not DSQL Local's private CA.
    other_ca = str(Path(botocore.__file__).with_name("cacert.pem"))
    step = failure(check_json(target(dsql_local, sslrootcert=other_ca)))
    assert step["step"] == "tls"
    assert "certificate verif" in step["detail"]
    assert other_ca in step["hint"]
    assert "sslrootcert" in step["hint"]
    assert "ca_file" in step["hint"]


def test_check_reports_amazon_trust_for_dsql_names(dsql_local: DsqlLocal) -> None:
    kwargs = dsql_local.connect_kwargs()
    del kwargs["sslrootcert"]
    report = check_json(make_conninfo(**kwargs))
    config = report["steps"][0]["info"]
    assert config["sslrootcert"] == AMAZON_ROOTS
    assert (config["trust"], config["trusted_roots"]) == ("Amazon roots", 5)
    # DSQL Local's certificate is not Amazon's: refused at the TLS step
    step = failure(report)
    assert step["step"] == "tls"
    assert "proxy" in step["hint"]
    text = cli("check", make_conninfo(**kwargs))
    assert "(trust: Amazon's roots, for a DSQL endpoint name, 5 roots)" in text.stdout


def test_check_missing_ca_file(dsql_local: DsqlLocal, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    step = failure(check_json(target(dsql_local, sslrootcert=missing)))
    assert step["step"] == "tls"
    assert "does not exist" in step["detail"]


def test_check_wrong_port(dsql_local: DsqlLocal) -> None:
    port = free_port()
    step = failure(check_json(target(dsql_local, port=port)))
    assert step["step"] == "tcp"
    assert str(port) in step["detail"]
    assert "5432" in step["hint"]
    assert "port=" in step["hint"]


def test_check_ip_address_as_host(dsql_local: DsqlLocal) -> None:
    ip_target = make_conninfo(
        host="127.0.0.1",
        port=dsql_local.port,
        sslrootcert=dsql_local.ca_file,
    )
    step = failure(check_json(ip_target, "--region", dsql_local.region))
    assert step["step"] == "tls"
    assert "IP address" in step["detail"]
    assert "endpoint name" in step["hint"]
    assert "hostaddr=127.0.0.1" in step["hint"]


def test_check_certificate_name_mismatch(dsql_local: DsqlLocal) -> None:
    # The endpoint's certificate covers its own region only.
    other_host = f"{dsql_local.cluster_id}.dsql.eu-west-1.on.aws"
    step = failure(check_json(target(dsql_local, host=other_host)))
    assert step["step"] == "tls"
    assert "mismatch" in step["detail"].lower()
    assert other_host in step["hint"]
    assert "endpoint name" in step["hint"]


def test_check_sni_turned_off(dsql_local: DsqlLocal) -> None:
    step = failure(check_json(target(dsql_local, sslsni=0)))
    assert step["step"] == "tls"
    assert "remove sslsni=0" in step["hint"]


def test_check_no_credentials(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    step = failure(check_json(dsql_local.url))
    assert step["step"] == "credentials"
    assert step["detail"] == "no AWS credentials found"
    assert "AWS_ACCESS_KEY_ID" in step["hint"]
    assert "AWS_PROFILE" in step["hint"]


def test_check_no_credentials_fresh_process(dsql_local: DsqlLocal) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    result = cli("check", dsql_local.url, env=env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-3].split()[:2] == ["FAIL", "credentials"]
    assert "AWS_ACCESS_KEY_ID" in lines[-2]
    assert lines[-1] == "check failed at step credentials"


def test_check_missing_profile(dsql_local: DsqlLocal) -> None:
    step = failure(check_json(dsql_local.url, "--profile", "nosuchprofile"))
    assert step["step"] == "credentials"
    assert "nosuchprofile" in step["detail"]
    assert "--profile" in step["hint"]


def test_check_token_rejected(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-dsql-local-knows")
    step = failure(check_json(dsql_local.url))
    assert step["step"] == "authentication"
    assert "signature" in step["detail"]
    assert "AWS_SECRET_ACCESS_KEY" in step["hint"]


def test_check_expired_token() -> None:
    # No clock skew allowed, a 1 s token, and 0.5 s per round trip: the token
    # has expired by the time the server reads it.
    with DsqlLocal(strict=False, clock_skew=0, latency=0.5) as local:
        step = failure(check_json(local.url, "--duration", "1"))
    assert step["step"] == "authentication"
    assert "the token has expired" in step["detail"]
    assert "clock" in step["hint"]


def test_check_connection_rate_exceeded() -> None:
    local = DsqlLocal(strict=False, connection_rate=0.01, connection_burst=1)
    with local, dsql_psycopg.connect(local.url):  # spends the only admission
        step = failure(check_json(local.url))
    assert step["step"] == "authentication"
    assert "rate exceeded" in step["detail"]
    assert "100 new per second" in step["hint"]


def test_check_role_does_not_exist(dsql_local: DsqlLocal) -> None:
    step = failure(check_json(dsql_local.url, "--user", "ghost"))
    assert step["step"] == "authentication"
    assert 'role "ghost" does not exist' in step["detail"]
    assert "CREATE ROLE ghost" in step["hint"]
    assert "AWS IAM GRANT ghost" in step["hint"]


def test_check_unresolvable_host() -> None:
    step = failure(check_json("no-such-host.invalid", "--region", "us-east-1"))
    assert step["step"] == "dns"
    assert "no-such-host.invalid" in step["detail"]


def test_check_refused_configuration(dsql_local: DsqlLocal) -> None:
    result = cli("check", target(dsql_local, sslmode="require"))
    assert result.returncode == 1
    first, hint, last = result.stdout.splitlines()
    assert first.split()[:2] == ["FAIL", "configuration"]
    assert "hint:" in hint
    assert "verify-full" in hint
    assert last == "check failed at step configuration"


# -- no token text in output or logs ------------------------------------------


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every token signed in this process (signing itself is real)."""
    made: list[str] = []
    real = auth.make_token

    def recording(params: Any) -> str:
        token = real(params)
        made.append(token)
        return token

    monkeypatch.setattr(auth, "make_token", recording)
    return made


def assert_no_token(texts: list[str], made: list[str]) -> None:
    assert made
    for token in made:
        signature = query_params(token)["X-Amz-Signature"]
        assert len(signature) == 64
        for text in texts:
            assert token not in text
            assert signature not in text


@pytest.mark.parametrize("user", ["admin", "ghost"])
@pytest.mark.parametrize("as_json", [False, True])
def test_check_never_shows_the_token(
    dsql_local: DsqlLocal,
    tokens: list[str],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    user: str,
    as_json: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dsql_psycopg")
    caplog.set_level(logging.DEBUG, logger="psycopg")
    argv = ["check", dsql_local.url, "--user", user] + (["--json"] if as_json else [])
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == (0 if user == "admin" else 1)
    # Both the token step and the authentication step signed one.
    assert len(tokens) == 2
    assert caplog.records
    assert_no_token([out, err, *(r.getMessage() for r in caplog.records)], tokens)


def test_verbose_logs_never_show_the_token(
    dsql_local: DsqlLocal, tmp_path: Path
) -> None:
    # A fresh process with --verbose, recording the tokens it signs.
    record = tmp_path / "tokens"
    program = (
        "import sys\n"
        "from dsql_psycopg import _auth as auth\n"
        "from dsql_psycopg.__main__ import main\n"
        "real = auth.make_token\n"
        "def recording(params):\n"
        "    token = real(params)\n"
        f"    with open({str(record)!r}, 'a') as f:\n"
        "        f.write(token + '\\n')\n"
        "    return token\n"
        "auth.make_token = recording\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "-v", "check", dsql_local.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "dsql_psycopg: connecting to" in result.stderr
    made = record.read_text().split()
    assert len(made) == 2
    assert_no_token([result.stdout, result.stderr], made)
