"""Measure statements per second: through DSQL Local vs PostgreSQL directly.

Run: python tests/dsql_local/bench_relay.py [seconds] [--no-strict]
     [--in-process] [--both] [--scaling] [--before PATH] [--floor]
     [--output FILE]

Not a test (nothing is asserted about speed). By default DSQL Local runs in a
process of its own (its CLI), as in a benchmark of a real application;
``--in-process`` runs it in this process, ``--both`` measures both placements.
Three workloads (``select 1`` in autocommit; a one-row UPDATE in transactions
of ten statements, BEGIN and COMMIT not counted; the same UPDATEs while
another connection holds a transaction open, so that DSQL Local guards each
write, see ``dsql_local/_solo.py``), each over these routes, taken in turns
in the same run so that the machine's load falls on all alike:

- ``unix``: PostgreSQL directly, on its unix socket;
- ``tls``: a second PostgreSQL of the same installation, directly, over TLS on
  TCP (verify-full): the floor for an endpoint that must speak TLS;
- ``relayed``: through DSQL Local (TLS, IAM token);
- ``relayed@before`` (``--before PATH``): through the DSQL Local of another
  checkout of this project at PATH (its package imported from there, with
  PostgreSQL of its own), placed as ``relayed`` is: its CLI, or a worker
  process running that DSQL Local and the client in one process.

- ``pump only`` (``--floor``, a diagnostic): a DSQL Local in this process
  whose relays pass the bytes on unread (no policy, no conflict handling, no
  limits): the ceiling of its transport (TLS, the poll loop, the unix socket)
  as it is, whatever the protocol work costs.

With ``--both`` the relayed routes of both placements are taken in turns
with the others, so that the placements are compared in the same run too.
It prints each rate, the relayed rates' ratios to ``tls`` and to ``unix``,
and the endpoint's CPU time per statement: its process's, or, in-process,
the process's less the client thread's. ``--scaling`` also runs ``select 1``
on 1, 8 and 64 connections at once, a thread each, over ``tls`` and the
relayed routes. The numbers are written as JSON to
``benchmarks/results/relay/<time>.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg

from dsql_local import DsqlLocal
from dsql_local._backend import find_bindir

_TABLE = "bench_relay"
_UPDATE = f"update {_TABLE} set n = n + 1 where id = %s"
# name: (statement, parameters, statements per transaction (0: autocommit),
# whether another connection holds a transaction open meanwhile)
WORKLOADS: dict[str, tuple[str, tuple[int, ...], int, bool]] = {
    "select 1, autocommit": ("select 1", (), 0, False),
    "update, transactions of 10": (_UPDATE, (1,), 10, False),
    "update, another transaction open": (_UPDATE, (1,), 10, True),
}
_SCALING = (1, 8, 64)
_ROUNDS = 5
_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "relay"
Connect = Callable[[], "psycopg.Connection[Any]"]


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


@dataclass
class Sample:
    """What one route did in one stretch: statements, seconds, endpoint CPU."""

    statements: int = 0
    seconds: float = 0.0
    endpoint_cpu: float | None = None

    def add(self, other: Sample) -> None:
        self.statements += other.statements
        self.seconds += other.seconds
        if other.endpoint_cpu is not None:
            self.endpoint_cpu = (self.endpoint_cpu or 0.0) + other.endpoint_cpu

    def summary(self) -> dict[str, Any]:
        """Rate (statements per second of wall time) and CPU per statement."""
        return {
            "statements": self.statements,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.statements / self.seconds, 1),
            "endpoint_cpu_us_per_statement": None
            if self.endpoint_cpu is None
            else round(self.endpoint_cpu / self.statements * 1e6, 1),
        }


class Route:
    """Statements sent from this process, over connections `connect` opens.

    `pid` is the endpoint's process, whose CPU is counted; 0 when the
    endpoint runs in this process (its CPU: the process's less the clients');
    None when there is no endpoint to count (PostgreSQL directly).
    """

    def __init__(self, name: str, connect: Connect, pid: int | None) -> None:
        self.name = name
        self._connect = connect
        self._pid = pid
        self._conns: list[psycopg.Connection[Any]] = []

    def open(self, clients: int) -> None:
        self.close()
        self._conns = [self._connect() for _ in range(clients)]

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns = []

    def execute(self, sql: str) -> None:
        with self._connect() as conn:
            conn.execute(sql)

    def _cpu(self) -> float:
        return time.process_time() if self._pid == 0 else cpu_seconds(self._pid or 0)

    def measure(self, workload: str, seconds: float) -> Sample:
        """Run `workload` on each open connection at once, a thread each."""
        statement, params, per_transaction, beside = WORKLOADS[workload]
        with contextlib.ExitStack() as stack:
            if beside:
                other = stack.enter_context(self._connect())
                other.execute("begin")
                other.execute("select 1")
            return self._measure(statement, params, per_transaction, seconds)

    def _measure(
        self,
        statement: str,
        params: tuple[int, ...],
        per_transaction: int,
        seconds: float,
    ) -> Sample:
        results: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * len(self._conns)
        barrier = threading.Barrier(len(self._conns) + 1)

        def work(i: int, conn: psycopg.Connection[Any]) -> None:
            barrier.wait()
            start = time.thread_time()
            count, spent = run(conn, seconds, statement, params, per_transaction)
            results[i] = (count, spent, time.thread_time() - start)

        threads = [
            threading.Thread(target=work, args=(i, c))
            for i, c in enumerate(self._conns)
        ]
        for thread in threads:
            thread.start()
        cpu = self._cpu() if self._pid is not None else 0.0
        start = time.perf_counter()
        barrier.wait()
        for thread in threads:
            thread.join()
        spent = time.perf_counter() - start
        endpoint_cpu = None
        if self._pid is not None:
            endpoint_cpu = self._cpu() - cpu
            if self._pid == 0:
                endpoint_cpu -= sum(r[2] for r in results)
        if len(self._conns) == 1:
            spent = results[0][1]  # the statements' time, not the thread's
        return Sample(sum(r[0] for r in results), spent, endpoint_cpu)


class WorkerRoute:
    """A DSQL Local and its client in a process of their own (``--worker``)."""

    def __init__(self, name: str, proc: subprocess.Popen[str]) -> None:
        self.name = name
        self._proc = proc

    def ask(self, **command: Any) -> Any:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the worker process ended")
        return json.loads(line)

    def open(self, clients: int) -> None:
        self.ask(op="open", clients=clients)

    def close(self) -> None:
        self.ask(op="close")

    def execute(self, sql: str) -> None:
        self.ask(op="execute", sql=sql)

    def measure(self, workload: str, seconds: float) -> Sample:
        return Sample(**self.ask(op="measure", workload=workload, seconds=seconds))


AnyRoute = Route | WorkerRoute


def _before_env(before: Path) -> dict[str, str]:
    """The environment that has Python import DSQL Local from `before`."""
    return {**os.environ, "PYTHONPATH": str(before)}


@contextmanager
def own_process(
    strict: bool, before: Path | None = None
) -> Iterator[tuple[str, str, int]]:
    """DSQL Local's CLI; yield (url, backend_dsn, pid of the endpoint process)."""
    cmd = [sys.executable, "-m", "dsql_local"]
    if not strict:
        cmd.append("--no-strict")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as cwd:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            text=True,
            # From elsewhere than this checkout, so that `before` is imported.
            cwd=cwd if before else None,
            env=_before_env(before) if before else None,
        )
        try:
            assert proc.stdout is not None
            url = next(
                line[5:].strip() for line in proc.stdout if line.startswith("URL: ")
            )
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


