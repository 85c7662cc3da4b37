"""DSQL Local against a hostile or careless client: it keeps serving, safely."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import psycopg
import pytest

from dsql_local import DsqlLocal
from dsql_local import _protocol as pq
from tests.dsql_local.helpers import Connect, make_token, open_connection

_GSSENC_REQUEST = pq.INT32.pack(8) + pq.INT32.pack(pq.GSSENC_REQUEST)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="the backend changes user and group only when started as root on Linux",
)
def test_backend_keeps_no_group_of_root(dsql_local: DsqlLocal) -> None:
    pid = dsql_local._backend.pid
    assert pid is not None
    status = _status(pid)
    assert status["Uid"].split()[0] != "0"
    # Real, effective, saved and filesystem group ids; then the others.
    assert set(status["Gid"].split()) != {"0"}
    assert "0" not in status["Gid"].split()
    assert "0" not in status["Groups"].split()


def _closed(sock: socket.socket) -> bool:
    """Whether the peer has closed `sock` (after waiting up to a second)."""
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_startup_is_closed_at_the_deadline(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dsql_local._running(), "startup_timeout", 2.0)
    with socket.create_connection(("127.0.0.1", dsql_local.port), timeout=10) as sock:
        # Each byte comes well within any per-read timeout; every request is
        # answered, so the client seems to make progress.
        give_up = time.monotonic() + 60
        closed = False
        while not closed and time.monotonic() < give_up:
            try:
                for byte in _GSSENC_REQUEST:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                closed = True
                break
            closed = _closed(sock)  # else it has answered "N"
        assert closed, "the endpoint kept a dripping startup open for 60 s"
    # Others are served as ever.
    with open_connection(dsql_local) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_dripping_tls_handshake_is_closed_at_the_deadline(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dsql_local._running(), "startup_timeout", 2.0)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=dsql_local.ca_file).wrap_bio(
        incoming, outgoing, server_hostname=dsql_local.host
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with socket.create_connection(("127.0.0.1", dsql_local.port), timeout=10) as sock:
        sock.sendall(struct.pack("!II", 8, pq.SSL_REQUEST))
        assert sock.recv(1) == b"S"
        # A byte every 0.2 s: each read gets one well within any per-read
        # timeout, and the whole hello would take far longer than 2 s.
        started = time.monotonic()
        closed = False
        for byte in hello[:-1]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if _closed_now(sock):
                closed = True
                break
            if time.monotonic() - started > 20:
                break
            time.sleep(0.2)
        assert closed, "the endpoint kept a dripping TLS handshake open for 20 s"


def _closed_now(sock: socket.socket) -> bool:
    """Whether the peer has closed `sock`, without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
        sock.settimeout(10)


_SERVE_WITH_FEW_DESCRIPTORS = """
import json, logging, os, resource, sys
from dsql_local import DsqlLocal
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
with DsqlLocal(strict=False) as local:
    open_now = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 16, hard))
    print(json.dumps({"port": local.port, "kwargs": local.connect_kwargs()}))
    sys.stdout.flush()
    sys.stdin.read()
"""


def _lines_to(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc"
)
def test_accept_survives_running_out_of_descriptors() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _SERVE_WITH_FEW_DESCRIPTORS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        stderr: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_lines_to, args=(proc.stderr, stderr))
        reader.start()
        try:
            _flood_then_connect(json.loads(proc.stdout.readline()), stderr)
        finally:
            proc.kill()
            proc.wait()
            reader.join()


