"""The transport half of a relay: two sockets, one thread, a poll loop.

`Pump` moves bytes between an authenticated client's TLS connection and its
backend's unix socket. It reads in large chunks, holds client data back for
the simulated latency, stops reading a side whose peer is not keeping up, and
closes the connection at its age cap. What the bytes mean is the business of
the protocol object it holds (`Relayed`, the `Relay`): bytes in, bytes out,
no sockets and no threads. The pump feeds it what each side sent and sends
what it queued in its `to_backend` and `to_client` buffers.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from typing import Protocol

from . import _protocol as pq
from ._tls import TlsConnection
from ._yield import Holders

logger = logging.getLogger("dsql_local")

_CHUNK = 256 * 1024
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_READING = (_POLLIN, _POLLIN)  # the poll masks of client and backend, mostly
# Stop reading a side while this much of what it sent is still with us.
_HIGH_WATER = 4 * 1024 * 1024


class PumpHost(Protocol):
    """What a pump reads, each time anew, from the server that started it."""

    @property
    def latency(self) -> float:
        """Seconds to hold client data back."""
        ...

    @property
    def max_connection_age(self) -> float:
        """Seconds a connection may last (for the message at its end)."""
        ...


class Relayed(Protocol):
    """What a pump drives: the protocol of one connection, without I/O."""

    @property
    def to_client(self) -> bytearray:
        """Bytes to send to the client (the pump removes what it sent)."""
        ...

    @property
    def to_backend(self) -> bytearray:
        """Bytes to send to the backend (the pump removes what it sent)."""
        ...

    @property
    def dropping(self) -> bool:
        """Close the client connection once `to_client` has been sent."""
        ...

    @property
    def held(self) -> int:
        """Bytes of client data the protocol holds back for now."""
        ...

    @property
    def backend_pid(self) -> int:
        """The backend's process id."""
        ...

    def from_client(self, data: bytes) -> None:
        """Take bytes the client sent."""
        ...

    def from_backend(self, data: bytes) -> None:
        """Take bytes the backend sent."""
        ...

    def woken(self) -> None:
        """Act on what another thread asked (see `Pump.wake`)."""
        ...

    def take_holder_lookup(self) -> bool:
        """Whether to look for the holders of rows it waits for now."""
        ...

    @property
    def wake_at(self) -> float | None:
        """When to call `woken` (monotonic seconds), if at all."""
        ...

    @property
    def busy(self) -> bool:
        """Whether its backend may run a statement or hold a transaction."""
        ...

    def close(self) -> None:
        """The connection is over, and its backend with it."""
        ...


