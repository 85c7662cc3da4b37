"""Cut a stream of protocol messages into messages, whatever the reads.

The relay uses one `Framer` per direction. Every message after the startup
phase is a type byte and a 32-bit length that counts itself; a message may
arrive in pieces, and one read may hold many messages. Most messages pass
unread: only those whose type the owner watches are handed to it, and those
it replaces are spliced out of the bytes passed on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container

from ._protocol import ProtocolViolation

_UNPACK_LEN = struct.Struct("!I").unpack_from

Handler = Callable[[int, memoryview, int, int], "bytes | None"]
"""Called as handle(kind, view, start, end) for a whole watched message at
view[start:end]; returns the bytes to send in its place, or None to pass it."""


class Framer:
    """Frame one direction's bytes and pass them on, rewriting watched messages.

    `watched` returns the message types to hand to `handle`, or None to stop
    the stream: `feed` then returns the bytes that follow, unread. It is asked
    at the start and again after each handled message, since handling may
    change it. `last` is the type of the last whole message fed, those of
    types in `unnoted` left out. A message declaring a length over
    `max_length` is refused before anything of it is kept
    (`ProtocolViolation`).
    """

    __slots__ = (
        "_buf",
        "_handle",
        "_max",
        "_need",
        "_out",
        "_unnoted",
        "_watched",
        "last",
    )

    def __init__(
        self,
        out: bytearray,
        handle: Handler,
        watched: Callable[[], Container[int] | None],
        max_length: int = 0xFFFFFFFF,
        unnoted: Container[int] = (),
    ) -> None:
        self._max = max_length
        self._out = out
        self._handle = handle
        self._watched = watched
        self._buf = bytearray()  # the start of an incomplete message
        self._need = 0  # the size it must reach to be worth a look again
        self._unnoted = unnoted
        self.last = 0
        """The type of the last whole message fed (0: none yet)."""

    def feed(self, data: bytes) -> memoryview | None:
        """Append what `data` completes to the output; keep a partial message.

        Returns the unread rest when `watched` stopped the stream, else None.
        """
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return None
            data = bytes(buf)
            buf.clear()
        view = memoryview(data)
        watched = self._watched()
        if watched is None:
            return view
        n = len(data)
        pos = start = 0
        need = 5
        out = self._out
        limit = self._max
        unnoted = self._unnoted
        noted = self.last
        while n - pos >= 5:
            length = _UNPACK_LEN(data, pos + 1)[0]
            if length > limit or length < 4:
                raise ProtocolViolation("08P01", "invalid message length")
            end = pos + 1 + length
            if end > n:
                need = end - pos
                break
            kind = data[pos]
            if kind not in unnoted:
                noted = kind
            if kind in watched:
                replacement = self._handle(kind, view, pos, end)
                if replacement is not None:
                    out += view[start:pos]
                    out += replacement
                    start = end
                watched = self._watched()
                if watched is None:
                    out += view[start:end]
                    self.last = noted
                    return view[end:]
            pos = end
        self.last = noted
        out += view[start:pos]
        if pos < n:
            buf += view[pos:]
            self._need = need
        return None
