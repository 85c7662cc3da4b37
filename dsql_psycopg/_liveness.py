"""Tell, without a round trip, whether the server has closed a connection."""

from __future__ import annotations

import select
from typing import Any

import psycopg

# A server that ends a session sends a FATAL error, then closes: reading the
# error and then the end of the stream takes two reads. Bounded, in case a
# server keeps sending notices.
_READS = 4


def connection_lost(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> psycopg.OperationalError | None:
    """Return the error showing that `conn` is gone, or None if it looks alive.

    Only for a connection that is not running a query: an idle connection has
    nothing to read unless the server closed it (or sent a notice), so a
    zero-timeout poll costs one system call. Reading what is there marks a
    dead connection closed, so psycopg and its pools treat it as broken.
    """
    if conn.closed:
        return psycopg.OperationalError("the connection is closed")
    try:
        fd = conn.pgconn.socket
        for _ in range(_READS):
            if not _readable(fd):
                break
            conn.pgconn.consume_input()
    except psycopg.OperationalError as ex:
        return ex
    except (OSError, ValueError) as ex:
        return psycopg.OperationalError(f"the connection's socket failed: {ex}")
    return None


def _readable(fd: int) -> bool:
    # poll() where there is one: select() fails on descriptors above 1023,
    # which a busy process reaches.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)