@contextmanager
def worker(strict: bool, before: Path, name: str) -> Iterator[WorkerRoute]:
    """This script as a worker, importing DSQL Local from `before`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    if not strict:
        cmd.append("--no-strict")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as cwd:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=_before_env(before),
        )
        try:
            route = WorkerRoute(name, proc)
            route.ask(op="ping")  # answered once DSQL Local runs
            yield route
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()


def serve_worker(strict: bool) -> None:
    """``--worker``: DSQL Local in this process; run what stdin asks."""
    with DsqlLocal(strict=strict) as local:
        kwargs: dict[str, Any] = {
            "password": _token(local.url),
            "sslmode": "verify-full",
        }
        route = Route(
            "relayed",
            lambda: psycopg.connect(local.url, autocommit=True, **kwargs),
            0,
        )
        for line in sys.stdin:
            command = json.loads(line)
            op = command.pop("op")
            answer: Any = None
            if op == "open":
                route.open(command["clients"])
            elif op == "close":
                route.close()
            elif op == "execute":
                route.execute(command["sql"])
            elif op == "measure":
                answer = asdict(route.measure(command["workload"], command["seconds"]))
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        route.close()


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


def _relayed(name: str, url: str, pid: int) -> Route:
    kwargs: dict[str, Any] = {"password": _token(url), "sslmode": "verify-full"}
    return Route(name, lambda: psycopg.connect(url, autocommit=True, **kwargs), pid)


_IN, _OWN = "in-process", "own process"


class _PassThrough:
    """A relay protocol that passes every byte on unread (``--floor``)."""

    transaction = 0
    wake_at = None
    busy = False

    def __init__(self, endpoint: Any, session: Any, *, backend_pid: int = 0) -> None:
        self.to_client = bytearray()
        self.to_backend = bytearray()
        self.dropping = False
        self.held = 0
        self.backend_pid = backend_pid

    def from_client(self, data: bytes) -> None:
        self.to_backend += data

    def from_backend(self, data: bytes) -> None:
        self.to_client += data

    def woken(self) -> None:
        pass

    def take_holder_lookup(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def set_waker(self, waker: Callable[[], None]) -> None:
        pass

    def give_way(self, transaction: int) -> None:
        pass

    def cancel_held(self, key: bytes) -> bool:
        return False


@contextmanager
def pass_through(strict: bool) -> Iterator[DsqlLocal]:
    """A DSQL Local in this process whose relays are `_PassThrough`."""
    from dsql_local import _endpoint  # noqa: PLC0415

    names = vars(_endpoint)  # the module's own namespace: where it finds Relay
    relay = names["Relay"]
    ports: set[int] = set()

    def make(endpoint: Any, session: Any, *, backend_pid: int = 0) -> Any:
        chosen = _PassThrough if endpoint.port in ports else relay
        return chosen(endpoint, session, backend_pid=backend_pid)

    names["Relay"] = make
    try:
        with DsqlLocal(strict=strict) as local:
            ports.add(local.port)
            yield local
    finally:
        names["Relay"] = relay


@contextmanager
def routes(
    strict: bool,
    placements: tuple[bool, ...],
    tls_dsn: str,
    before: Path | None,
    floor: bool = False,
) -> Iterator[list[AnyRoute]]:
    """The routes to measure, each relayed one with its table.

    A relayed route per placement (``in_process`` true or false), and one
    more through `before` for each.
    """
    with contextlib.ExitStack() as stack:
        relayed: list[AnyRoute] = []
        backend_dsn = ""
        for in_process in placements:
            where = _IN if in_process else _OWN
            if in_process:
                local = stack.enter_context(DsqlLocal(strict=strict))
                url, dsn, pid = local.url, local.backend_dsn, 0
            else:
                url, dsn, pid = stack.enter_context(own_process(strict))
            backend_dsn = backend_dsn or dsn
            relayed.append(_relayed(f"relayed, {where}", url, pid))
            if before is None:
                continue
            name = f"relayed@before, {where}"
            if in_process:
                relayed.append(stack.enter_context(worker(strict, before, name)))
            else:
                before_url, _, before_pid = stack.enter_context(
                    own_process(strict, before)
                )
                relayed.append(_relayed(name, before_url, before_pid))
        if floor:
            local = stack.enter_context(pass_through(strict))
            relayed.append(_relayed(f"pump only, {_IN}", local.url, 0))
        found: list[AnyRoute] = [
            # The PostgreSQL behind the first relayed route.
            Route("unix", lambda: psycopg.connect(backend_dsn, autocommit=True), None),
            Route("tls", lambda: psycopg.connect(tls_dsn, autocommit=True), None),
            *relayed,
        ]
        for route in found[1:]:
            route.execute(f"drop table if exists {_TABLE}")
            route.execute(
                f"create table {_TABLE} (id int primary key, n bigint not null)"
            )
            route.execute(f"insert into {_TABLE} values (1, 0)")
        try:
            yield found
        finally:
            for route in found:
                route.close()


def alternate(
    found: list[AnyRoute], workload: str, seconds: float, clients: int
) -> dict[str, Sample]:
    """Run `workload` over every route in turns, `_ROUNDS` times."""
    totals = {route.name: Sample() for route in found}
    for route in found:
        route.open(clients)
    try:
        for _ in range(_ROUNDS):
            for route in found:
                totals[route.name].add(route.measure(workload, seconds / _ROUNDS))
    finally:
        for route in found:
            route.close()
    return totals


def _cpu(summary: dict[str, Any]) -> str:
    value = summary["endpoint_cpu_us_per_statement"]
    return "" if value is None else f"{value:.0f} us"


def measure(
    seconds: float,
    strict: bool,
    placements: tuple[bool, ...],
    tls_dsn: str,
    scaling: bool,
    before: Path | None,
    floor: bool = False,
) -> dict[str, Any]:
    """Measure every route in turns: print the tables, return the numbers."""
    result: dict[str, Any] = {"workloads": {}, "scaling": {}}
    with routes(strict, placements, tls_dsn, before, floor) as found:
        sys.stdout.write(
            f"\nstrict={strict}, {seconds:g} s per workload and route in"
            f" {_ROUNDS} alternated rounds\n"
            f"{'workload / route':<34} {'per s':>8} {'/tls':>5} {'/unix':>6}"
            f" {'endpoint CPU/stmt':>18}\n"
        )
        for name in WORKLOADS:
            totals = alternate(found, name, seconds, 1)
            summaries = {r: totals[r].summary() for r in totals}
            rates = {r: summaries[r]["per_second"] for r in summaries}
            sys.stdout.write(f"{name}\n")
            for route, summary in summaries.items():
                ratios = ""
                if route not in ("unix", "tls"):
                    summary["per_tls"] = round(rates[route] / rates["tls"], 3)
                    summary["per_unix"] = round(rates[route] / rates["unix"], 3)
                    ratios = f"{summary['per_tls']:5.2f} {summary['per_unix']:6.2f}"
                sys.stdout.write(
                    f"  {route:<32} {rates[route]:8.0f} {ratios:>12}"
                    f" {_cpu(summary):>18}\n"
                )
            result["workloads"][name] = summaries
        if scaling:
            scaled = [r for r in found if r.name != "unix"]
            sys.stdout.write(
                f"select 1 on N connections at once ({seconds:g} s each, in"
                f" {_ROUNDS} alternated rounds)\n"
                f"{'connections / route':<34} {'per s':>8} {'/tls':>5}"
                f" {'endpoint CPU/stmt':>25}\n"
            )
            for clients in _SCALING:
                totals = alternate(scaled, "select 1, autocommit", seconds, clients)
                summaries = {r: totals[r].summary() for r in totals}
                sys.stdout.write(f"{clients}\n")
                for route, summary in summaries.items():
                    shown = ""
                    if route not in ("unix", "tls"):
                        ratio = summary["per_second"] / summaries["tls"]["per_second"]
                        summary["per_tls"] = round(ratio, 3)
                        shown = f"{ratio:5.2f}"
                    sys.stdout.write(
                        f"  {route:<32} {summary['per_second']:8.0f} {shown:>5}"
                        f" {_cpu(summary):>25}\n"
                    )
                result["scaling"][str(clients)] = summaries
    return result


def _commit(path: Path) -> str | None:
    """The commit checked out at `path` (with ``+`` when files differ)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=float, default=5.0)
    parser.add_argument("--no-strict", action="store_true")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--both", action="store_true")
    parser.add_argument("--scaling", action="store_true")
    parser.add_argument("--before", type=Path, help="another checkout to compare")
    parser.add_argument(
        "--floor", action="store_true", help="add the pass-through route (pump only)"
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    strict = not args.no_strict
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCHMARK")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    if args.worker:
        serve_worker(strict)
        return
    placements = (True, False) if args.both else (args.in_process,)
    before = args.before.resolve() if args.before else None
    results: dict[str, Any] = {
        "meta": {
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "strict": strict,
            "seconds_per_workload_and_route": args.seconds,
            "rounds": _ROUNDS,
            "after": _commit(Path(__file__).resolve().parent),
            "before": None if before is None else _commit(before),
            "notes": [
                "relayed@before runs the DSQL Local of the --before checkout, with"
                " a PostgreSQL of its own; in-process, in a worker process with"
                " its client",
                "endpoint CPU in-process: the process's CPU less the client"
                " threads' (the worker's, for relayed@before)",
            ],
        },
    }
    with tls_postgres() as tls_dsn:
        results.update(
            measure(
                args.seconds,
                strict,
                placements,
                tls_dsn,
                args.scaling,
                before,
                args.floor,
            )
        )
    results["meta"]["load_average_at_end"] = os.getloadavg()
    output = args.output or _RESULTS / (
        dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    sys.stderr.write(f"\nresults written to {output}\n")


if __name__ == "__main__":
    main()