def _flood_then_connect(info: dict[str, Any], stderr: queue.Queue[str]) -> None:
    flood: list[socket.socket] = []
    log = ""
    give_up = time.monotonic() + 60
    try:
        # Connect until the endpoint says it has run out of descriptors.
        while "cannot accept" not in log and time.monotonic() < give_up:
            flood.append(socket.create_connection(("127.0.0.1", info["port"])))
            with contextlib.suppress(queue.Empty):
                log += stderr.get(timeout=0.05 if len(flood) < 64 else 1)
        assert "cannot accept" in log, log
    finally:
        for sock in flood:
            sock.close()
    # Served again, with time to spare however loaded the machine.
    kwargs = info["kwargs"]
    token = boto3.client(
        "dsql", region_name="us-east-1"
    ).generate_db_connect_admin_auth_token(kwargs["host"], "us-east-1")
    with psycopg.connect(
        **kwargs, password=token, sslmode="verify-full", connect_timeout=30
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


class _RawClient:
    """A client speaking the wire protocol itself, to send what libpq never does."""

    def __init__(self, local: DsqlLocal) -> None:
        raw = socket.create_connection(("127.0.0.1", local.port), timeout=30)
        raw.sendall(pq.INT32.pack(8) + pq.INT32.pack(pq.SSL_REQUEST))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=local.ca_file)
        self.sock = ctx.wrap_socket(raw, server_hostname=local.host)
        self.sock.sendall(pq.startup_message({"user": "admin", "database": "postgres"}))
        assert self.read()[0] == b"R"
        self.send(b"p", make_token(local).encode() + b"\0")
        self.read_until(b"Z")

    def send(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(pq.message(kind, body))

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def read(self) -> tuple[bytes, bytes]:
        """Read one message: its type and body."""
        header = self._exact(5)
        return header[:1], self._exact(pq.INT32.unpack_from(header, 1)[0] - 4)

    def read_until(self, kind: bytes) -> list[tuple[bytes, bytes]]:
        messages = [self.read()]
        while messages[-1][0] != kind:
            messages.append(self.read())
        return messages

    def close(self) -> None:
        self.sock.close()


def _error(messages: list[tuple[bytes, bytes]]) -> dict[str, str]:
    errors = [pq.parse_fields(body) for kind, body in messages if kind == b"E"]
    assert errors, messages
    return errors[0]


_PG_ADVISORY_LOCK_INT8 = 2880  # pg_advisory_lock(bigint), a built-in's fixed oid


def _advisory_locks(local: DsqlLocal) -> int:
    with psycopg.connect(local.backend_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_function_call_message_is_refused(dsql_local: DsqlLocal) -> None:
    client = _RawClient(dsql_local)
    try:
        # One argument, binary, the int8 1; text result.
        body = (
            pq.INT32.pack(_PG_ADVISORY_LOCK_INT8)
            + struct.pack("!hhhi", 1, 1, 1, 8)
            + struct.pack("!qh", 1, 0)
        )
        client.send(b"F", body)
        answer = client.read_until(b"Z")
        error = _error(answer)
        assert error["C"] == "0A000"
        assert "FunctionCall" in error["M"]
        assert _advisory_locks(dsql_local) == 0
        # The connection goes on.
        client.send(b"Q", b"select 1\0")
        assert [kind for kind, _ in client.read_until(b"Z")] == [
            b"T",
            b"D",
            b"C",
            b"Z",
        ]
    finally:
        client.close()


def test_unknown_message_is_refused_before_the_backend(dsql_local: DsqlLocal) -> None:
    client = _RawClient(dsql_local)
    try:
        client.send(b"p", b"a password out of turn\0")
        error = _error(client.read_until(b"E"))
        assert (error["S"], error["C"]) == ("FATAL", "08P01")
        assert "invalid frontend message type" in error["M"]
    finally:
        client.close()


def _rss() -> int:
    """This process's resident memory, in bytes."""
    return int(_status(os.getpid())["VmRSS"].split()[0]) * 1024


_FLOOD = 256 * 1024 * 1024
# What DSQL Local may hold for one client, with room for the interpreter's own
# growth: a small fraction of the flood.
_MEMORY_BOUND = 64 * 1024 * 1024


def _flood(client: _RawClient, sent: list[int]) -> None:
    """Send CopyData messages (ignored outside COPY) until blocked for 5 s."""
    chunk = pq.message(b"d", b"\0" * (1024 * 1024 - 5))
    client.sock.settimeout(5)
    try:
        while sent[0] < _FLOOD:
            client.sock.sendall(chunk)
            sent[0] += len(chunk)
    except OSError:
        pass  # blocked (the relay stopped reading), or closed


def _peak_growth_while(work: threading.Thread) -> int:
    before = peak = _rss()
    work.start()
    while work.is_alive():
        peak = max(peak, _rss())
        work.join(0.05)
    return max(peak, _rss()) - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_held_client_data_is_bounded(dsql_local: DsqlLocal, dsql_schema: str) -> None:
    client = _RawClient(dsql_local)
    # A schema of the test's own: later tests (Alembic's) expect public empty.
    table = f"{dsql_schema}.held_t".encode()
    try:
        client.send(b"Q", b"CREATE TABLE " + table + b" (id int)\0")
        client.read_until(b"Z")
        # A lone INSERT runs in a hidden transaction: client data waits meanwhile.
        client.send(b"Q", b"INSERT INTO " + table + b" SELECT 1 FROM pg_sleep(20)\0")
        sent = [0]
        growth = _peak_growth_while(
            threading.Thread(target=_flood, args=(client, sent))
        )
        assert sent[0] < _FLOOD, "the relay read everything it was sent"
        assert growth < _MEMORY_BOUND
    finally:
        client.close()


def test_a_message_declaring_4_gib_is_refused_first(dsql_local: DsqlLocal) -> None:
    client = _RawClient(dsql_local)
    try:
        # Only the header: the refusal cannot wait for the body.
        client.sock.sendall(b"Q" + pq.INT32.pack(0xFFFFFFF0))
        error = _error(client.read_until(b"E"))
        assert (error["S"], error["C"], error["M"]) == (
            "FATAL",
            "08P01",
            "invalid message length",
        )
        with pytest.raises(ConnectionError):
            client.read()
    finally:
        client.close()


def _backend_as(local: DsqlLocal, user: str) -> psycopg.Connection[Any]:
    conninfo = psycopg.conninfo.make_conninfo(local.backend_dsn, user=user)
    return psycopg.connect(conninfo, autocommit=True)


def _is_superuser(local: DsqlLocal, role: str) -> bool:
    with psycopg.connect(local.backend_dsn) as conn:
        row = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        assert row is not None
        return bool(row[0])


def test_index_predicate_runs_with_its_creators_rights(
    dsql_local: DsqlLocal, dsql_schema: str
) -> None:
    # Straight to the backend: what the event trigger does does not depend on
    # which statements the policy lets through.
    dsql_local.create_role("escalator")
    try:
        with _backend_as(dsql_local, "escalator") as conn:
            conn.execute(f"SET search_path = {dsql_schema}")
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
            # Folding p(1) when a query on t is planned runs q: as whom?
            conn.execute(
                "CREATE FUNCTION q() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
                " IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN"
                " ALTER ROLE escalator SUPERUSER; END IF; RETURN true; END $$"
            )
            conn.execute(
                "CREATE FUNCTION p(int) RETURNS boolean LANGUAGE sql IMMUTABLE"
                f" AS $$ SELECT {dsql_schema}.q() $$"
            )
            with contextlib.suppress(psycopg.Error):
                conn.execute("CREATE INDEX ON t (id) WHERE p(1)")
        assert not _is_superuser(dsql_local, "escalator")
    finally:
        with psycopg.connect(dsql_local.backend_dsn, autocommit=True) as conn:
            # The schema's owner drops what others made in it.
            conn.execute(f"DROP SCHEMA {dsql_schema} CASCADE")
            conn.execute("DROP ROLE escalator")


def test_nothing_installed_runs_with_a_superusers_rights(
    dsql_local: DsqlLocal,
) -> None:
    with psycopg.connect(dsql_local.backend_dsn) as conn:
        definers = conn.execute(
            "SELECT p.oid::regprocedure::text, r.rolsuper, p.prorettype::regtype::text"
            " FROM pg_proc AS p JOIN pg_roles AS r ON r.oid = p.proowner"
            " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE p.prosecdef"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    assert definers  # the job recording function
    for name, superuser, returns in definers:
        assert not superuser, name
        assert returns != "event_trigger", name


def test_admin_is_not_a_superuser(dsql_local: DsqlLocal, connect: Connect) -> None:
    assert not _is_superuser(dsql_local, "admin")
    conn = connect(autocommit=True)
    for sql in (
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "SELECT pg_read_file('/etc/passwd')",
        "ALTER ROLE admin SUPERUSER",
    ):
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql)
        assert info.value.sqlstate in ("0A000", "42501"), sql


def test_admin_creates_roles_schemas_and_grants(connect: Connect) -> None:
    conn = connect(autocommit=True)
    conn.execute("CREATE ROLE granted_app")
    try:
        conn.execute("CREATE SCHEMA granted_s")
        conn.execute("CREATE TABLE granted_s.t (id int PRIMARY KEY)")
        conn.execute("GRANT USAGE ON SCHEMA granted_s TO granted_app")
        conn.execute("GRANT SELECT ON granted_s.t TO granted_app")
        conn.execute("CREATE TABLE public.granted_t (id int PRIMARY KEY)")
    finally:
        conn.execute("DROP TABLE IF EXISTS public.granted_t")
        conn.execute("DROP SCHEMA IF EXISTS granted_s CASCADE")
        conn.execute("DROP ROLE granted_app")


def test_the_bootstrap_superuser_cannot_connect(dsql_local: DsqlLocal) -> None:
    with pytest.raises(psycopg.OperationalError):
        open_connection(dsql_local, "dsql_local_superuser")
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects"):
        _backend_as(dsql_local, "dsql_local_superuser")


# Read with standard_conforming_strings on (as the policy reads it): a SELECT of
# two literals. Read with it off: a SELECT, then TRUNCATE.
_SMUGGLED = "SELECT 'a\\' , $$'; TRUNCATE smuggle_t; -- $$"


@pytest.fixture
def smuggle_target(dsql_local: DsqlLocal) -> Iterator[int]:
    """A table the smuggled TRUNCATE would empty; its row count. Dropped after."""
    with psycopg.connect(dsql_local.backend_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.smuggle_t (id int)")
        conn.execute("INSERT INTO public.smuggle_t VALUES (1)")
        row = conn.execute("SELECT count(*) FROM public.smuggle_t").fetchone()
        assert row is not None
        yield int(row[0])
        # Other tests (Alembic's) expect nothing of theirs in public.
        conn.execute("DROP TABLE public.smuggle_t")


def _rows_left(local: DsqlLocal) -> int:
    with psycopg.connect(local.backend_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM public.smuggle_t").fetchone()
        assert row is not None
        return int(row[0])


def test_sql_cannot_be_lexed_otherwise_by_a_setting(
    dsql_local: DsqlLocal, smuggle_target: int
) -> None:
    with open_connection(dsql_local, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SET standard_conforming_strings = off")
        assert info.value.sqlstate == "0A000"
        assert "standard_conforming_strings" in str(info.value)
        if not conn.closed:
            conn.execute(_SMUGGLED.encode())
    assert _rows_left(dsql_local) == smuggle_target


def test_sql_cannot_be_lexed_otherwise_from_startup(
    dsql_local: DsqlLocal, smuggle_target: int
) -> None:
    with pytest.raises(psycopg.OperationalError, match="standard_conforming_strings"):
        open_connection(
            dsql_local, options="-c standard_conforming_strings=off"
        ).execute(_SMUGGLED.encode())
    assert _rows_left(dsql_local) == smuggle_target