class Pump:
    """Move bytes between one client and its backend connection."""

    def __init__(
        self,
        endpoint: PumpHost,
        client: TlsConnection,
        backend: socket.socket,
        deadline: float,
        protocol: Relayed,
    ) -> None:
        self._endpoint = endpoint
        self.protocol = protocol
        self._client = client
        self._backend = backend
        self._deadline = deadline
        self._lock = threading.Lock()
        self._closed = False
        self._killed = False
        self._to_client = protocol.to_client
        self._to_backend = protocol.to_backend
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._delayed_bytes = 0
        # Another thread's nudge (`wake`) reaches the poll loop through this
        # pair, made when the loop starts.
        self._waker: socket.socket | None = None
        self._wakee: socket.socket | None = None

    def _client_backlog(self) -> int:
        """Bytes the client sent that are still here: what bounds its reads."""
        return len(self._to_backend) + self._delayed_bytes + self.protocol.held

    def _send_client(self) -> None:
        """Encrypt what the protocol queued for the client and send what fits."""
        to_client = self._to_client
        if to_client:
            self._client.queue(to_client)
            to_client.clear()
        self._client.flush()

    def _sent_to_backend(self) -> None:
        """After data went to the backend: make the holders it waits for yield.

        In a thread of its own: the look-up lasts until the backend's
        transaction ends, which may take the relay's own next steps (the
        hidden COMMIT after a write run again), and nothing waits in DSQL.
        """
        if self.protocol.take_holder_lookup():
            holders: Holders | None = getattr(self._endpoint, "holders", None)
            if holders is not None and self.protocol.backend_pid:
                threading.Thread(
                    target=holders.make_yield,
                    args=(self.protocol.backend_pid,),
                    name="dsql-local-holders",
                    daemon=True,
                ).start()

    # -- control from other threads ---------------------------------------

    def wake(self) -> None:
        """Have the pump's thread call the protocol's `woken` soon."""
        waker = self._waker
        if waker is not None:
            with contextlib.suppress(OSError):
                waker.send(b"\0")

    def kill(self) -> None:
        """Close the client connection abruptly (no message)."""
        with self._lock:
            if self._closed:
                return
            self._killed = True
            for sock in (self._client.sock, self._backend):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # -- main loop ----------------------------------------------------------

    def run(self) -> None:
        try:
            poller = self._begin()
            if poller is not None:
                self._loop(poller)
        except pq.ProtocolViolation as exc:
            logger.info("closed a connection that broke the protocol: %s", exc)
            self._send_last_words(
                pq.error_response(exc.sqlstate, exc.message, severity="FATAL")
            )
        except (OSError, ValueError) as exc:
            if not self._killed:
                logger.debug("relay ended: %s", exc)
        except Exception as exc:
            # A bug or a failing policy: tell the client rather than vanish.
            logger.exception("DSQL Local relay failed")
            self._send_last_words(
                pq.error_response(
                    "XX000",
                    f"DSQL Local internal error: {type(exc).__name__}: {exc}",
                    severity="FATAL",
                )
            )
        finally:
            if self.protocol.busy:
                self._end_backend()
            self.protocol.close()
            with self._lock:
                self._closed = True
                self._backend.close()
                for sock in (self._waker, self._wakee):
                    if sock is not None:
                        sock.close()
            if self._killed:
                self._client.sock.close()
            else:
                self._client.close()

    def _end_backend(self) -> None:
        """The client went mid-statement or mid-transaction: end the backend.

        Until it has ended it may hold rows, and its relay counts as busy.
        """
        holders: Holders | None = getattr(self._endpoint, "holders", None)
        with self._lock:
            self._backend.close()
        if holders is not None and self.protocol.backend_pid:
            holders.end_backend(self.protocol.backend_pid)

    def _begin(self) -> select.poll | None:
        """Poll both sockets and the waker; None if the connection is over.

        Acts on what was asked, or sent with the password, before the loop.
        """
        self._client.sock.setblocking(False)
        self._backend.setblocking(False)
        waker, wakee = socket.socketpair()
        waker.setblocking(False)
        wakee.setblocking(False)
        with self._lock:
            self._waker, self._wakee = waker, wakee
        poller = select.poll()
        for fd in (self._client.fileno(), self._backend.fileno(), wakee.fileno()):
            poller.register(fd, _POLLIN)
        self.protocol.woken()
        if self._client.pending and not self._read_client():
            return None
        return poller

    def _loop(self, poller: select.poll) -> None:
        client = self._client
        cfd, bfd = client.fileno(), self._backend.fileno()
        # The loop runs once per message each way: what it touches is local.
        delayed = self._delayed
        to_backend = self._to_backend
        poll, monotonic = poller.poll, time.monotonic
        read_client, on_backend = self._read_client, self._on_backend
        deadline = self._deadline
        masks = _READING
        protocol = self.protocol
        while not self._killed:
            # In milliseconds: poll rounds a fraction up.
            timeout = (deadline - monotonic()) * 1000
            if timeout <= 0:
                self._age_out()
                return
            wake_at = protocol.wake_at
            if delayed or wake_at is not None:
                timeout = self._sooner(timeout, wake_at)
            # _read_client decrypts every whole record it has, so poll sees
            # everything that is left to read.
            for fd, event in poll(timeout):
                if fd == cfd:
                    if event & _POLLOUT:
                        client.flush()
                    if event & _READABLE and not read_client():
                        return
                elif fd == bfd:
                    if not on_backend(event):
                        return
                else:
                    self._on_wake()
            if delayed or wake_at is not None:
                self._due(wake_at)
            # Mostly everything was sent at once: both masks stay as they are.
            if (
                client.unsent
                or to_backend
                or masks != _READING
                or self._delayed_bytes
                or self.protocol.held
            ):
                masks = self._update_interest(poller, cfd, bfd, masks)

    def _sooner(self, timeout: float, wake_at: float | None) -> float:
        """`timeout` (ms), cut to the next delayed data or the protocol's wake."""
        now = time.monotonic()
        delayed = self._delayed
        if delayed:
            # Wake early (the rest is slept in _release_delayed).
            timeout = min(timeout, (delayed[0][0] - now) * 1000 - 1)
        if wake_at is not None:
            timeout = min(timeout, (wake_at - now) * 1000)
        return max(0, timeout)

    def _due(self, wake_at: float | None) -> None:
        """Pass on the delayed data due; wake the protocol if it asked to be."""
        if self._delayed:
            self._release_delayed()
        if wake_at is not None and time.monotonic() >= wake_at:
            self._on_wake()

    def _update_interest(
        self, poller: select.poll, cfd: int, bfd: int, masks: tuple[int, int]
    ) -> tuple[int, int]:
        """Poll for writing while there is something to send; for reading
        while what the side sent earlier is below the high-water mark."""
        want = (
            _interest(self._client.unsent, self._client_backlog()),
            _interest(self._to_backend, len(self._client.unsent)),
        )
        if want[0] != masks[0]:
            poller.modify(cfd, want[0])
        if want[1] != masks[1]:
            poller.modify(bfd, want[1])
        return want

    def _on_wake(self) -> None:
        assert self._wakee is not None
        with contextlib.suppress(BlockingIOError):
            self._wakee.recv(4096)
        self.protocol.woken()
        self._flush(self._backend, self._to_backend)
        self._send_client()

    def _release_delayed(self) -> None:
        """Process the client data whose simulated latency has passed."""
        delayed = self._delayed
        wait = delayed[0][0] - time.monotonic()
        if wait > 0.001:
            return
        if wait > 0:
            time.sleep(wait)
        now = time.monotonic()
        while delayed and delayed[0][0] <= now:
            data = delayed.popleft()[1]
            self._delayed_bytes -= len(data)
            self.protocol.from_client(data)
        self._flush(self._backend, self._to_backend)
        self._sent_to_backend()

    def _on_backend(self, event: int) -> bool:
        """Handle a poll event of the backend; False when the connection is over."""
        if event & _POLLOUT:
            self._flush(self._backend, self._to_backend)
        return not event & _READABLE or self._read_backend()

    def _read_client(self) -> bool:
        try:
            data = self._client.receive()
        except OSError:
            return False
        if data is None:
            return False
        if not data:
            return True
        latency = self._endpoint.latency
        delayed = self._delayed
        if latency > 0 or delayed:
            # Never let new data overtake data still waiting out its delay.
            due = time.monotonic() + latency
            delayed.append((max(due, delayed[-1][0]) if delayed else due, data))
            self._delayed_bytes += len(data)
        else:
            self.protocol.from_client(data)
            self._flush(self._backend, self._to_backend)
            self._sent_to_backend()
        return True

    def _read_backend(self) -> bool:
        try:
            data = self._backend.recv(_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            # The backend hung up (e.g. a FATAL error): pass on what it said.
            self._send_last_words()
            return False
        self.protocol.from_backend(data)
        self._send_client()
        if self.protocol.dropping:
            self.kill()
            return False
        if self._to_backend:  # a query's next piece, or client data it held
            self._flush(self._backend, self._to_backend)
            self._sent_to_backend()
        return True

    @staticmethod
    def _flush(sock: socket.socket, buf: bytearray) -> None:
        if not buf:
            return
        try:
            sent = sock.send(buf)
        except BlockingIOError:
            return
        del buf[:sent]

    def _age_out(self) -> None:
        age = self._endpoint.max_connection_age
        self._to_client += pq.error_response(
            "57P01",
            f"terminating connection: it exceeded the maximum connection age "
            f"of {age:g} seconds",
            severity="FATAL",
        )
        self._send_last_words()

    def _send_last_words(self, extra: bytes = b"") -> None:
        """Send what is queued for the client (plus `extra`), blocking briefly."""
        self._to_client += extra
        with contextlib.suppress(OSError, ValueError):
            self._client.settimeout(2.0)
            self._client.sendall(self._to_client)


def _interest(outgoing: bytearray, backlog: int) -> int:
    """Poll for writing while there is something to send; for reading while
    what this side sent earlier is below the high-water mark."""
    mask = _POLLIN if backlog < _HIGH_WATER else 0
    return mask | _POLLOUT if outgoing else mask
