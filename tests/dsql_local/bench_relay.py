"""Measure statements per second: through DSQL Local vs PostgreSQL directly.

Run: python tests/dsql_local/bench_relay.py [seconds] [--no-strict]
     [--in-process] [--both] [--scaling]

Not a test (nothing is asserted about speed). By default DSQL Local runs in a
process of its own (its CLI), as in a benchmark of a real application;
``--in-process`` runs it in this process, ``--both`` measures both placements.
Two workloads (``select 1`` in autocommit; a one-row UPDATE in transactions of
ten statements, BEGIN and COMMIT not counted), each over three routes, taken
in turns in the same run so that the machine's load falls on all alike:

- ``unix``: PostgreSQL directly, on its unix socket;
- ``tls``: a second PostgreSQL of the same installation, directly, over TLS on
  TCP (verify-full): the floor for an endpoint that must speak TLS;
- ``relayed``: through DSQL Local (TLS, IAM token).

It prints each rate, the relayed rate's ratio to ``tls`` and to ``unix``, and
the endpoint's CPU time per statement (own process only). ``--scaling`` also
runs ``select 1`` on 1, 8 and 64 connections at once, a thread each, over
``tls`` and ``relayed``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import psycopg

from dsql_local import DsqlLocal
from dsql_local._backend import find_bindir

_TABLE = "bench_relay"
_UPDATE = f"update {_TABLE} set n = n + 1 where id = %s"
# name: (statement, parameters, statements per transaction; 0: autocommit)
WORKLOADS: dict[str, tuple[str, tuple[int, ...], int]] = {
    "select 1, autocommit": ("select 1", (), 0),
    "update, transactions of 10": (_UPDATE, (1,), 10),
}
ROUTES = ("unix", "tls", "relayed")
_ROUNDS = 5


def run(
    conn: psycopg.Connection[Any],
    seconds: float,
    statement: str,
    params: tuple[int, ...],
    per_transaction: int,
) -> tuple[int, float]:
    """Run `statement` for about `seconds`; return (statements, seconds)."""
    cur = conn.cursor()
    count = 0
    batch = per_transaction or 50
    elapsed = 0.0
    while elapsed < seconds:
        start = time.perf_counter()
        if per_transaction:
            cur.execute("begin")
        for _ in range(batch):
            cur.execute(statement, params or None)
        if per_transaction:
            cur.execute("commit")
        elapsed += time.perf_counter() - start
        count += batch
    return count, elapsed


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def endpoint(strict: bool, in_process: bool) -> Iterator[tuple[str, str, int]]:
    """Yield (url, backend_dsn, pid of the endpoint process)."""
    if in_process:
        with DsqlLocal(strict=strict) as local:
            yield local.url, local.backend_dsn, os.getpid()
        return
    cmd = [sys.executable, "-m", "dsql_local"]
    if not strict:
        cmd.append("--no-strict")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = next(line[5:].strip() for line in proc.stdout if line.startswith("URL: "))
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        # The backend socket directory is not printed; find it by the process.
        out = subprocess.run(
            ["ps", "-o", "args=", "--ppid", str(proc.pid)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"-k (\S+)", out)
        assert match, out
        yield url, f"host={match.group(1)} dbname=postgres user=admin", proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()


def _bindirs() -> Iterator[Path]:
    """PostgreSQL installations to try for the TLS route, DSQL Local's first."""
    seen = set()
    for bindir in (find_bindir(), *map(Path, glob.glob("/usr/lib/postgresql/*/bin"))):
        if bindir.resolve() not in seen:
            seen.add(bindir.resolve())
            yield bindir


@contextmanager
def tls_postgres() -> Iterator[str]:
    """A PostgreSQL with TLS on TCP; yield its DSN.

    The first installation built with TLS, DSQL Local's own if it is; all
    three routes then use it (``DSQL_LOCAL_PG_BINDIR``).
    """
    for bindir in _bindirs():
        try:
            with _tls_postgres(bindir) as dsn:
                os.environ["DSQL_LOCAL_PG_BINDIR"] = str(bindir)
                yield dsn
                return
        except _NoTls:
            continue
    raise RuntimeError("no PostgreSQL built with TLS support was found")


class _NoTls(Exception):
    pass


@contextmanager
def _tls_postgres(bindir: Path) -> Iterator[str]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-pg-"))
    user = "nobody" if os.geteuid() == 0 else None
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(tmp / "server.key"), "-out", str(tmp / "server.crt"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        os.chmod(tmp / "server.key", 0o600)
        if user:
            os.chmod(tmp, 0o755)
            for path in (tmp / "server.key", tmp / "server.crt"):
                shutil.chown(path, user)
            for name in ("data", "sock"):
                (tmp / name).mkdir()
                shutil.chown(tmp / name, user)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(tmp / "data"), "-U", "bench",
             "--auth=trust", "-E", "UTF8"],
            check=True, capture_output=True, user=user,
        )  # fmt: skip
        with socket_port() as port:
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(port),
                "unix_socket_directories": str(tmp / "sock"),
                "ssl": "on",
                "ssl_cert_file": str(tmp / "server.crt"),
                "ssl_key_file": str(tmp / "server.key"),
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "default_transaction_isolation": "repeatable read",
                "max_connections": "200",
            }
            args = [str(bindir / "postgres"), "-D", str(tmp / "data")]
            for key, value in settings.items():
                args += ["-c", f"{key}={value}"]
            (tmp / "sock").mkdir(exist_ok=True)
            proc = subprocess.Popen(args, user=user, stderr=subprocess.PIPE)
        dsn = (
            f"host=localhost hostaddr=127.0.0.1 port={port} dbname=postgres"
            f" user=bench sslmode=verify-full sslrootcert={tmp / 'server.crt'}"
        )
        for _ in range(300):
            try:
                psycopg.connect(dsn).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None:
                    assert proc.stderr is not None
                    why = proc.stderr.read().decode()
                    if "SSL is not supported" in why:
                        raise _NoTls from None
                    raise RuntimeError(why) from None
                time.sleep(0.05)
        yield dsn
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def socket_port() -> Iterator[int]:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


