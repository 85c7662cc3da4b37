"""The TLS front door of DSQL Local: listening, accepting, admitting, relaying.

Every accepted connection gets a thread. Until authentication it runs the
startup conversation (`_login`) with blocking reads; then a Relay takes over,
driven by a Pump. The endpoint also holds what the controls of `DsqlLocal`
act on: injected conflicts and dropped commits, dropped and cut connections.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ._backend import ADMIN
from ._faults import Faults
from ._login import STARTUP_TIMEOUT, Closed, Login, tls_context
from ._policy import StatementPolicy
from ._pump import Pump
from ._relay import Relay
from ._sigv4 import TokenVerifier
from ._startup import RATE_EXCEEDED, TOO_MANY, Refused, TokenBucket
from ._tls import TlsConnection
from ._yield import Holders, holders_for

if TYPE_CHECKING:
    # Only a type: the certificates (and cryptography) come with the [local] extra.
    from ._certs import CertFiles
    from ._schema import SchemaClock

logger = logging.getLogger("dsql_local")

# accept() failing (out of descriptors, say): retry after this, doubling to 1 s.
_ACCEPT_BACKOFF = 0.01
_GONE_BEFORE_ACCEPT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})
_LINGER_RESET = struct.pack("ii", 1, 0)


def _internal_error(exc: Exception) -> Refused:
    """The FATAL error that tells a client DSQL Local failed it."""
    return Refused("XX000", f"DSQL Local internal error: {type(exc).__name__}: {exc}")


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
            TokenBucket(connection_rate, connection_burst)
            if connection_rate is not None
            else None
        )
        self._requested_port = port
        self._ctx = tls_context(certs)
        self._lock = threading.Lock()
        self._conflicts: deque[str] = deque()
        self._commit_drops = 0
        self._relays: set[Pump] = set()
        self._threads: set[threading.Thread] = set()
        self._generation = 0
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0
        self.faults = Faults()
        # Every relay over this PostgreSQL (other endpoints' too), by backend pid.
        self.holders: Holders = holders_for(backend_socket, ADMIN)
        # Until then (time.monotonic()), accepted connections are cut at once.
        self._cut_until = 0.0

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
        with self._lock:
            generation = self._generation
        login = Login(
            self,
            sock,
            self._ctx,
            deadline=accepted + self.startup_timeout,
            generation=generation,
        )
        client: TlsConnection | None = None
        backend: socket.socket | None = None  # closed here, or by the pump
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = login.negotiate_tls()
            started = login.authenticate(client)
            backend = started.backend
            try:
                relay = Relay(
                    self, started.session, backend_pid=started.pid, key=started.key
                )
                ends = accepted + self.max_connection_age
                pump = Pump(self, client, backend, ends, relay)
                relay.set_waker(pump.wake)
            except Exception as exc:
                # The client is not told it is connected yet: a FATAL, not a
                # connection that ends at its first query.
                logger.exception("DSQL Local failed to start a relay")
                raise login.fatal(client, _internal_error(exc)) from None
            client.sendall(started.greeting)  # under the startup deadline still
            client.deadline = None  # the pump's age cap takes over
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
        except Closed:
            pass
        except (OSError, ValueError) as exc:
            logger.debug("connection ended during startup: %s", exc)
        except Exception:
            logger.exception("DSQL Local failed to serve a connection")
        finally:
            if backend is not None:
                backend.close()
            if client is not None:
                client.close()
            sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    # -- what a login asks of its endpoint ------------------------------------------

    @property
    def generation(self) -> int:
        """Bumped by `drop_connections`: a login of an older one gives up."""
        return self._generation

    def cancel_held(self, key: bytes) -> bool:
        """Cancel the statement a relay holds for the backend `key` names."""
        return self.holders.cancel_held(key)

    def admit(self) -> None:
        """Refuse the connection past DSQL's open-connection or rate limit."""
        injected = self.faults.connect_refusal()
        if injected is not None:
            raise Refused(*injected)
        with self._lock:
            # Every connection, authenticated or not yet, has a thread.
            too_many = len(self._threads) > self.max_connections
            admitted = not too_many and (
                self._admissions is None or self._admissions.take(time.monotonic())
            )
        if too_many:
            raise Refused("53300", TOO_MANY)
        if not admitted:
            raise Refused("53400", RATE_EXCEEDED)
