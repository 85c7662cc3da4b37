"""Connection-level behaviour: dropping, the age cap, simulated latency, relay."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dsql_local import DsqlLocal, DsqlLocalError
from dsql_local import _protocol as pq
from tests.dsql_local.helpers import Connect, make_token, open_connection


def test_drop_connections_closes_every_client(
    dsql_local: DsqlLocal, connect: Connect
) -> None:
    conns = [connect(), connect(autocommit=True), connect(negotiation="postgres")]
    conns[0].execute("select 1")  # one of them inside a transaction
    dsql_local.drop_connections()
    for conn in conns:
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        assert conn.closed
    # New connections are welcome.
    assert connect().execute("select 1").fetchone() == (1,)


def test_dropped_transaction_is_rolled_back(
    dsql_local: DsqlLocal, connect: Connect
) -> None:
    setup = connect(autocommit=True)
    setup.execute("create table dropped (id int primary key)")
    conn = connect()
    conn.execute("insert into dropped values (1)")
    dsql_local.drop_connections()
    with pytest.raises(psycopg.OperationalError):
        conn.commit()
    check = connect(autocommit=True)
    assert check.execute("select count(*) from dropped").fetchone() == (0,)


@pytest.fixture
def commit_drops(dsql_local: DsqlLocal) -> Iterator[DsqlLocal]:
    yield dsql_local
    dsql_local.inject_commit_drops(0)


@pytest.mark.parametrize(
    "protocol", ["method", "simple", "prepared", "pipeline", "in-a-query"]
)
def test_commit_drop_loses_the_connection_after_committing(
    commit_drops: DsqlLocal, connect: Connect, protocol: str
) -> None:
    check = connect(autocommit=True)
    check.execute("create table committed (id int primary key)")
    conn = connect(prepare_threshold=0 if protocol == "prepared" else 5)
    conn.execute("insert into committed values (1)")
    commit_drops.inject_commit_drops(1)
    with pytest.raises(psycopg.OperationalError):  # noqa: PT012
        if protocol == "method":
            conn.commit()
        elif protocol == "simple":
            psycopg.ClientCursor(conn).execute("commit")
        elif protocol == "prepared":
            conn.execute("commit")
        elif protocol == "in-a-query":
            conn.execute("insert into committed values (2); commit; select 1")
        else:
            with conn.pipeline():
                conn.execute("insert into committed values (2)")
                conn.commit()
    assert conn.closed
    expected = [(1,), (2,)] if protocol in ("pipeline", "in-a-query") else [(1,)]
    assert check.execute("select id from committed order by id").fetchall() == expected
    # One drop was injected, one was taken.
    with connect() as again:
        again.execute("insert into committed values (3)")
    assert check.execute("select count(*) from committed").fetchone() == (
        len(expected) + 1,
    )


def test_commit_drops_count_only_commits_of_live_transactions(
    commit_drops: DsqlLocal, connect: Connect
) -> None:
    check = connect(autocommit=True)
    check.execute("create table counted (id int primary key)")
    commit_drops.inject_commit_drops(2)
    check.execute("insert into counted values (0)")
    check.execute("commit")  # no transaction in progress
    failed = connect()
    with pytest.raises(psycopg.errors.UniqueViolation):
        failed.execute("insert into counted values (0)")
    failed.commit()  # the backend answers ROLLBACK: nothing to confirm
    commit_drops.inject_conflicts(1)  # a conflict is reported instead of a drop
    with pytest.raises(psycopg.errors.SerializationFailure), failed.transaction():
        failed.execute("insert into counted values (1)")
    assert not failed.closed
    for key in (2, 3):
        conn = connect()
        conn.execute("insert into counted values (%s)", (key,))
        with pytest.raises(psycopg.OperationalError):
            conn.commit()
    with connect() as kept:
        kept.execute("insert into counted values (4)")
    rows = check.execute("select id from counted order by id").fetchall()
    assert rows == [(0,), (2,), (3,), (4,)]
    with pytest.raises(DsqlLocalError, match="zero or more"):
        commit_drops.inject_commit_drops(-1)


def read_message(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    header = b""
    while len(header) < 5:
        header += sock.recv(5 - len(header))
    size = int.from_bytes(header[1:], "big") - 4
    body = b""
    while len(body) < size:
        body += sock.recv(size - len(body))
    return header[:1], body


def raw_session(local: DsqlLocal) -> ssl.SSLSocket:
    """A protocol-level client: TLS, token, and nothing in the way."""
    ctx = ssl.create_default_context(cafile=local.ca_file)
    sock = socket.create_connection(("127.0.0.1", local.port), timeout=10)
    sock.sendall(struct.pack("!II", 8, pq.SSL_REQUEST))
    assert sock.recv(1) == b"S"
    tls = ctx.wrap_socket(sock, server_hostname=local.host)
    tls.sendall(pq.startup_message({"user": "admin", "database": "postgres"}))
    assert read_message(tls)[0] == b"R"
    tls.sendall(pq.message(b"p", make_token(local).encode() + b"\0"))
    while read_message(tls)[0] != b"Z":
        pass
    return tls


def test_queries_sent_behind_a_split_query_wait_their_turn(
    dsql_local: DsqlLocal, connect: Connect, dsql_schema: str
) -> None:
    table = f"{dsql_schema}.queued"
    connect(autocommit=True).execute(f"create table {table} (id int primary key)")
    with contextlib.closing(raw_session(dsql_local)) as sock:
        # Two Query messages in one write: the first one runs in pieces.
        sock.sendall(
            pq.query(f"begin; insert into {table} values (1); commit")
            + pq.query(f"select count(*) from {table}")
        )
        seen: list[tuple[bytes, bytes]] = []
        while sum(kind == b"Z" for kind, _ in seen) < 2:
            seen.append(read_message(sock))
    answers = [(kind, body.rstrip(b"\0")) for kind, body in seen if kind in b"CDZE"]
    assert answers == [
        (b"C", b"BEGIN"),
        (b"C", b"INSERT 0 1"),
        (b"C", b"COMMIT"),
        (b"Z", b"I"),
        (b"D", b"\0\x01\0\0\0\x011"),
        (b"C", b"SELECT 1"),
        (b"Z", b"I"),
    ]


def test_connections_are_closed_at_the_age_cap() -> None:
    with DsqlLocal(strict=False, max_connection_age=3.0) as local:
        conn = open_connection(local, autocommit=True)
        assert conn.execute("select 1").fetchone() == (1,)
        time.sleep(3.5)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("select 1")
        assert "maximum connection age" in str(info.value)
        assert conn.closed
        # The cap counts from each connection's start.
        with open_connection(local) as fresh:
            assert fresh.execute("select 2").fetchone() == (2,)


def test_connection_rate_limit_answers_like_dsql() -> None:
    # One new connection every 4 s after a burst of 2. A loaded machine may
    # take long enough per connect to earn a third: keep opening until refused.
    with DsqlLocal(strict=False, connection_rate=0.25, connection_burst=2) as local:
        conns = [open_connection(local), open_connection(local)]
        with pytest.raises(psycopg.OperationalError) as info:  # noqa: PT012
            for _ in range(5):
                conns.append(open_connection(local))
        assert "Unable to accept connection, rate exceeded." in str(info.value)
        time.sleep(4.1)
        open_connection(local).close()
        for conn in conns:  # the refusal left the open ones alone
            assert conn.execute("select 1").fetchone() == (1,)
            conn.close()


def test_open_connection_limit_answers_like_dsql() -> None:
    with DsqlLocal(strict=False, max_connections=2) as local:
        first, second = open_connection(local), open_connection(local)
        with pytest.raises(psycopg.OperationalError) as info:
            open_connection(local)
        assert "too many open connections" in str(info.value)
        first.close()
        deadline = time.monotonic() + 30  # a safety net, not a goal
        while True:  # the slot frees once the endpoint sees the close
            try:
                third = open_connection(local)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert third.execute("select 1").fetchone() == (1,)
        third.close()
        second.close()


@pytest.fixture
def descriptors() -> Iterator[None]:
    """Room for ~300 connections with both ends in this process (3 each),
    and for what the client and the endpoint open beside them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip("the descriptor limit is too low")
    room = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, room), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("descriptors")