def _token(url: str) -> str:
    host = psycopg.conninfo.conninfo_to_dict(url)["host"]
    return str(
        boto3.client(
            "dsql", region_name="us-east-1"
        ).generate_db_connect_admin_auth_token(str(host), "us-east-1")
    )


def measure(
    seconds: float, strict: bool, in_process: bool, tls_dsn: str, scaling: bool
) -> None:
    where = "in-process" if in_process else "own process"
    with endpoint(strict, in_process) as (url, backend_dsn, pid):
        token = _token(url)
        relayed_kwargs = {"password": token, "sslmode": "verify-full"}
        conns = {
            "unix": psycopg.connect(backend_dsn, autocommit=True),
            "tls": psycopg.connect(tls_dsn, autocommit=True),
            "relayed": psycopg.connect(url, autocommit=True, **relayed_kwargs),
        }
        with contextlib.ExitStack() as stack:
            for conn in conns.values():
                stack.enter_context(conn)
            for name in ("relayed", "tls"):
                conns[name].execute(f"drop table if exists {_TABLE}")
                conns[name].execute(
                    f"create table {_TABLE} (id int primary key, n bigint not null)"
                )
                conns[name].execute(f"insert into {_TABLE} values (1, 0)")
            sys.stdout.write(
                f"\n{where} (strict={strict}), {seconds:g} s per workload and"
                f" route in {_ROUNDS} alternated rounds\n"
                f"{'workload':<28} {'unix/s':>8} {'tls/s':>8} {'relayed/s':>10}"
                f" {'/tls':>5} {'/unix':>6} {'endpoint CPU/stmt':>18}\n"
            )
            for name, (statement, params, per_transaction) in WORKLOADS.items():
                totals = {route: [0, 0.0] for route in ROUTES}
                cpu = 0.0
                for _ in range(_ROUNDS):
                    for route in ROUTES:
                        before = cpu_seconds(pid) if route == "relayed" else 0.0
                        count, spent = run(
                            conns[route],
                            seconds / _ROUNDS,
                            statement,
                            params,
                            per_transaction,
                        )
                        if route == "relayed":
                            cpu += cpu_seconds(pid) - before
                        totals[route][0] += count
                        totals[route][1] += spent
                rates = {r: totals[r][0] / totals[r][1] for r in ROUTES}
                per_statement = (
                    "" if in_process else f"{cpu / totals['relayed'][0] * 1e6:.0f} us"
                )
                sys.stdout.write(
                    f"{name:<28} {rates['unix']:8.0f} {rates['tls']:8.0f}"
                    f" {rates['relayed']:10.0f}"
                    f" {rates['relayed'] / rates['tls']:5.2f}"
                    f" {rates['relayed'] / rates['unix']:6.2f} {per_statement:>18}\n"
                )
            conns["relayed"].execute(f"drop table {_TABLE}")
        if scaling:
            scale(seconds, url, relayed_kwargs, tls_dsn, pid, in_process)


def scale(
    seconds: float,
    url: str,
    relayed_kwargs: dict[str, str],
    tls_dsn: str,
    pid: int,
    in_process: bool,
) -> None:
    """``select 1`` on 1, 8 and 64 connections at once (a thread each)."""
    sys.stdout.write(
        f"{'connections':<12} {'tls/s':>8} {'relayed/s':>10} {'/tls':>5}"
        f" {'endpoint CPU/stmt':>18}\n"
    )
    for clients in (1, 8, 64):
        rates: dict[str, float] = {}
        cpu_per_statement = 0.0
        for route in ("tls", "relayed"):
            conns = [
                psycopg.connect(tls_dsn, autocommit=True)
                if route == "tls"
                else psycopg.connect(url, autocommit=True, **relayed_kwargs)
                for _ in range(clients)
            ]
            counts = [0] * clients
            barrier = threading.Barrier(clients + 1)

            def work(
                i: int,
                conn: psycopg.Connection[Any],
                counts: list[int] = counts,
                barrier: threading.Barrier = barrier,
            ) -> None:
                barrier.wait()
                counts[i], _ = run(conn, seconds, "select 1", (), 0)

            threads = [
                threading.Thread(target=work, args=(i, c)) for i, c in enumerate(conns)
            ]
            for thread in threads:
                thread.start()
            before = cpu_seconds(pid)
            start = time.perf_counter()
            barrier.wait()
            for thread in threads:
                thread.join()
            spent = time.perf_counter() - start
            rates[route] = sum(counts) / spent
            if route == "relayed":
                cpu_per_statement = (cpu_seconds(pid) - before) / sum(counts)
            for conn in conns:
                conn.close()
        cpu = "" if in_process else f"{cpu_per_statement * 1e6:.0f} us"
        sys.stdout.write(
            f"{clients:<12} {rates['tls']:8.0f} {rates['relayed']:10.0f}"
            f" {rates['relayed'] / rates['tls']:5.2f} {cpu:>18}\n"
        )


def main() -> None:
    seconds = float(next((a for a in sys.argv[1:] if a[0].isdigit()), "5"))
    strict = "--no-strict" not in sys.argv
    placements = (
        (True, False) if "--both" in sys.argv else (("--in-process" in sys.argv),)
    )
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCHMARK")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with tls_postgres() as tls_dsn:
        for in_process in placements:
            measure(seconds, strict, in_process, tls_dsn, "--scaling" in sys.argv)


if __name__ == "__main__":
    main()
