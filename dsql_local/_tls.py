"""TLS over a plain socket through memory buffers: one system call per read.

`ssl.SSLSocket` reads each record's header and body in two system calls and
asks again for what is pending. `TlsConnection` takes whatever the socket
holds into a `ssl.MemoryBIO` in one call and decrypts every whole record
from there; what it encrypts goes out in one call too. For a relay that
answers one small message per round trip this is most of what TLS costs it
(docs/benchmarks.md, "DSQL Local's relay").

The startup conversation uses it blocking (`handshake`, `recv`, `sendall`),
each system call under what is left until `deadline`, so that a client
dripping its bytes cannot hold the connection past it; a pump uses it
non-blocking (`receive`, `queue`, `flush`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

_CHUNK = 256 * 1024


class TlsConnection:
    """The server side of one TLS connection on `sock`."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # Encrypted bytes the socket did not take yet.
        self.unsent = bytearray()
        self.deadline: float | None = None
        """When blocking calls give up (`time.monotonic()`); None: the timeout's."""

    def __repr__(self) -> str:
        return f"<TlsConnection fd={self.sock.fileno()}>"

    @property
    def sni(self) -> str | None:
        """The server name the client asked for (set by the context's callback)."""
        name: str | None = getattr(self._tls, "dsql_sni", None)
        return name

    def selected_alpn_protocol(self) -> str | None:
        return self._tls.selected_alpn_protocol()

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    @property
    def pending(self) -> bool:
        """Whether bytes the client sent are here already, read from the socket."""
        return bool(self._tls.pending() or self._incoming.pending)

    # -- blocking, under the socket's timeout ---------------------------------

    def handshake(self) -> None:
        """Run the TLS handshake; raise `ssl.SSLError` or `OSError` if it fails."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_all()
                if not self._take(self._blocking_recv()):
                    raise ConnectionAbortedError("closed in the handshake") from None
        self._send_all()

    def recv(self, size: int) -> bytes:
        """Return up to `size` decrypted bytes, waiting for some; b"" at the end."""
        while True:
            try:
                return self._tls.read(size)
            except ssl.SSLWantReadError:
                if not self._take(self._blocking_recv()):
                    return b""

    def sendall(self, data: bytes | bytearray) -> None:
        """Encrypt `data` and send it, with what is still unsent before it."""
        self._tls.write(data)
        self._send_all()

    def close(self) -> None:
        """Send a TLS close_notify, as PostgreSQL does (libpq expects one)."""
        self.deadline = None  # a second at most, whatever is left of it
        with contextlib.suppress(OSError, ValueError):
            self.sock.settimeout(1.0)
            with contextlib.suppress(ssl.SSLWantReadError):
                self._tls.unwrap()  # no need to wait for the client's
            self._send_all()
        self.sock.close()

    def _send_all(self) -> None:
        self.unsent += self._outgoing.read()
        if self.unsent:
            self._before_blocking()
            self.sock.sendall(self.unsent)
            self.unsent.clear()

    def _blocking_recv(self) -> bytes:
        self._before_blocking()
        return self.sock.recv(_CHUNK)

    def _before_blocking(self) -> None:
        """Give the next blocking call what is left until the deadline."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the TLS connection's deadline passed")
        self.sock.settimeout(left)

    def _take(self, data: bytes) -> bool:
        """Put what the socket gave into the TLS object; False at its end."""
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    # -- non-blocking, for a pump -------------------------------------------

    def receive(self) -> bytes | None:
        """Read what the socket holds; return what it decrypts to, None at the end.

        Every whole record is decrypted: what is left is an incomplete one,
        whose rest the socket has not received yet.
        """
        try:
            data = self.sock.recv(_CHUNK)
        except BlockingIOError:
            data = None
        if data is not None and not self._take(data):
            return None
        try:
            plain = self._tls.read(_CHUNK)
        except ssl.SSLWantReadError:
            return b""
        except ssl.SSLError:
            return None
        if not plain:  # the client's close_notify
            return None
        while self._tls.pending() or self._incoming.pending:
            try:
                more = self._tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                break
            if not more:
                break
            plain += more
        return plain

    def queue(self, data: bytes | bytearray) -> None:
        """Encrypt `data` for `flush` to send."""
        self._tls.write(data)

    def flush(self) -> None:
        """Send what is encrypted, as much as the socket takes now."""
        outgoing = self._outgoing
        if not self.unsent:
            data = outgoing.read()
            if not data:
                return
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self.unsent += memoryview(data)[sent:]
            return
        if outgoing.pending:
            self.unsent += outgoing.read()
        try:
            sent = self.sock.send(self.unsent)
        except BlockingIOError:
            return
        del self.unsent[:sent]
