"""One client's startup conversation, from its first byte until the relay.

TLS negotiation (SSLRequest or direct TLS), the startup packet, the password
exchange and its IAM token check, then the backend session and its greeting,
with blocking reads bound by the startup deadline. What to answer is decided
in `_startup`; the endpoint (`_endpoint`) starts a `Login` per connection and,
once it is done, a relay.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from typing_extensions import Protocol

from . import _protocol as pq
from . import _startup as st
from ._policy import Session, StatementPolicy
from ._sigv4 import TokenError, TokenVerifier
from ._tls import TlsConnection

if TYPE_CHECKING:
    # Only a type: the certificates (and cryptography) come with the [local] extra.
    from ._certs import CertFiles

logger = logging.getLogger("dsql_local")

_ALPN = "postgresql"
# From accept to authenticated, however the client paces its bytes (the
# endpoint's default); the backend's own startup is given as long.
STARTUP_TIMEOUT = 30.0


class Closed(Exception):
    """The client went away or was answered with a FATAL; stop quietly."""


class Authenticated(NamedTuple):
    """A client authenticated, and its backend session started."""

    backend: socket.socket
    pid: int
    """The backend's process id."""
    session: Session
    greeting: bytes
    """The backend's answer to the startup, up to its ReadyForQuery."""
    key: bytes
    """The backend's process id and secret, which a CancelRequest names."""

    def __repr__(self) -> str:
        # Not the greeting nor the key: both hold the backend's cancel secret.
        return f"Authenticated(pid={self.pid}, user={self.session.user!r})"


class LoginHost(Protocol):
    """What a login needs from the endpoint that accepted the connection."""

    verifier: TokenVerifier
    backend_socket: str
    startup_timeout: float
    latency: float
    policy: StatementPolicy | None
    backend_major: int | None

    @property
    def generation(self) -> int:
        """Bumped each time the endpoint drops its connections."""
        ...

    def admit(self) -> None:
        """Raise `_startup.Refused` past the open-connection or rate limit."""
        ...

    def cancel_held(self, key: bytes) -> bool:
        """Cancel the statement a relay holds for the backend `key` names;
        whether it held one (see `_solo`)."""
        ...