def test_backend_connection_cap_answers_like_dsql(dsql_local: DsqlLocal) -> None:
    # The private PostgreSQL's own max_connections (300) comes first here.
    token = make_token(dsql_local)
    held: list[psycopg.Connection[Any]] = []
    refusal: psycopg.OperationalError | None = None
    try:
        for _ in range(400):
            try:
                held.append(open_connection(dsql_local, token=token))
            except psycopg.OperationalError as exc:
                refusal = exc
                break
        assert refusal is not None
        assert "too many open connections" in str(refusal)
        assert len(held) > 200
    finally:
        for conn in held:
            conn.close()
    # Let the backend processes end before the next test needs their slots.
    with open_connection(dsql_local, token=token, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where backend_type = 'client backend'"
            ).fetchone()
            if row is not None and row[0] < 20:
                break
            time.sleep(0.05)


def test_connection_limits_are_validated() -> None:
    with pytest.raises(DsqlLocalError, match="max_connections"):
        DsqlLocal(max_connections=0)
    with pytest.raises(DsqlLocalError, match="connection_rate"):
        DsqlLocal(connection_rate=0)
    with pytest.raises(DsqlLocalError, match="connection_burst"):
        DsqlLocal(connection_burst=0)


def test_latency_is_added_to_every_round_trip(
    dsql_local: DsqlLocal, connect: Connect
) -> None:
    conn = connect(autocommit=True)
    dsql_local.latency = 0.1
    try:
        start = time.monotonic()
        for _ in range(5):
            conn.execute("select 1")
        elapsed = time.monotonic() - start
    finally:
        dsql_local.latency = 0.0
    assert elapsed >= 0.5
    assert dsql_local.latency == 0.0


