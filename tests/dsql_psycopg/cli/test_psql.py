"""``dsql-psycopg psql`` against DSQL Local, with the real psql client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psycopg
import pytest

from dsql_local import DsqlLocal
from dsql_psycopg import _auth as auth
from dsql_psycopg.__main__ import main
from dsql_psycopg._tls import DIRECT_NEGOTIATION

PSQL = shutil.which("psql")
needs_psql = pytest.mark.skipif(PSQL is None, reason="psql is not installed")


def cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsql_psycopg", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy() if env is None else env,
        timeout=60,
        check=False,
    )


@needs_psql
def test_psql_runs_select_1(dsql_local: DsqlLocal) -> None:
    result = cli("psql", dsql_local.url, "--", "-X", "-A", "-t", "-c", "select 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"


@needs_psql
def test_psql_without_target_from_dsql_local_exports(dsql_local: DsqlLocal) -> None:
    from tests.dsql_psycopg.cli.test_cli import exports  # noqa: PLC0415

    env = {**os.environ, **exports(dsql_local)}
    result = cli("psql", "--", "-X", "-A", "-t", "-c", "select 1", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"


@needs_psql
def test_psql_as_a_role(dsql_local: DsqlLocal) -> None:
    dsql_local.create_role("app")
    result = cli(
        "psql", dsql_local.url, "--user", "app", "--", "-XAtc", "select current_user"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app\n"


@needs_psql
def test_psql_exit_status_is_passed_on(dsql_local: DsqlLocal) -> None:
    result = cli(
        "psql", dsql_local.url, "--", "-X", "-v", "ON_ERROR_STOP=1", "-c", "select 1/0"
    )
    assert result.returncode != 0
    assert "division by zero" in result.stderr


def test_psql_missing(dsql_local: DsqlLocal, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    env.pop("PSQL", None)
    result = cli("psql", dsql_local.url, env=env)
    assert result.returncode == 127
    assert result.stdout == ""
    assert "'psql' not found" in result.stderr
    assert "postgresql-client" in result.stderr
    assert "Traceback" not in result.stderr


def test_psql_gets_token_in_environment_only(
    dsql_local: DsqlLocal, tmp_path: Path
) -> None:
    # A stand-in for psql that reports what it was given.
    seen = tmp_path / "seen.json"
    fake = tmp_path / "fake-psql"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(seen)!r}, 'w') as f:\n"
        "    json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, f)\n"
    )
    fake.chmod(0o755)
    result = cli(
        "psql", dsql_local.url, "--psql", str(fake), "--", "-c", "select 1", "-X"
    )
    assert result.returncode == 0, result.stderr
    given: dict[str, Any] = json.loads(seen.read_text())
    env = given["env"]
    token = env["PGPASSWORD"]
    assert given["argv"] == ["-c", "select 1", "-X"]
    assert env["PGHOST"] == dsql_local.host
    assert env["PGHOSTADDR"] == "127.0.0.1"
    assert env["PGPORT"] == str(dsql_local.port)
    assert env["PGUSER"] == "admin"
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == dsql_local.ca_file
    assert env.get("PGSSLNEGOTIATION") == ("direct" if DIRECT_NEGOTIATION else None)
    assert token not in result.stdout + result.stderr
    # The token handed over is one DSQL Local accepts.
    with psycopg.connect(
        **dsql_local.connect_kwargs(), password=token, sslmode="verify-full"
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@needs_psql
def test_psql_never_shows_the_token(
    dsql_local: DsqlLocal,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    made: list[str] = []
    real = auth.make_token

    def recording(params: Any) -> str:
        made.append(real(params))
        return made[-1]

    monkeypatch.setattr(auth, "make_token", recording)
    psql_args = ["-X", "-c", "select current_user", "-c", "select 1/0"]
    status = main(["psql", dsql_local.url, "--", *psql_args])
    out, err = capfd.readouterr()
    assert status != 0  # psql's own status, from the failing statement
    assert "admin" in out
    assert "division by zero" in err
    assert len(made) == 1
    signature = parse_qs(made[0].partition("?")[2])["X-Amz-Signature"][0]
    for text in (out, err):
        assert made[0] not in text
        assert signature not in text
