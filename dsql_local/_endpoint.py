"""The TLS front door of DSQL Local: negotiation, IAM token check, relay start.

Every accepted connection gets a thread. Until authentication it runs the
startup conversation with blocking reads; then a Relay takes over.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from . import _protocol as pq
from ._backend import ADMIN
from ._faults import Faults
from ._policy import Session, StatementPolicy
from ._pump import Pump
from ._relay import Relay
from ._sigv4 import TokenError, TokenVerifier
from ._strict_rules import RULES_BY_NAME
from ._tls import TlsConnection
from ._yield import Holders, holders_for

if TYPE_CHECKING:
    # Only a type: the certificates (and cryptography) come with the [local] extra.
    from ._certs import CertFiles
    from ._schema import SchemaClock

logger = logging.getLogger("dsql_local")

_ALPN = "postgresql"
# From accept to authenticated, however the client paces its bytes.
STARTUP_TIMEOUT = 30.0
# accept() failing (out of descriptors, say): retry after this, doubling to 1 s.
_ACCEPT_BACKOFF = 0.01
_GONE_BEFORE_ACCEPT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})
_MAX_STARTUP = 10_000
# Startup parameters that are DSQL Local's business, not the backend's.
_NOT_FORWARDED = frozenset({"replication"})
# How long a write may wait for a row lock before the relay answers it as
# DSQL would (see `_relay`): PostgreSQL's brief waits of its own (a table's
# extension) fit in it; a refusal that was not a conflict only costs a replay.
_LOCK_TIMEOUT = "10ms"
_TOO_MANY = "Unable to accept connection, too many open connections."
_RATE_EXCEEDED = "Unable to accept connection, rate exceeded."
_LINGER_RESET = struct.pack("ii", 1, 0)
# What PostgreSQL answers a startup for a role it does not have.
_INVALID_AUTHORIZATION = "28000"


class _Closed(Exception):
    """The client went away or was answered with a FATAL; stop quietly."""


class _TokenBucket:
    """Admit `rate` events per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one; the caller holds the lock."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Endpoint:
    """Listen on 127.0.0.1 and relay authenticated clients to the backend."""

    def __init__(
        self,
        *,
        certs: CertFiles,
        verifier: TokenVerifier,
        backend_socket: str,
        port: int = 0,
        max_connection_age: float = 3600.0,
        latency: float = 0.0,
        policy: StatementPolicy | None = None,
        schema_clock: SchemaClock | None = None,
        max_connections: int = 10_000,
        connection_rate: float | None = 100.0,
        connection_burst: int = 1_000,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.verifier = verifier
        self.startup_timeout = startup_timeout
        self.backend_socket = backend_socket
        self.max_connection_age = max_connection_age
        self.latency = latency
        self.policy = policy
        # The backend's PostgreSQL major version, once a session has said it.
        self.backend_major: int | None = None
        # Shared by every endpoint over the same backend, as DSQL's catalog is.
        self.schema_clock = schema_clock
        self.max_connections = max_connections
        self._admissions = (
            _TokenBucket(connection_rate, connection_burst)
            if connection_rate is not None
            else None
        )
        self._requested_port = port
        self._ctx = self._tls_context(certs)
        self._lock = threading.Lock()
        self._conflicts: deque[str] = deque()
        self._commit_drops = 0
        self._relays: set[Pump] = set()
        self._threads: set[threading.Thread] = set()
        self._generation = 0
        # Per connection thread: its generation and startup deadline.
        self._state = threading.local()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0
        self.faults = Faults()
        # Every relay over this PostgreSQL (other endpoints' too), by backend pid.
        self.holders: Holders = holders_for(backend_socket, ADMIN)
        # Until then (time.monotonic()), accepted connections are cut at once.
        self._cut_until = 0.0

    @staticmethod
    def _tls_context(certs: CertFiles) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(Path(certs.cert_file), Path(certs.key_file))
        ctx.set_alpn_protocols([_ALPN])

        def remember_sni(
            sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: ssl.SSLContext
        ) -> None:
            setattr(sock, "dsql_sni", name)  # noqa: B010

        ctx.sni_callback = remember_sni
        return ctx

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._listen(self._requested_port)

    def _listen(self, port: int) -> None:
        listener = socket.create_server(("127.0.0.1", port), backlog=512)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="dsql-local-accept", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for their threads."""
        self.suspend()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def suspend(self) -> None:
        """Stop listening and cut every connection, as if the process died."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        self.drop_connections()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def resume(self) -> None:
        """Listen again, on the same port, after `suspend`."""
        if self._listener is None:
            self._listen(self.port)

    def cut(self, seconds: float) -> None:
        """Cut every connection, and each new one at once, for `seconds`."""
        with self._lock:
            self._cut_until = time.monotonic() + seconds
        self.drop_connections()

    def _accept_loop(self) -> None:
        """Accept until stopped; out of descriptors or threads, wait and go on."""
        listener = self._listener
        assert listener is not None
        backoff = _ACCEPT_BACKOFF
        while True:
            try:
                sock, _ = listener.accept()
            except OSError as exc:
                if self._listener is not listener:
                    return  # stopped
                if exc.errno in _GONE_BEFORE_ACCEPT:
                    continue
                logger.warning(
                    "DSQL Local cannot accept connections for now (%s);"
                    " retrying in %g s",
                    exc.strerror,
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = _ACCEPT_BACKOFF
            if self._cut_until and time.monotonic() < self._cut_until:
                # An abortive close: the client reads a reset, not a goodbye.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                sock.close()
                continue
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="dsql-local-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            try:
                thread.start()
            except RuntimeError as exc:  # no more threads
                with self._lock:
                    self._threads.discard(thread)
                sock.close()
                logger.warning("DSQL Local cannot serve a connection: %s", exc)
                time.sleep(backoff)

    # -- controls ---------------------------------------------------------------

    def inject_conflicts(self, count: int, code: str) -> None:
        with self._lock:
            self._conflicts = deque([code] * count)

    def take_conflict(self) -> str | None:
        with self._lock:
            return self._conflicts.popleft() if self._conflicts else None

    def inject_commit_drops(self, count: int) -> None:
        with self._lock:
            self._commit_drops = count

    def take_commit_drop(self) -> bool:
        with self._lock:
            if self._commit_drops <= 0:
                return False
            self._commit_drops -= 1
            return True

    def drop_connections(self) -> None:
        with self._lock:
            self._generation += 1
            relays = list(self._relays)
        for relay in relays:
            relay.kill()

    # -- one connection -----------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        accepted = time.monotonic()
        self._state.deadline = accepted + self.startup_timeout
        with self._lock:
            generation = self._state.generation = self._generation
        client: TlsConnection | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = self._negotiate_tls(sock)
            pump, relay = self._authenticate(client, accepted)
            with self._lock:
                if generation != self._generation:
                    pump.kill()
                self._relays.add(pump)
            self.holders.add(relay.backend_pid, relay)
            try:
                pump.run()
            finally:
                self.holders.discard(relay.backend_pid)
                with self._lock:
                    self._relays.discard(pump)
        except _Closed:
            pass
        except (OSError, ValueError) as exc:
            logger.debug("connection ended during startup: %s", exc)
        except Exception:
            logger.exception("DSQL Local failed to serve a connection")
        finally:
            if client is not None:
                client.close()
            sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _remaining(self, sock: socket.socket | TlsConnection) -> float:
        """Seconds left to finish startup; set them as `sock`'s timeout.

        Past the deadline the connection is closed, so that a client cannot
        hold a thread and a descriptor by sending its startup slowly.
        """
        remaining: float = self._state.deadline - time.monotonic()
        if remaining <= 0:
            logger.info(
                "closed a connection that did not finish startup in %g s",
                self.startup_timeout,
            )
            raise _Closed
        sock.settimeout(remaining)
        return remaining

    def _wait(self, sock: socket.socket | TlsConnection) -> None:
        """Wait for data from the client, then for the simulated latency.

        Gives up when the connection is dropped, the endpoint stops or the
        startup deadline passes.
        """
        poller = select.poll()  # not select(): descriptors may exceed 1023
        poller.register(sock.fileno(), select.POLLIN)
        while not (isinstance(sock, TlsConnection) and sock.pending):
            if self._state.generation != self._generation:
                raise _Closed
            wait_ms = min(200, math.ceil(self._remaining(sock) * 1000))
            if poller.poll(wait_ms):
                break
        if self.latency > 0:
            time.sleep(self.latency)

    def _read(self, sock: socket.socket | TlsConnection, size: int) -> bytes:
        """Read `size` bytes from the client before the startup deadline."""
        data = bytearray()
        while len(data) < size:
            self._remaining(sock)
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise _Closed
            data += chunk
        return bytes(data)

    @staticmethod
    def _recv_exact(sock: socket.socket, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise _Closed
            data += chunk
        return bytes(data)

    def _fatal(
        self,
        sock: socket.socket | TlsConnection,
        sqlstate: str,
        text: str,
        detail: str | None = None,
    ) -> _Closed:
        with contextlib.suppress(OSError):
            sock.sendall(
                pq.error_response(sqlstate, text, severity="FATAL", detail=detail)
            )
        return _Closed()

    def _negotiate_tls(self, sock: socket.socket) -> TlsConnection:
        while True:
            self._wait(sock)
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                raise _Closed
            if first == b"\x16":
                return self._handshake(sock, direct=True)
            length, code = _len_code(self._read(sock, 8))
            if length == 8 and code == pq.SSL_REQUEST:
                sock.sendall(b"S")
                self._wait(sock)
                return self._handshake(sock, direct=False)
            if length == 8 and code == pq.GSSENC_REQUEST:
                sock.sendall(b"N")
                continue
            if length == 16 and code == pq.CANCEL_REQUEST:
                self._cancel(self._read(sock, 8))
                raise _Closed
            rule = RULES_BY_NAME["plaintext-startup"]
            raise self._fatal(
                sock,
                rule.sqlstate,
                rule.message,
                detail="DSQL takes TLS connections only: connect with"
                " sslmode=verify-full",
            )

    def _handshake(self, sock: socket.socket, *, direct: bool) -> TlsConnection:
        self._remaining(sock)  # the handshake as a whole must fit in it
        client = TlsConnection(sock, self._ctx)
        client.deadline = self._state.deadline
        try:
            client.handshake()
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake failed: %s", exc)
            raise _Closed from None
        if direct and client.selected_alpn_protocol() != _ALPN:
            # As PostgreSQL does: direct TLS without ALPN could be another
            # protocol's client.
            client.close()
            raise _Closed
        return client

    def _authenticate(
        self, client: TlsConnection, accepted: float
    ) -> tuple[Pump, Relay]:
        self._wait(client)
        length, version = _len_code(self._read(client, 8))
        if version == pq.CANCEL_REQUEST and length == 16:
            self._cancel(self._read(client, 8))
            raise _Closed
        if not 8 < length <= _MAX_STARTUP or version >> 16 != 3:
            raise self._fatal(client, "08P01", "invalid startup packet")
        params = pq.parse_startup(self._read(client, length - 8))
        user = params.get("user", "")
        if not user:
            raise self._fatal(client, "28000", "no user name in the startup packet")
        sni = client.sni
        if not sni:
            raise self._fatal(
                client, "08004", "unable to accept connection, sni was not received"
            )
        self._admit(client)

        client.sendall(pq.auth_cleartext_request())
        self._wait(client)
        kind, size = _kind_len(self._read(client, 5))
        if kind != b"p" or not 4 < size <= 65_536:
            raise self._fatal(client, "08P01", "expected a password message")
        token = self._read(client, size - 4).rstrip(b"\0").decode("utf-8", "replace")
        try:
            self.verifier.verify(token, user=user, server_name=sni)
        except TokenError as exc:
            logger.info("refused user %r: %s", user, exc.reason)
            raise self._fatal(
                client,
                exc.sqlstate,
                f'IAM authentication failed for user "{user}": {exc.reason}',
            ) from None

        refusal = self.policy.check_startup(params) if self.policy else None
        if refusal is not None:
            raise self._fatal(client, refusal.sqlstate, refusal.message)
        backend, pid = self._connect_backend(client, params, version)
        session = Session(user=user, backend_major=self.backend_major)
        client.deadline = None  # the pump's age cap takes over
        relay = Relay(self, session, backend_pid=pid)
        pump = Pump(self, client, backend, accepted + self.max_connection_age, relay)
        relay.set_waker(pump.wake)
        return pump, relay

    def _admit(self, client: TlsConnection) -> None:
        """Refuse the connection past DSQL's open-connection or rate limit."""
        injected = self.faults.connect_refusal()
        if injected is not None:
            raise self._fatal(client, *injected)
        with self._lock:
            # Every connection, authenticated or not yet, has a thread.
            too_many = len(self._threads) > self.max_connections
            admitted = not too_many and (
                self._admissions is None or self._admissions.take()
            )
        if too_many:
            raise self._fatal(client, "53300", _TOO_MANY)
        if not admitted:
            raise self._fatal(client, "53400", _RATE_EXCEEDED)

    def _connect_backend(
        self, client: TlsConnection, params: dict[str, str], version: int
    ) -> tuple[socket.socket, int]:
        """Start a backend session for `params`; relay its greeting to the client.

        Returns the backend connection and its process id.
        """
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.settimeout(STARTUP_TIMEOUT)
            backend.connect(self.backend_socket)
            forwarded = {k: v for k, v in params.items() if k not in _NOT_FORWARDED}
            # Nothing waits in DSQL: a write that meets another transaction's
            # row gives up at once and is answered, then judged at COMMIT.
            forwarded["options"] = (
                f"-c lock_timeout={_LOCK_TIMEOUT} " + forwarded.get("options", "")
            ).strip()
            pid = 0
            backend.sendall(pq.startup_message(forwarded, version))
            greeting = bytearray()
            while True:
                kind, size = _kind_len(self._recv_exact(backend, 5))
                body = self._recv_exact(backend, size - 4)
                greeting += kind + pq.INT32.pack(size) + body
                if kind == b"K" and len(body) >= 4:
                    (pid,) = pq.INT32.unpack_from(body)
                if kind == b"S":
                    try:
                        pq.check_parameter_status(body)
                    except pq.ProtocolViolation as exc:
                        raise self._fatal(client, exc.sqlstate, exc.message) from None
                    major = _server_major(body)
                    if major is not None:
                        self.backend_major = major
                if kind == b"Z":
                    break
                if kind == b"E":
                    fields = pq.parse_fields(body)
                    if fields.get("C") == "53300":
                        # The backend's own cap (max_connections) came first.
                        raise self._fatal(client, "53300", _TOO_MANY)
                    if fields.get("C") == _INVALID_AUTHORIZATION:
                        # A role that does not exist, with a valid token.
                        rule = RULES_BY_NAME["unknown-role"]
                        raise self._fatal(
                            client, rule.sqlstate, rule.message, fields.get("M")
                        )
                    client.sendall(greeting)
                    raise _Closed
            client.sendall(greeting)
            backend.settimeout(None)
        except BaseException:
            backend.close()
            raise
        return backend, pid

    def _cancel(self, key: bytes) -> None:
        """Pass a CancelRequest (process id and secret key) to the backend."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as backend:
            backend.settimeout(5)
            try:
                backend.connect(self.backend_socket)
                backend.sendall(
                    pq.INT32.pack(16) + pq.INT32.pack(pq.CANCEL_REQUEST) + key
                )
                backend.recv(1)
            except OSError:
                pass


def _server_major(body: bytes) -> int | None:
    """The major version a ParameterStatus ``server_version`` body gives."""
    name, _, rest = body.partition(b"\0")
    if name != b"server_version":
        return None
    digits = re.match(rb"\d+", rest)
    return int(digits.group()) if digits else None


def _len_code(data: bytes) -> tuple[int, int]:
    """Split the 8 leading bytes of a startup-phase packet: length and code."""
    length, code = pq.INT32.unpack_from(data, 0)[0], pq.INT32.unpack_from(data, 4)[0]
    return length, code


def _kind_len(data: bytes) -> tuple[bytes, int]:
    """Split a message header: type byte and length."""
    return data[:1], pq.INT32.unpack_from(data, 1)[0]