@pytest.mark.parametrize(
    ("negotiation", "round_trips"), [("direct", 3), ("postgres", 4)]
)
def test_latency_applies_to_the_connection_handshake(
    dsql_local: DsqlLocal, negotiation: str, round_trips: int
) -> None:
    # Direct TLS: ClientHello, startup, password. Classic: one more, SSLRequest.
    token = make_token(dsql_local)
    dsql_local.latency = 0.15
    try:
        start = time.monotonic()
        open_connection(dsql_local, token=token, negotiation=negotiation).close()
        elapsed = time.monotonic() - start
    finally:
        dsql_local.latency = 0.0
    assert elapsed >= round_trips * 0.15


def test_latency_rejects_negative_values(dsql_local: DsqlLocal) -> None:
    with pytest.raises(DsqlLocalError):
        dsql_local.latency = -1


def test_large_results_and_copy_pass_through(connect: Connect) -> None:
    conn = connect(autocommit=True)
    big = "x" * (3 * 1024 * 1024)
    assert conn.execute("select %s::text", [big]).fetchone() == (big,)
    conn.execute("create table bulk (id int primary key, payload text)")
    # Under DSQL's 3,000-row limit, over the relay's 4 MiB high-water mark.
    payload = "y" * 2000
    with conn.cursor().copy("copy bulk from stdin") as copy:
        for i in range(2900):
            copy.write_row((i, payload))
    rows = conn.execute("select count(*), max(id) from bulk").fetchone()
    assert rows == (2900, 2899)
    with conn.cursor().copy("copy bulk to stdout") as copy:
        out = b"".join(bytes(block) for block in copy)
    assert out.count(b"\n") == 2900
    assert len(out) > 5_000_000


def test_pipeline_with_many_statements(connect: Connect) -> None:
    conn = connect()
    conn.execute("create table piped (id int primary key, v text)")
    conn.commit()
    with conn.pipeline(), conn.cursor() as cur:
        cur.executemany(
            "insert into piped values (%s, %s)", [(i, "v" * 200) for i in range(2500)]
        )
    conn.commit()
    assert conn.execute("select count(*) from piped").fetchone() == (2500,)


def test_autocommit_executemany_after_a_transaction_s_pipeline_completes(
    connect: Connect,
) -> None:
    """Guarded writes pipelined in a transaction, an autocommit DELETE, then an
    autocommit executemany(): the relay of ac0ffb4 never answered the last."""
    conn = connect(autocommit=True)
    conn.execute("create table em_rounds (id int primary key, n int not null)")
    cur = conn.cursor()
    failures: list[BaseException] = []

    def rounds() -> None:
        try:
            for _ in range(2):
                conn.execute("delete from em_rounds")
                cur.executemany(
                    "insert into em_rounds values (%s, %s)", [(i, i) for i in range(5)]
                )
                with conn.transaction():
                    cur.executemany(
                        "update em_rounds set n = n + 1 where id = %s",
                        [(i,) for i in range(20)],
                    )
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    worker = threading.Thread(target=rounds, daemon=True)
    worker.start()
    worker.join(60)  # a hang detector, not a measure of speed
    if worker.is_alive():
        # Unblock the worker: end the connection under it.
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        worker.join(10)
        pytest.fail("the relay never answered the autocommit executemany()")
    assert failures == []
    assert conn.execute("select sum(n) from em_rounds").fetchone() == (15,)