def tls_context(certs: CertFiles) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or newer, ALPN, SNI remembered."""
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


class Login:
    """The startup of one accepted connection, before `deadline`.

    `negotiate_tls` then `authenticate`; either raises `Closed` when the
    connection is to end (a FATAL sent, if there was one to send).
    """

    def __init__(
        self,
        host: LoginHost,
        sock: socket.socket,
        ctx: ssl.SSLContext,
        *,
        deadline: float,
        generation: int,
    ) -> None:
        self._host = host
        self._sock = sock
        self._ctx = ctx
        self._deadline = deadline
        self._generation = generation

    def negotiate_tls(self) -> TlsConnection:
        """Answer SSL/GSS requests until the client's TLS handshake is done."""
        try:
            return self._negotiate_tls()
        except st.Refused as refused:
            raise self.fatal(self._sock, refused) from None

    def authenticate(self, client: TlsConnection) -> Authenticated:
        """Read the startup packet, check the token, start the backend session.

        The backend's greeting is not sent yet: the caller sends it once the
        relay is ready, or `fatal` instead. The backend connection is the
        caller's to close.
        """
        try:
            return self._authenticate(client)
        except st.Refused as refused:
            raise self.fatal(client, refused) from None

    def _negotiate_tls(self) -> TlsConnection:
        sock = self._sock
        while True:
            self._wait(sock)
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                raise Closed
            if first == b"\x16":
                return self._handshake(direct=True)
            asked = st.before_tls(*st.len_code(self._read(sock, 8)))
            if asked == "ssl":
                sock.sendall(b"S")
                self._wait(sock)
                return self._handshake(direct=False)
            if asked == "gssenc":
                sock.sendall(b"N")
                continue
            self._cancel(self._read(sock, 8))
            raise Closed

    def _handshake(self, *, direct: bool) -> TlsConnection:
        self._remaining(self._sock)  # the handshake as a whole must fit in it
        client = TlsConnection(self._sock, self._ctx)
        client.deadline = self._deadline
        try:
            client.handshake()
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake failed: %s", exc)
            raise Closed from None
        if direct and client.selected_alpn_protocol() != _ALPN:
            # As PostgreSQL does: direct TLS without ALPN could be another
            # protocol's client.
            client.close()
            raise Closed
        return client

    def _authenticate(self, client: TlsConnection) -> Authenticated:
        self._wait(client)
        length, version = st.len_code(self._read(client, 8))
        if st.is_cancel(length, version):
            self._cancel(self._read(client, 8))
            raise Closed
        st.check_startup_header(length, version)
        params = pq.parse_startup(self._read(client, length - 8))
        user, sni = st.user_and_server(params, client.sni)
        self._host.admit()

        client.sendall(pq.auth_cleartext_request())
        self._wait(client)
        size = st.password_size(*st.kind_len(self._read(client, 5)))
        token = st.password(self._read(client, size))
        try:
            self._host.verifier.verify(token, user=user, server_name=sni)
        except TokenError as exc:
            logger.info("refused user %r: %s", user, exc.reason)
            raise st.Refused(
                exc.sqlstate,
                f'IAM authentication failed for user "{user}": {exc.reason}',
            ) from None

        policy = self._host.policy
        refusal = policy.check_startup(params) if policy else None
        if refusal is not None:
            raise st.Refused(refusal.sqlstate, refusal.message)
        backend, greeting = self._connect_backend(client, params, version)
        session = Session(user=user, backend_major=self._host.backend_major)
        return Authenticated(
            backend, greeting.pid, session, bytes(greeting.data), greeting.key
        )

    def _connect_backend(
        self, client: TlsConnection, params: dict[str, str], version: int
    ) -> tuple[socket.socket, st.Greeting]:
        """Start a backend session for `params` and read its greeting.

        Returns the backend connection and its greeting, not sent yet (a
        refusal is sent at once: it ends the startup).
        """
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.settimeout(STARTUP_TIMEOUT)
            backend.connect(self._host.backend_socket)
            backend.sendall(pq.startup_message(st.backend_parameters(params), version))
            greeting = st.Greeting()
            done = False
            while not done:
                kind, size = st.kind_len(_recv_exact(backend, 5))
                try:
                    done = greeting.add(kind, _recv_exact(backend, size - 4))
                except st.BackendRefused:
                    client.sendall(greeting.data)
                    raise Closed from None
                if greeting.major is not None:
                    self._host.backend_major = greeting.major
            backend.settimeout(None)
        except BaseException:
            backend.close()
            raise
        return backend, greeting

    def _cancel(self, key: bytes) -> None:
        """Pass a CancelRequest (process id and secret key) to the backend.

        Unless the statement to cancel has not reached it: held by its relay.
        """
        if self._host.cancel_held(key):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as backend:
            backend.settimeout(5)
            try:
                backend.connect(self._host.backend_socket)
                backend.sendall(
                    pq.INT32.pack(16) + pq.INT32.pack(pq.CANCEL_REQUEST) + key
                )
                backend.recv(1)
            except OSError:
                pass

    # -- reading before the deadline ----------------------------------------------

    def _remaining(self, sock: socket.socket | TlsConnection) -> float:
        """Seconds left to finish startup; set them as `sock`'s timeout.

        Past the deadline the connection is closed, so that a client cannot
        hold a thread and a descriptor by sending its startup slowly.
        """
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            logger.info(
                "closed a connection that did not finish startup in %g s",
                self._host.startup_timeout,
            )
            raise Closed
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
            if self._generation != self._host.generation:
                raise Closed
            wait_ms = min(200, math.ceil(self._remaining(sock) * 1000))
            if poller.poll(wait_ms):
                break
        if self._host.latency > 0:
            time.sleep(self._host.latency)

    def _read(self, sock: socket.socket | TlsConnection, size: int) -> bytes:
        """Read `size` bytes from the client before the startup deadline."""
        data = bytearray()
        while len(data) < size:
            self._remaining(sock)
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise Closed
            data += chunk
        return bytes(data)

    @staticmethod
    def fatal(sock: socket.socket | TlsConnection, refused: st.Refused) -> Closed:
        """Send the client `refused`'s FATAL error; return the `Closed` to raise."""
        with contextlib.suppress(OSError):
            sock.sendall(refused.response())
        return Closed()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise Closed
        data += chunk
    return bytes(data)
