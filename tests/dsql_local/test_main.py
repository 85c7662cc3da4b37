"""python -m dsql_local: prints where to connect, runs until interrupted."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import psycopg
import pytest

_CONNECT_FROM_ENVIRONMENT = """
import psycopg
with psycopg.connect("") as conn:
    user = conn.execute("select current_user").fetchone()[0]
    print(user, conn.info.get_parameters()["sslmode"])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsql_local",
            "--region",
            "eu-west-1",
            "--no-strict",
            "--max-connection-age",
            "600",
            "--schema-conflicts",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        exports = dict(
            line[len("export ") :].strip().split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        url = next(line[5:].strip() for line in lines if line.startswith("URL: "))
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in output
        assert exports["PGSSLMODE"] == "verify-full"
        assert ".dsql.eu-west-1.on.aws" in exports["PGHOST"]
        ca_file = Path(exports["PGSSLROOTCERT"])
        assert ca_file.is_file()

        token = boto3.client(
            "dsql", region_name="eu-west-1"
        ).generate_db_connect_admin_auth_token(exports["PGHOST"], "eu-west-1")
        with psycopg.connect(url, password=token, sslmode="verify-full") as conn:
            assert conn.execute("select current_user").fetchone() == ("admin",)
        # The exported environment alone is enough for libpq.
        check = subprocess.run(
            [sys.executable, "-c", _CONNECT_FROM_ENVIRONMENT],
            env={**os.environ, **exports, "PGPASSWORD": token},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.stdout == "admin verify-full\n", check.stderr

        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert not ca_file.exists()
    finally:
        proc.kill()
        proc.communicate()


def _serve(
    env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m dsql_local``; its output up to "Press Ctrl-C"."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsql_local", "--no-strict", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate()


def _exports(output: str) -> dict[str, str]:
    exports = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line[len("export ") :])[0].partition("=")
            exports[name] = value
    return exports


def test_cli_starts_under_the_exports_it_prints() -> None:
    first, output = _serve()
    try:
        exports = _exports(output)
        assert "PGHOSTADDR" in exports, output
    finally:
        _stop(first)
    # A shell that followed the advice, and set what else clients may want:
    # none of it is for DSQL Local's own PostgreSQL.
    env = {
        **os.environ,
        **exports,
        "PGPASSWORD": "not-a-token",
        "PGOPTIONS": "-c statement_timeout=1",
        "PGTARGETSESSIONATTRS": "read-only",
        "PGREQUIREAUTH": "scram-sha-256",
        "PGAPPNAME": "client",
        "PGCLIENTENCODING": "LATIN1",
        "PGCONNECT_TIMEOUT": "1",
    }
    second, output = _serve(env)
    try:
        assert "Press Ctrl-C" in output, output
        url = next(
            line[5:].strip() for line in output.splitlines() if line.startswith("URL: ")
        )
        host, region = _exports(output)["PGHOST"], exports["AWS_REGION"]
        token = boto3.client(
            "dsql", region_name=region
        ).generate_db_connect_admin_auth_token(host, region)
        with psycopg.connect(url, password=token, sslmode="verify-full") as conn:
            assert conn.execute("select current_user").fetchone() == ("admin",)
    finally:
        _stop(second)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def _lines_after(output: str, heading: str) -> list[str]:
    """The indented lines under `heading` in the output."""
    lines = output.splitlines()
    start = lines.index(heading) + 1
    taken = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        taken.append(line.strip())
    return taken


CLUSTER_ID = "restart0the0same0endpoint0"


def test_cli_restart_keeps_the_endpoint_and_the_ca(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    port = _free_port()
    args = ("--cluster-id", CLUSTER_ID, "--port", str(port), "--cert-dir", str(certs))
    first, output = _serve(args=args)
    try:
        exports = _exports(output)
        assert exports["PGHOST"] == f"{CLUSTER_ID}.dsql.us-east-1.on.aws", output
        assert exports["PGPORT"] == str(port)
        assert exports["PGSSLROOTCERT"] == str(certs / "root.crt")
        assert _lines_after(output, "The same endpoint after a restart:") == [
            f"python -m dsql_local --cluster-id {CLUSTER_ID} --port {port}"
            f" --cert-dir {certs}"
        ]
    finally:
        _stop(first)
    ca = (certs / "root.crt").read_bytes()
    assert (certs / "root.key").stat().st_mode & 0o777 == 0o600

    second, output = _serve(args=args)
    try:
        assert _exports(output) == exports, output
        # The same CA: what trusted the first run trusts the second.
        assert (certs / "root.crt").read_bytes() == ca
        token = _token(exports["PGHOST"], "us-east-1")
        check = subprocess.run(
            [sys.executable, "-c", _CONNECT_FROM_ENVIRONMENT],
            env={**os.environ, **exports, "PGPASSWORD": token},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.stdout == "admin verify-full\n", check.stderr
    finally:
        _stop(second)


def test_cli_bad_cluster_id_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dsql_local", "--cluster-id", "Not-An-Id"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "dsql-local: cluster_id must be 26 characters of a-z and 0-9\n"
    )


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_cli_prints_lines_that_open_psql_with_a_token() -> None:
    proc, output = _serve()
    try:
        lines = _lines_after(output, "Then open psql with a fresh token:")
        assert lines == [
            "dsql-psycopg psql",
            'PGPASSWORD="$(dsql-psycopg token)" psql',
        ]
        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            **_exports(output),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            # The console script runs this tree's dsql_psycopg.
            "PYTHONPATH": str(root),
        }
        for line in lines:
            done = subprocess.run(
                ["bash", "-c", line],
                input="select current_user;\n",
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (line, done)
            assert "admin" in [word.strip() for word in done.stdout.splitlines()]
            assert "X-Amz" not in done.stdout + done.stderr
    finally:
        _stop(proc)


def test_cli_without_credentials_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "dsql_local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "AWS_ACCESS_KEY_ID" in done.stderr


def test_cli_faults() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsql_local",
            "--refuse-connections",
            "waking_up",
            "--refuse-count",
            "1",
            "--server-unavailable-commits",
            "1",
            "--outage-on-sigusr1",
            "600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            url = line[5:].strip() if line.startswith("URL: ") else url
            if line.startswith("Press Ctrl-C"):
                break
        token = boto3.client(
            "dsql", region_name="us-east-1"
        ).generate_db_connect_admin_auth_token(
            url.split("@")[1].split(":")[0], "us-east-1"
        )
        kwargs: dict[str, object] = {"password": token, "sslmode": "verify-full"}
        with pytest.raises(psycopg.OperationalError, match="waking up cluster"):
            psycopg.connect(url, **kwargs)
        with psycopg.connect(url, **kwargs) as conn:
            conn.execute("SELECT 1")
            with pytest.raises(psycopg.errors.InternalError_, match="unavailable"):
                conn.commit()
            proc.send_signal(signal.SIGUSR1)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT pg_sleep(30)")
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(url, connect_timeout=5, **kwargs)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_cli_refusal_needs_a_count_or_time() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dsql_local", "--refuse-connections", "too_many"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--refuse-count" in done.stderr


def _token(host: str, region: str) -> str:
    client = boto3.client("dsql", region_name=region)
    token: str = client.generate_db_connect_admin_auth_token(host, region)
    return token


def test_cli_serves_a_multi_region_cluster() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsql_local", "--peer-region", "us-west-2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        assert lines[0].startswith("DSQL Local is running a multi-region cluster (")
        assert lines[0].endswith(" in us-west-2).\n")
        exports = dict(
            line[len("export ") :].strip().split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        urls = {
            key: value.strip()
            for key, value in (line.split(": ", 1) for line in lines[2:5])
        }
        assert list(urls) == ["URL", "URL in us-east-1", "URL in us-west-2"]
        # PGHOST lists both endpoints, a token is for one: psql gets the own.
        own = urls["URL in us-east-1"]
        east_host = own.split("@", 1)[1].split(":", 1)[0]
        assert _lines_after("".join(lines), "Then open psql with a fresh token:") == [
            f"dsql-psycopg psql {shlex.quote(own)}",
            f'PGPASSWORD="$(dsql-psycopg token {east_host})" psql {shlex.quote(own)}',
        ]
        east, west = exports["PGHOST"].split(",")
        assert east.endswith(".dsql.us-east-1.on.aws")
        assert west.endswith(".dsql.us-west-2.on.aws")
        assert exports["PGHOSTADDR"] == "127.0.0.1,127.0.0.1"
        assert exports["AWS_REGION"] == "us-east-1"
        east_port, west_port = exports["PGPORT"].split(",")
        assert urls["URL"].startswith(
            f"postgresql://admin@{east}:{east_port},{west}:{west_port}/postgres?"
        )

        # Each regional URL takes its own region's token.
        for region, host in (("us-east-1", east), ("us-west-2", west)):
            with psycopg.connect(
                urls[f"URL in {region}"],
                password=_token(host, region),
                sslmode="verify-full",
            ) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
        # libpq tries the hosts in order: the first is the own region's.
        check = subprocess.run(
            [sys.executable, "-c", _CONNECT_FROM_ENVIRONMENT],
            env={**os.environ, **exports, "PGPASSWORD": _token(east, "us-east-1")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.stdout == "admin verify-full\n", check.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_cli_refuses_a_peer_in_the_same_region() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dsql_local", "--peer-region", "us-east-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "peer_region must be another region" in done.stderr