def test_backend_errors_pass_through_unchanged(connect: Connect) -> None:
    conn = connect(autocommit=True)
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        conn.execute("select * from no_such_table")
    assert info.value.diag.message_primary == 'relation "no_such_table" does not exist'
    assert info.value.diag.statement_position == "15"


def test_cancel_reaches_the_backend(connect: Connect) -> None:
    conn = connect(autocommit=True)
    timer = threading.Timer(0.5, conn.cancel_safe)
    timer.start()
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(20)")
    finally:
        timer.cancel()
    assert conn.execute("select 1").fetchone() == (1,)


def _endpoint_end(client: int) -> int | None:
    """This process's descriptor for the endpoint's end of TCP socket `client`."""
    with socket.socket(fileno=os.dup(client)) as sock:
        client_port, endpoint_port = sock.getsockname()[1], sock.getpeername()[1]
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if (int(local, 16), int(remote, 16)) == (endpoint_port, client_port):
                inodes.add(f"socket:[{fields[9]}]")
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") in inodes:
                return int(name)
    return None


def test_descriptors_above_1023_work(dsql_local: DsqlLocal) -> None:
    # select() cannot watch them; the endpoint must not depend on it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Enough hogs to push the next descriptors past 1023, and room above
    # them for the connection's own, whatever earlier tests left open.
    open_now = len(os.listdir("/proc/self/fd"))
    wanted = max(soft, open_now + 1100 + 200)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip("the descriptor limit is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    hogs: list[socket.socket] = []
    held: list[psycopg.Connection[Any]] = []
    try:
        while not hogs or hogs[-1].fileno() < 1100:
            hogs.append(socket.socket())
        # An earlier test's connection is closed by its endpoint thread, in
        # its own time: a descriptor it closes after the hogs were made is a
        # hole below 1024, which the next socket takes (the client's or the
        # endpoint's). Each connection that lands in one fills it; there are
        # no more holes than descriptors were open before the hogs.
        for _ in range(open_now + 1):
            held.append(open_connection(dsql_local))
            client = held[-1].pgconn.socket
            endpoint = None if dsql_local.own_process else _endpoint_end(client)
            assert dsql_local.own_process or endpoint is not None
            if client > 1023 and (endpoint is None or endpoint > 1023):
                break
        else:
            pytest.fail("no connection got descriptors above 1023")
        for conn in held:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        for conn in held:
            conn.close()
        for hog in hogs:
            hog.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _backend_sessions(local: DsqlLocal, application_name: str) -> int:
    """The backend's sessions of `application_name`, once they stop ending."""
    with psycopg.connect(local.backend_dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            row = conn.execute(
                "select count(*) from pg_stat_activity where application_name = %s",
                (application_name,),
            ).fetchone()
            assert row is not None
            if row[0] == 0 or time.monotonic() > deadline:
                return int(row[0])
            time.sleep(0.05)


@pytest.mark.parametrize("failing", ["Relay", "Pump"])
def test_a_relay_that_cannot_start_closes_its_backend_session(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The backend session is open when the relay and its pump are built:
    if that fails, the session ends and the client reads a FATAL error."""
    if dsql_local.own_process:
        pytest.skip("the endpoint runs in a process of its own: not patched")
    from dsql_local import _endpoint  # noqa: PLC0415

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("built to fail")

    monkeypatch.setattr(_endpoint, failing, broken)
    name = f"cannot-start-{failing}"
    with pytest.raises(psycopg.OperationalError) as info:
        open_connection(dsql_local, application_name=name)
    monkeypatch.undo()
    assert "DSQL Local internal error: RuntimeError: built to fail" in str(info.value)
    assert _backend_sessions(dsql_local, name) == 0
    with open_connection(dsql_local, application_name=name) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
