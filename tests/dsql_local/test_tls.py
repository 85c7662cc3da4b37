"""The endpoint's TLS (`_tls.TlsConnection`): records however the reads cut them.

A protocol-level client drives the TLS records itself here (`ssl.SSLObject`
over a real socket), to send what libpq never does on its own: a record in
pieces, many records in one write, a query in the same write as the password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator

import pytest

from dsql_local import DsqlLocal
from dsql_local import _protocol as pq

from .helpers import make_token


class RecordClient:
    """A TLS client whose every record, and where the socket cuts it, is chosen."""

    def __init__(self, local: DsqlLocal) -> None:
        ctx = ssl.create_default_context(cafile=local.ca_file)
        self.sock = socket.create_connection(("127.0.0.1", local.port), timeout=10)
        self.sock.sendall(struct.pack("!II", 8, pq.SSL_REQUEST))
        assert self.sock.recv(1) == b"S"
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._in, self._out, server_hostname=local.host)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self._out.read())
                self._in.write(self.sock.recv(65536))
        self.sock.sendall(self._out.read())
        self._plain = bytearray()

    def records(self, *messages: bytes) -> bytes:
        """Encrypt each message as a record of its own; return the bytes to send."""
        for message in messages:
            self.tls.write(message)
        return self._out.read()

    def read_message(self) -> tuple[bytes, bytes]:
        while True:
            if len(self._plain) >= 5:
                size = int.from_bytes(self._plain[1:5], "big") + 1
                if len(self._plain) >= size:
                    message = bytes(self._plain[:size])
                    del self._plain[:size]
                    return message[:1], message[5:]
            try:
                self._plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                assert data, "the endpoint closed the connection"
                self._in.write(data)

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        """The messages up to and including the next ReadyForQuery."""
        seen = [self.read_message()]
        while seen[-1][0] != b"Z":
            seen.append(self.read_message())
        return seen


@pytest.fixture
def client(dsql_local: DsqlLocal) -> Iterator[RecordClient]:
    client = RecordClient(dsql_local)
    with contextlib.closing(client.sock):
        yield client


def _start(client: RecordClient) -> None:
    client.sock.sendall(
        client.records(pq.startup_message({"user": "admin", "database": "postgres"}))
    )
    assert client.read_message()[0] == b"R"


def _log_in(client: RecordClient, local: DsqlLocal) -> None:
    _start(client)
    client.sock.sendall(
        client.records(pq.message(b"p", make_token(local).encode() + b"\0"))
    )
    client.until_ready()


def _answer(seen: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(kind, body) for kind, body in seen if kind in b"DCE"]


_SELECT_1 = [(b"D", b"\0\x01\0\0\0\x011"), (b"C", b"SELECT 1\0")]


def test_a_query_in_the_same_write_as_the_password_is_answered(
    client: RecordClient, dsql_local: DsqlLocal
) -> None:
    _start(client)
    password = pq.message(b"p", make_token(dsql_local).encode() + b"\0")
    client.sock.sendall(client.records(password, pq.query("select 1")))
    greeting = client.until_ready()
    assert greeting[0] == (b"R", b"\0\0\0\0")
    assert _answer(client.until_ready()) == _SELECT_1


def test_a_record_cut_in_pieces_is_answered_once_whole(
    client: RecordClient, dsql_local: DsqlLocal
) -> None:
    _log_in(client, dsql_local)
    record = client.records(pq.query("select 1"))
    # The header alone, then part of the body, then the rest.
    for piece in (record[:3], record[3:20], record[20:]):
        client.sock.sendall(piece)
        time.sleep(0.05)
    assert _answer(client.until_ready()) == _SELECT_1


def test_many_records_in_one_write_are_all_answered(
    client: RecordClient, dsql_local: DsqlLocal
) -> None:
    _log_in(client, dsql_local)
    client.sock.sendall(client.records(*[pq.query(f"select {n}") for n in range(50)]))
    for n in range(50):
        answer = _answer(client.until_ready())
        assert answer[1] == (b"C", b"SELECT 1\0")
        assert answer[0][1][6:] == str(n).encode()


def test_an_answer_larger_than_the_socket_takes_at_once_arrives_whole(
    client: RecordClient, dsql_local: DsqlLocal
) -> None:
    _log_in(client, dsql_local)
    client.sock.sendall(client.records(pq.query("select repeat('x', 20000000)")))
    time.sleep(0.5)  # the endpoint meets a full socket before the client reads
    answer = _answer(client.until_ready())
    assert answer[0][1][6:] == b"x" * 20_000_000
    assert answer[1] == (b"C", b"SELECT 1\0")
